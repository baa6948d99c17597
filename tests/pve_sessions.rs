//! Proxmox API sessions end to end (issue 20, docs/proxmox.md): a session to an injecting
//! `proxmox-api` target gets a Proxmox API token minted for it by the controller (privilege
//! separated, expiring with the session, its ACL entries on the role's paths), the worker
//! sends it on every request while the client holds no Proxmox secret, and the token and its
//! ACL entries are gone when the session ends, across Proxmox outages and controller crashes.
//!
//! The first tests pin the fake Proxmox API itself (tests/common/proxmox/access.rs and
//! guests.rs): its token and ACL endpoints in the real shapes, and the bpg/proxmox Terraform
//! provider's HTTP sequence. The rest start `portcullis dev` against it
//! ([`PveLab`]) and drive real clients through `portcullis connect`'s local end: curl,
//! raw sockets, proxmoxer, Ansible's `community.proxmox` modules and the Terraform replay.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use common::catalog::{catalog_config, Trust, CLUSTER};
use common::dev::{curl, Dev};
use common::proxmox::access::{Access, UgidKind, MANAGEMENT_TOKEN, SERVICE_USER};
use common::proxmox::{FakeProxmox, Hold, TOKEN};
use common::wait::{poll, wait_for};

// ---------------------------------------------------------------------------------------
// Scripts the tests run (Python 3; proxmoxer's where it needs proxmoxer).

/// The bpg/proxmox Terraform provider's HTTP sequence for `terraform apply` then `destroy`
/// of one VM, as its Go source makes it (proxmox/api/client.go `DoRequest`: one
/// `net/http` client with keep-alive, `Accept: application/json`, form-encoded bodies
/// `application/x-www-form-urlencoded`, `Authorization: PVEAPIToken=<api_token>` from
/// token_auth.go, Go's `User-Agent` and `Accept-Encoding: gzip`; the endpoint's path plus
/// `/api2/json/`; tasks polled at `nodes/{node}/tasks/{upid}/status` until `stopped`).
/// Terraform cannot run here: this replays the sequence on one keep-alive connection and
/// prints each step as JSON (`steps`), and whether the connection was reused (`reused`).
///
/// Arguments: ENDPOINT (`https://localhost:PORT/`) API_TOKEN (`user@realm!id=secret`)
/// CA_FILE. With no arguments they come from the environment `portcullis connect --exec`
/// sets: PROXMOX_VE_ENDPOINT, PROXMOX_VE_API_TOKEN, SSL_CERT_FILE.
const TERRAFORM_REPLAY: &str = r#"
import http.client, json, os, ssl, sys, time, urllib.parse
args = sys.argv[1:] or [os.environ["PROXMOX_VE_ENDPOINT"], os.environ["PROXMOX_VE_API_TOKEN"], os.environ["SSL_CERT_FILE"]]
endpoint, token, ca = args
u = urllib.parse.urlsplit(endpoint)
ctx = ssl.create_default_context(cafile=ca)
conn = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=30)
base = u.path.rstrip("/") + "/api2/json/"
steps, socks = [], set()
def call(method, path, form=None):
    headers = {"Accept": "application/json", "User-Agent": "Go-http-client/1.1",
               "Accept-Encoding": "gzip", "Authorization": "PVEAPIToken=" + token}
    body = None
    if form:
        body = urllib.parse.urlencode(form)
        if method in ("GET", "DELETE"):
            path += "?" + body
            body = None
        else:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
    conn.request(method, base + path, body=body, headers=headers)
    if conn.sock is not None:
        socks.add(id(conn.sock))
    r = conn.getresponse()
    text = r.read().decode()
    try:
        data = json.loads(text).get("data")
    except ValueError:
        data = text
    steps.append({"method": method, "path": path, "status": r.status, "reason": r.reason, "data": data})
    if r.status >= 300:
        print(json.dumps({"steps": steps, "failed": path}))
        sys.exit(1)
    return data
def wait_task(node, upid):
    for _ in range(100):
        t = call("GET", "nodes/%s/tasks/%s/status" % (node, urllib.parse.quote(upid, safe="")))
        if t["status"] == "stopped":
            if t.get("exitstatus") != "OK":
                print(json.dumps({"steps": steps, "failed": "task " + upid}))
                sys.exit(1)
            return
        time.sleep(0.05)
    print(json.dumps({"steps": steps, "failed": "task never stopped"}))
    sys.exit(1)
# provider configure: the version (feature checks) and the nodes.
call("GET", "version")
call("GET", "nodes")
# resource "proxmox_virtual_environment_vm" create: the next free id, create, wait.
vmid = int(call("GET", "cluster/nextid"))
upid = call("POST", "nodes/node1/qemu", {"vmid": vmid, "name": "tf-vm", "cores": 2, "memory": 2048,
    "scsihw": "virtio-scsi-pci", "scsi0": "local-lvm:8", "net0": "virtio,bridge=vmbr0",
    "ostype": "l26", "agent": "enabled=1", "description": "Managed by Terraform."})
wait_task("node1", upid)
call("GET", "nodes/node1/qemu/%d/config" % vmid)
call("PUT", "nodes/node1/qemu/%d/config" % vmid, {"tags": "terraform", "delete": "description"})
upid = call("POST", "nodes/node1/qemu/%d/status/start" % vmid, {})
wait_task("node1", upid)
# read after apply: config and status.
config = call("GET", "nodes/node1/qemu/%d/config" % vmid)
status = call("GET", "nodes/node1/qemu/%d/status/current" % vmid)
# the task's log (a chunked answer).
log = call("GET", "nodes/node1/tasks/%s/log" % urllib.parse.quote(upid, safe=""), {"start": 0, "limit": 500})
# destroy: stop, wait, delete, wait.
upid = call("POST", "nodes/node1/qemu/%d/status/stop" % vmid, {})
wait_task("node1", upid)
upid = call("DELETE", "nodes/node1/qemu/%d" % vmid, {"destroy-unreferenced-disks": 1, "purge": 1})
wait_task("node1", upid)
print(json.dumps({"steps": steps, "vmid": vmid, "config": config, "status": status,
                  "log_lines": len(log), "reused": len(socks) == 1}))
"#;

/// proxmoxer through `portcullis connect --exec`: the environment's host, port, token id
/// and secret (the local ones), the CA bundle in REQUESTS_CA_BUNDLE; reads, creates a VM,
/// waits for its task, and reads it back. Prints JSON.
const PROXMOXER_SESSION: &str = r#"
import json, os, time
from proxmoxer import ProxmoxAPI
e = os.environ
user, token_name = e["PROXMOX_USER"], e["PROXMOX_TOKEN_ID"]
pve = ProxmoxAPI(e["PROXMOX_HOST"], port=int(e["PROXMOX_PORT"]), user=user, token_name=token_name,
                 token_value=e["PROXMOX_TOKEN_SECRET"], verify_ssl=e["REQUESTS_CA_BUNDLE"],
                 service="PVE", timeout=30)
out = {"version": pve.version.get(), "nodes": [n["node"] for n in pve.nodes.get()],
       "vms": len(pve.cluster.resources.get(type="vm"))}
vmid = int(pve.cluster.nextid.get())
upid = pve.nodes("node1").qemu.post(vmid=vmid, name="py-vm", cores=1, memory=512)
for _ in range(100):
    if pve.nodes("node1").tasks(upid).status.get()["status"] == "stopped":
        break
    time.sleep(0.05)
out["config"] = pve.nodes("node1").qemu(vmid).config.get()
out["vmid"] = vmid
print(json.dumps(out))
"#;

fn python3() -> &'static str {
    "python3"
}

/// A Python with proxmoxer and requests (scripts/test installs it).
fn proxmoxer_python() -> PathBuf {
    if let Ok(path) = std::env::var("PORTCULLIS_TEST_PROXMOXER_PYTHON") {
        return path.into();
    }
    let home = std::env::var("HOME").unwrap();
    let path = Path::new(&home).join(".cache/portcullis-test/proxmoxer/bin/python");
    assert!(
        path.exists(),
        "no Python with proxmoxer at {}: run the suite with scripts/test, which installs it",
        path.display()
    );
    path
}

/// `ansible-playbook` of a venv with the `ansible` package's collections
/// (`community.proxmox`), proxmoxer and requests (scripts/test installs them).
fn ansible_playbook() -> PathBuf {
    if let Ok(path) = std::env::var("PORTCULLIS_TEST_ANSIBLE_PLAYBOOK") {
        return path.into();
    }
    let home = std::env::var("HOME").unwrap();
    let path = Path::new(&home).join(".cache/portcullis-test/ansible/bin/ansible-playbook");
    assert!(
        path.exists(),
        "no ansible-playbook at {}: run the suite with scripts/test, which installs it",
        path.display()
    );
    path
}

/// Writes `text` to `dir/name`; its path.
fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

// ---------------------------------------------------------------------------------------
// The fake itself.

fn form(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn data(answer: &common::proxmox::Answer) -> Value {
    serde_json::from_str::<Value>(&answer.body).unwrap()["data"].clone()
}

/// Token create, read, list and delete answer in pve-access-control's shapes: the create
/// returns `full-tokenid`, `info` and the secret `value` (a UUID); a second create of the
/// same id is refused 400 `Token already exists.`; an unknown user or token is Proxmox's
/// 500 with its words; a bad token name is a 400 parameter error.
#[test]
fn the_fake_mints_lists_and_deletes_tokens_in_the_real_shapes() {
    let mut access = Access::default();
    let created = access.create_token(
        SERVICE_USER,
        "pc-s1",
        &form(&[
            ("expire", "4102444800"),
            ("privsep", "1"),
            ("comment", "portcullis session s_1"),
        ]),
        "0b0e4c9a-1111-4222-8333-444455556666".into(),
    );
    assert_eq!(created.status, 200, "{created:?}");
    let d = data(&created);
    assert_eq!(d["full-tokenid"], "svc-terraform@pve!pc-s1");
    assert_eq!(d["value"], "0b0e4c9a-1111-4222-8333-444455556666");
    assert_eq!(
        d["info"],
        serde_json::json!({"expire": 4102444800u64, "privsep": 1, "comment": "portcullis session s_1"})
    );
    let again = access.create_token(SERVICE_USER, "pc-s1", &form(&[]), "x".into());
    assert_eq!(
        (again.status, again.reason.as_deref()),
        (400, Some("Token already exists."))
    );
    let nobody = access.create_token("ghost@pve", "pc-s1", &form(&[]), "x".into());
    assert_eq!(nobody.status, 500);
    assert!(
        nobody.body.contains("no such user ('ghost@pve')"),
        "{}",
        nobody.body
    );
    let bad = access.create_token(SERVICE_USER, "1bad!", &form(&[]), "x".into());
    assert_eq!(bad.status, 400);
    assert!(
        data(&bad).is_null() && bad.body.contains("tokenid"),
        "{}",
        bad.body
    );
    // privsep defaults to 1, expire to 0 (never).
    access.create_token(SERVICE_USER, "pc-s2", &form(&[]), "y".into());
    let read = data(&access.read_token(SERVICE_USER, "pc-s2"));
    assert_eq!(
        (read["privsep"].as_u64(), read["expire"].as_u64()),
        (Some(1), Some(0))
    );
    let listed = data(&access.list_tokens(SERVICE_USER));
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tokenid"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pc-s1", "pc-s2"]);
    assert_eq!(access.delete_token(SERVICE_USER, "pc-s1").status, 200);
    let gone = access.delete_token(SERVICE_USER, "pc-s1");
    assert_eq!(gone.status, 500);
    assert!(
        gone.body
            .contains("no such token 'pc-s1' for user 'svc-terraform@pve'"),
        "{}",
        gone.body
    );
    assert_eq!(access.read_token(SERVICE_USER, "pc-s1").status, 500);
}

/// The ACL: `PUT /access/acl` adds one entry per (token, role) on a normalised path,
/// `delete=1` removes them, a token that does not exist cannot be granted, and deleting a
/// token removes its entries unless the fake is told to leave them
/// (`delete_keeps_acls`, for the controller's own clean-up). A privilege-separated token
/// acts only where its entries reach; authentication refuses deleted, expired and
/// wrong-secret tokens.
#[test]
fn the_fakes_acl_follows_tokens_and_scopes_what_they_may_touch() {
    let mut access = Access::default();
    let full = "svc-terraform@pve!pc-s1";
    let refused = access.put_acl(&form(&[
        ("path", "/vms"),
        ("roles", "PVEVMUser"),
        ("tokens", full),
    ]));
    assert_eq!(refused.status, 500, "no such token yet");
    access.create_token(
        SERVICE_USER,
        "pc-s1",
        &form(&[("expire", "100")]),
        "sec".into(),
    );
    let put = access.put_acl(&form(&[
        ("path", "//vms/"),
        ("roles", "PVEVMUser,PVEAuditor"),
        ("tokens", full),
    ]));
    assert_eq!(put.status, 200, "{put:?}");
    access.put_acl(&form(&[
        ("path", "/pool/prod"),
        ("roles", "PVEVMUser"),
        ("tokens", full),
        ("propagate", "0"),
    ]));
    let listed = data(&access.list_acl());
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");
    assert!(listed.as_array().unwrap().iter().any(|e| e
        == &serde_json::json!({"path": "/vms", "type": "token", "ugid": full, "roleid": "PVEAuditor", "propagate": 1})));
    assert!(access.may(full, "/vms/4000"));
    assert!(access.may(full, "/pool/prod"));
    assert!(!access.may(full, "/pool/prod/sub"), "no propagation there");
    assert!(!access.may(full, "/vmsx"));
    let missing = access.put_acl(&form(&[("path", "/vms"), ("roles", "PVEVMUser")]));
    assert_eq!(missing.status, 400);
    access.put_acl(&form(&[
        ("path", "/vms"),
        ("roles", "PVEAuditor"),
        ("tokens", full),
        ("delete", "1"),
    ]));
    assert_eq!(access.entries_of(full).len(), 2);
    // Authentication: live, then expired (expire 100 is long past at now = 200).
    let whole = format!("{full}=sec");
    assert!(access.authenticate(&whole, TOKEN, 50).is_some());
    assert!(access.authenticate(&whole, TOKEN, 200).is_none(), "expired");
    assert!(access
        .authenticate(&format!("{full}=other"), TOKEN, 50)
        .is_none());
    assert!(access.authenticate(MANAGEMENT_TOKEN, TOKEN, 50).is_some());
    // Deleting the token removes its entries; with the switch it leaves them.
    let mut keeping = access.clone();
    keeping.delete_keeps_acls = true;
    keeping.delete_token(SERVICE_USER, "pc-s1");
    assert_eq!(keeping.entries_of(full).len(), 2);
    assert!(keeping.authenticate(&whole, TOKEN, 50).is_none(), "deleted");
    access.delete_token(SERVICE_USER, "pc-s1");
    assert!(access.entries_of(full).is_empty());
    assert!(access.acl.iter().all(|e| e.kind != UgidKind::Token));
}

/// curl against the fake: (status line, body). `extra` are more curl arguments.
fn curl_fake(
    fake: &FakeProxmox,
    method: &str,
    path: &str,
    token: Option<&str>,
    extra: &[&str],
) -> (String, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-i", "--max-time", "20", "--cacert"])
        .arg(&fake.ca_file)
        .args(["-X", method])
        .args(extra)
        .arg(format!("{}/api2/json{path}", fake.url()));
    if let Some(t) = token {
        cmd.arg("-H").arg(format!("Authorization: PVEAPIToken={t}"));
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "curl {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    split_response(&String::from_utf8_lossy(&out.stdout))
}

/// An HTTP/1.1 response's status line and body.
fn split_response(text: &str) -> (String, String) {
    let text = text.replace('\r', "");
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

/// Mints a token over HTTPS with the management credential: its whole `id=secret`.
fn mint(fake: &FakeProxmox, name: &str, expire: u64) -> String {
    let (status, body) = curl_fake(
        fake,
        "POST",
        &format!("/access/users/svc-terraform%40pve/token/{name}"),
        Some(MANAGEMENT_TOKEN),
        &["--data", &format!("expire={expire}&privsep=1&comment=test")],
    );
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    format!(
        "{}={}",
        v["data"]["full-tokenid"].as_str().unwrap(),
        v["data"]["value"].as_str().unwrap()
    )
}

/// Over HTTPS: a minted token works until deleted, then it is 401 as an unknown token;
/// one whose `expire` has passed is 401; a privilege-separated token without an ACL entry
/// on a VM is refused 403 and with one it acts; a minted token cannot write under
/// `/access/`; the discovery token still only reads; the request log names the token.
#[test]
fn the_fake_accepts_minted_tokens_until_deleted_or_expired() {
    let fake = FakeProxmox::start();
    fake.with(|s| s.unauthorized_delay = Duration::ZERO);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let live = mint(&fake, "pc-live", now + 3600);
    let (status, body) = curl_fake(&fake, "GET", "/version", Some(&live), &[]);
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let (status, _) = curl_fake(
        &fake,
        "GET",
        "/nodes/node1/qemu/4000/status/current",
        Some(&live),
        &[],
    );
    assert_eq!(
        status,
        "HTTP/1.1 403 Permission check failed (/vms/4000, VM.Audit)"
    );
    let (status, _) = curl_fake(
        &fake,
        "PUT",
        "/access/acl",
        Some(MANAGEMENT_TOKEN),
        &[
            "--data",
            "path=/vms&roles=PVEVMAdmin&tokens=svc-terraform@pve!pc-live",
        ],
    );
    assert_eq!(status, "HTTP/1.1 200 OK");
    let (status, body) = curl_fake(
        &fake,
        "POST",
        "/nodes/node1/qemu",
        Some(&live),
        &["--data", "vmid=4000&name=a"],
    );
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    assert!(body.contains("UPID:node1:"), "{body}");
    let (status, _) = curl_fake(
        &fake,
        "POST",
        "/access/users/svc-terraform%40pve/token/evil",
        Some(&live),
        &["--data", "privsep=0"],
    );
    assert!(status.starts_with("HTTP/1.1 403"), "{status}");
    let (status, _) = curl_fake(
        &fake,
        "POST",
        "/nodes/node1/qemu",
        Some(TOKEN),
        &["--data", "vmid=4001"],
    );
    assert!(status.starts_with("HTTP/1.1 405"), "{status}");
    let (id, _) = live.rsplit_once('=').unwrap();
    assert!(fake.requests_of(id).len() >= 4);
    assert!(fake
        .requests_of(id)
        .iter()
        .all(|r| r.authorization.as_deref() == Some(&*format!("PVEAPIToken={live}"))));
    let (status, _) = curl_fake(
        &fake,
        "DELETE",
        "/access/users/svc-terraform@pve/token/pc-live",
        Some(MANAGEMENT_TOKEN),
        &[],
    );
    assert_eq!(status, "HTTP/1.1 200 OK");
    let (status, _) = curl_fake(&fake, "GET", "/version", Some(&live), &[]);
    assert_eq!(status, "HTTP/1.1 401 authentication failure");
    assert!(
        fake.acl_of(id).is_empty(),
        "deleting the token removed its ACL entries"
    );
    let expired = mint(&fake, "pc-old", now - 1);
    let (status, _) = curl_fake(&fake, "GET", "/version", Some(&expired), &[]);
    assert_eq!(status, "HTTP/1.1 401 authentication failure");
}

/// The fake answers the bpg Terraform provider's sequence (create, configure, start, read,
/// the chunked task log, stop, destroy; tasks `running` then `stopped`/`OK`) to a minted
/// token on one keep-alive connection.
#[test]
fn the_fake_answers_the_terraform_providers_sequence() {
    let fake = FakeProxmox::start();
    let token = mint(&fake, "pc-tf", 0);
    let (id, _) = token.rsplit_once('=').unwrap();
    fake.with(|s| {
        s.access.put_acl(&form(&[
            ("path", "/vms"),
            ("roles", "PVEVMAdmin"),
            ("tokens", id),
        ]))
    });
    let dir = tempfile::tempdir().unwrap();
    let script = write(dir.path(), "replay.py", TERRAFORM_REPLAY);
    let out = Command::new(python3())
        .arg(&script)
        .arg(format!("https://localhost:{}/", fake.port))
        .arg(&token)
        .arg(&fake.ca_file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_terraform_replay(&v);
    // Each task was polled while running and once stopped.
    let polls = fake
        .requests_of(id)
        .iter()
        .filter(|r| r.path.ends_with("/status") && r.path.contains("/tasks/"))
        .count();
    assert!(polls >= 4 * 3, "{polls} task polls");
    let create = fake
        .requests_of(id)
        .into_iter()
        .find(|r| r.method == "POST" && r.path == "/nodes/node1/qemu")
        .unwrap();
    assert_eq!(
        create.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(create.header("user-agent"), Some("Go-http-client/1.1"));
    assert!(create.body.contains("name=tf-vm"), "{}", create.body);
}

/// What a replay of the Terraform sequence must have seen.
fn assert_terraform_replay(v: &Value) {
    assert_eq!(v["config"]["name"], "tf-vm", "{v}");
    assert_eq!(v["config"]["tags"], "terraform", "{v}");
    assert!(
        v["config"].get("description").is_none(),
        "PUT delete= removed it: {v}"
    );
    assert_eq!(v["status"]["status"], "running", "{v}");
    assert_eq!(v["log_lines"], 200, "the whole chunked log: {v}");
    assert_eq!(v["reused"], true, "one keep-alive connection: {v}");
    let steps = v["steps"].as_array().unwrap();
    assert!(steps.iter().all(|s| s["status"] == 200), "{v}");
    assert!(steps.iter().any(|s| s["method"] == "DELETE"), "{v}");
}

/// A held token creation: [`Hold::Stall`] records the request and creates nothing until
/// released (then 503); [`Hold::AfterCreating`] creates the token, then holds the answer.
#[test]
fn the_fake_holds_a_token_creation_until_released() {
    let fake = FakeProxmox::start();
    for (hold, created) in [(Hold::Stall, false), (Hold::AfterCreating, true)] {
        let before = fake.held();
        fake.hold_token_create(hold);
        let ca = fake.ca_file.clone();
        let url = format!(
            "{}/api2/json/access/users/svc-terraform@pve/token/pc-held",
            fake.url()
        );
        let call = std::thread::spawn(move || {
            Command::new("curl")
                .args([
                    "-sS",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--max-time",
                    "30",
                    "--cacert",
                ])
                .arg(ca)
                .args(["-X", "POST", "-H"])
                .arg(format!("Authorization: PVEAPIToken={MANAGEMENT_TOKEN}"))
                .arg(url)
                .output()
                .unwrap()
        });
        wait_for("the creation to be held", Duration::from_secs(20), || {
            fake.held() > before
        });
        assert_eq!(
            fake.tokens().contains_key("svc-terraform@pve!pc-held"),
            created
        );
        assert!(!call.is_finished(), "answered while held");
        fake.release();
        let out = call.join().unwrap();
        let code = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(code, if created { "200" } else { "503" });
        fake.with(|s| s.access.tokens.clear());
    }
}
