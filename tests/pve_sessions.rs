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
        # Task polling as the provider does it (it polls Proxmox's task status), bounded above.
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
    # Task polling as proxmoxer users do it, at most 100 looks.
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

/// A token minted straight at the fake, with `PVEVMAdmin` on `/vms`: what the client
/// replays get when they talk to the fake without a session.
fn mint_vm_admin(fake: &FakeProxmox, name: &str) -> String {
    let token = mint(fake, name, 0);
    let (id, _) = token.rsplit_once('=').unwrap();
    fake.with(|s| {
        s.access.put_acl(&form(&[
            ("path", "/vms"),
            ("roles", "PVEVMAdmin"),
            ("tokens", id),
        ]))
    });
    token
}

/// The fake answers the bpg Terraform provider's sequence (create, configure, start, read,
/// the chunked task log, stop, destroy; tasks `running` then `stopped`/`OK`) to a minted
/// token on one keep-alive connection.
#[test]
fn the_fake_answers_the_terraform_providers_sequence() {
    let fake = FakeProxmox::start();
    let token = mint_vm_admin(&fake, "pc-tf");
    let (id, _) = token.rsplit_once('=').unwrap();
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

// ---------------------------------------------------------------------------------------
// End to end: `portcullis dev` minting tokens in the fake, and clients through
// `portcullis connect`'s local end.

/// The injecting target's name.
const TARGET: &str = "pve-1";

/// The role's Proxmox identity, roles and paths (the policy's `proxmox` of role
/// `terraform`), and the cluster's session paths.
const PVE_ROLE: &str = "PVEVMAdmin";
const PVE_PATH: &str = "/vms";

/// The policy: a loopback zone where the fake listens, its port as the `proxmox-api`
/// service, a role acting as [`SERVICE_USER`] with [`PVE_ROLE`] on [`PVE_PATH`], and an
/// admin role with the controller permissions (no grants, so no identity of its own). With
/// `access_writes`, the role lets writes under `/access/` through.
fn policy(pve_port: u16, access_writes: bool) -> String {
    format!(
        r#"[settings]
description = "Proxmox API sessions: the fake Proxmox API on loopback"
broker_zone = "LOCAL"

[[zone]]
name = "LOCAL"
trust = "high"
cidrs = ["127.0.0.0/8"]

[[service]]
name = "proxmox-api"
ports = [{pve_port}]

[[cell]]
from = "LOCAL"
to = "LOCAL"
access = "allow"
services = ["proxmox-api"]

[[role]]
name = "admin"
groups = ["admins"]
permissions = ["targets:admin", "workers:admin", "sessions:read-all", "sessions:cancel-any", "policy:reload", "audit:read"]

[[role]]
name = "terraform"
groups = ["terraform"]
proxmox = {{ user = "svc-terraform", roles = ["{PVE_ROLE}"], paths = ["{PVE_PATH}"], access_writes = {access_writes} }}

[[role.grant]]
zones = ["LOCAL"]
services = ["proxmox-api"]
"#
    )
}

/// The fake, `portcullis dev` whose controller mints session tokens in it
/// (`[catalog.proxmox.sessions]`), an injecting target [`TARGET`] at the fake, and the
/// CLI's own directories (config, cache, runtime) under `work`.
struct PveLab {
    fake: FakeProxmox,
    dev: Dev,
    /// The arguments `dev` was started with (to start it again on the same state).
    args: Vec<String>,
    work: tempfile::TempDir,
}

impl PveLab {
    /// Starts everything; with `log`, the dev stack logs at `info` into that file.
    fn start(log: Option<&Path>) -> PveLab {
        PveLab::start_with(log, false)
    }

    /// [`PveLab::start`], the role letting `/access/` writes through when `access_writes`.
    fn start_with(log: Option<&Path>, access_writes: bool) -> PveLab {
        let fake = FakeProxmox::start();
        fake.with(|s| s.unauthorized_delay = Duration::ZERO);
        let work = tempfile::tempdir().unwrap();
        let w = work.path();
        std::fs::write(w.join("policy.toml"), policy(fake.port, access_writes)).unwrap();
        let manage = w.join("pve-sessions.token");
        std::fs::write(&manage, format!("{MANAGEMENT_TOKEN}\n")).unwrap();
        std::fs::set_permissions(&manage, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = catalog_config(&fake, &w.join("proxmox.token"), Trust::CaFile, "1h")
            + &format!(
                "\n[catalog.proxmox.sessions]\nrealm = \"pve\"\ntoken_file = \"{}\"\npaths = [\"{PVE_PATH}\"]\n",
                manage.display()
            );
        std::fs::write(w.join("controller.toml"), config).unwrap();
        for dir in ["config", "cache", "run"] {
            std::fs::create_dir(w.join(dir)).unwrap();
            std::fs::set_permissions(w.join(dir), std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        let args: Vec<String> = [
            "--groups",
            "admins,terraform",
            "--policy",
            w.join("policy.toml").to_str().unwrap(),
            "--config",
            w.join("controller.toml").to_str().unwrap(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let dev = match log {
            Some(log) => Dev::start_logging(&refs, log),
            None => Dev::start_in(&w.join("state"), &refs),
        };
        let lab = PveLab {
            fake,
            dev,
            args,
            work,
        };
        // The controller syncs the fake's inventory once as it starts (then hourly): let that
        // finish, so that the discovery token's reads are over before a test looks.
        poll(
            "the first sync of the fake cluster",
            Duration::from_secs(60),
            || {
                let v: Value =
                    serde_json::from_str(&lab.ok(&["catalog", "list", "--json"])).unwrap();
                let status = common::catalog::cluster_of(&v);
                if status["last_attempt_at"].is_u64() {
                    Ok(())
                } else {
                    Err(status.to_string())
                }
            },
        );
        let address = format!("127.0.0.1:{}", lab.fake.port);
        lab.ok(&[
            "targets",
            "create",
            TARGET,
            "--address",
            &address,
            "--service",
            "proxmox-api",
            "--proxmox-cluster",
            CLUSTER,
        ]);
        lab
    }

    /// `portcullis` with the dev stack's environment and the CLI's directories under `work`.
    fn cli(&self) -> Command {
        let mut cmd = self.dev.cli();
        let w = self.work.path();
        cmd.env("XDG_CONFIG_HOME", w.join("config"))
            .env("XDG_CACHE_HOME", w.join("cache"))
            .env("XDG_RUNTIME_DIR", w.join("run"));
        cmd
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "portcullis {args:?}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `portcullis connect pve-1 ARGS --json` in the background: the process and its first
    /// line (the listening line, JSON) once it printed it.
    fn connect(&self, args: &[&str]) -> (Child, Value) {
        let mut child = self
            .cli()
            .args(["connect", TARGET, "--json"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("portcullis connect printed its listening line");
        (child, serde_json::from_str(&line).unwrap())
    }

    /// `portcullis connect pve-1 --socket PATH`: the process, its listening line, and the
    /// session's token as the fake holds it (full token id, secret).
    fn connect_socket(&self, socket: &Path) -> (Child, Value, String, String) {
        let (child, line) = self.connect(&["--socket", socket.to_str().unwrap()]);
        wait_for("the session's socket", Duration::from_secs(30), || {
            socket.exists()
        });
        let session = line["session_id"].as_str().unwrap().to_owned();
        let full = portcullis_proto::pve::token_id_for(SERVICE_USER, &session);
        let secret = self
            .fake
            .tokens()
            .get(&full)
            .unwrap_or_else(|| panic!("no token {full} in {:?}", self.fake.tokens().keys()))
            .secret
            .clone();
        (child, line, full, secret)
    }

    /// `portcullis connect pve-1 --exec PROGRAM -- ARGS`: its output.
    fn exec(&self, program: &str, args: &[&str]) -> std::process::Output {
        self.cli()
            .args(["connect", TARGET, "--exec", program, "--"])
            .args(args)
            .output()
            .unwrap()
    }

    /// Audit events of `kind` through the API, newest first.
    fn audit(&self, kind: &str) -> Vec<Value> {
        let token = self.dev.var("PORTCULLIS_TOKEN");
        let (code, text) = curl(
            &self.dev,
            "GET",
            &format!("/v1/audit?limit=1000&type={kind}"),
            Some(&token),
            None,
        );
        assert_eq!(code, 200, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        v["items"].as_array().unwrap().clone()
    }

    /// Waits until token `full` and its ACL entries are gone from the fake.
    fn wait_gone(&self, full: &str, limit: Duration) {
        poll("the token and its ACL entries to be gone", limit, || {
            let token = self.fake.tokens().contains_key(full);
            let acl = self.fake.acl_of(full);
            if !token && acl.is_empty() {
                Ok(())
            } else {
                Err(format!("token present: {token}; ACL entries: {acl:?}"))
            }
        });
    }

    /// Stops the connect process as Ctrl-C would (it cancels its session).
    fn interrupt(child: &mut Child) {
        common::cluster::sigterm(child);
        common::cluster::wait_exit(child, Duration::from_secs(30));
    }
}

/// The requests the fake received other than the controller's own (discovery reads with the
/// catalog's token, token management with the management credential): the worker's.
fn worker_requests(fake: &FakeProxmox) -> Vec<common::proxmox::Request> {
    let controllers: Vec<String> = [TOKEN, MANAGEMENT_TOKEN]
        .iter()
        .filter_map(|t| t.rsplit_once('=').map(|(id, _)| id.to_owned()))
        .collect();
    fake.requests()
        .into_iter()
        .filter(|r| {
            r.token_id
                .as_ref()
                .is_none_or(|id| !controllers.contains(id))
        })
        .collect()
}

/// curl over the session's unix socket: (status, body). `extra` are more curl arguments.
fn over_socket(socket: &Path, method: &str, path: &str, extra: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "30",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "--unix-socket",
        ])
        .arg(socket)
        .args(["-X", method])
        .args(extra)
        .arg(format!("http://pve/api2/json{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// Writes `raw` to the socket and reads the answer: up to 20 s for its head, then until the
/// other end closes the connection (a refusal closes it) or 5 s pass without a byte.
fn raw_over_socket(socket: &Path, raw: &str) -> String {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(raw.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        if got.windows(4).any(|w| w == b"\r\n\r\n") {
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// A session mints a privilege-separated token that expires with the session, named from the
/// session id, commented with it, and grants it the role's Proxmox role on the role's path;
/// every request the worker sends carries that token although the client sent none, a bogus
/// token, a cookie or a CSRF token (stripped); reads under `/access/` pass, writes there are
/// refused before Proxmox; and when the client ends the session, the token and its ACL
/// entries are gone within seconds, audited by token id.
#[test]
fn a_session_mints_a_scoped_token_injects_it_and_removes_it_at_the_end() {
    let lab = PveLab::start(None);
    let socket = lab.work.path().join("pve.sock");
    let (mut child, line, full, secret) = lab.connect_socket(&socket);
    let session = line["session_id"].as_str().unwrap();
    let minted = lab.fake.tokens()[&full].clone();
    assert!(minted.privsep, "privilege separated");
    let expires_at = line["expires_at"].as_u64().unwrap();
    assert!(
        minted.expire.abs_diff(expires_at) <= 1,
        "the token expires with the session: {} vs {expires_at}",
        minted.expire
    );
    assert!(minted.comment.contains(session), "{}", minted.comment);
    assert_eq!(
        lab.fake.acl_of(&full),
        [common::proxmox::access::AclEntry {
            path: PVE_PATH.into(),
            kind: UgidKind::Token,
            ugid: full.clone(),
            roleid: PVE_ROLE.into(),
            propagate: true,
        }]
    );
    let mint_calls: Vec<_> = lab
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.contains("/token/"))
        .collect();
    assert_eq!(mint_calls.len(), 1, "{mint_calls:?}");
    for form in ["privsep=1", "expire=", "comment="] {
        assert!(mint_calls[0].body.contains(form), "{}", mint_calls[0].body);
    }

    lab.fake.clear_requests();
    let (code, body) = over_socket(&socket, "GET", "/version", &[]);
    assert_eq!(code, 200, "{body}");
    let (code, body) = over_socket(
        &socket,
        "GET",
        "/nodes",
        &[
            "-H",
            "Authorization: PVEAPIToken=root@pam!mine=11111111-2222-3333-4444-555555555555",
            "-H",
            "Cookie: PVEAuthCookie=PVE:root@pam:ABC::sig",
            "-H",
            "CSRFPreventionToken: ABC:sig",
            "-H",
            "Proxy-Authorization: Basic Zm9vOmJhcg==",
        ],
    );
    assert_eq!(code, 200, "{body}");
    let (code, body) = over_socket(&socket, "GET", "/access/acl", &[]);
    assert_eq!(code, 200, "reads under /access/ pass: {body}");
    let (code, body) = over_socket(
        &socket,
        "POST",
        "/access/users/svc-terraform@pve/token/escape",
        &["--data", "privsep=0"],
    );
    assert!((400..500).contains(&code), "{code} {body}");
    let (code, body) = over_socket(
        &socket,
        "PUT",
        "/access/acl",
        &[
            "--data",
            "path=/&roles=Administrator&users=svc-terraform@pve",
        ],
    );
    assert!((400..500).contains(&code), "{code} {body}");
    let seen = worker_requests(&lab.fake);
    assert_eq!(
        seen.len(),
        3,
        "only the allowed requests reached Proxmox: {seen:?}"
    );
    for r in &seen {
        assert_eq!(r.token_id.as_deref(), Some(&*full), "{r:?}");
        assert_eq!(
            r.authorization.as_deref(),
            Some(&*format!("PVEAPIToken={full}={secret}")),
            "{r:?}"
        );
        for stripped in [
            "cookie",
            "csrfpreventiontoken",
            "proxy-authorization",
            portcullis_proto::pve::LOCAL_SECRET_HEADER,
        ] {
            assert!(
                r.header(stripped).is_none(),
                "{stripped} reached Proxmox: {r:?}"
            );
        }
    }

    PveLab::interrupt(&mut child);
    lab.wait_gone(&full, Duration::from_secs(15));
    let minted_events = lab.audit("pve_token_minted");
    assert!(
        minted_events.iter().any(|e| e.to_string().contains(&full)),
        "{minted_events:?}"
    );
    poll(
        "the revocation's audit event",
        Duration::from_secs(15),
        || {
            let revoked = lab.audit("pve_token_revoked");
            if revoked.iter().any(|e| e.to_string().contains(&full)) {
                Ok(())
            } else {
                Err(format!("{revoked:?}"))
            }
        },
    );
}

/// A role with `access_writes = true` lets writes under `/access/` through to Proxmox (which
/// then decides: the fake refuses a token without `User.Modify`, 403, as Proxmox does).
#[test]
fn access_writes_reach_proxmox_when_the_role_allows_them() {
    let lab = PveLab::start_with(None, true);
    let socket = lab.work.path().join("pve.sock");
    let (mut child, _, full, _) = lab.connect_socket(&socket);
    let (code, body) = over_socket(
        &socket,
        "PUT",
        "/access/password",
        &["--data", "userid=svc-terraform@pve&password=x"],
    );
    assert_eq!(code, 403, "Proxmox's own answer: {body}");
    let reached: Vec<_> = worker_requests(&lab.fake)
        .into_iter()
        .filter(|r| r.method == "PUT" && r.path == "/access/password")
        .collect();
    assert_eq!(reached.len(), 1, "{reached:?}");
    assert_eq!(reached[0].token_id.as_deref(), Some(&*full));
    PveLab::interrupt(&mut child);
    lab.wait_gone(&full, Duration::from_secs(15));
}

/// Proxmox refuses the token (here: the user does not exist): the session is not opened,
/// the CLI says Proxmox's words, the failure is audited, and nothing is left in Proxmox.
#[test]
fn a_refused_mint_opens_no_session_and_says_why() {
    let lab = PveLab::start(None);
    lab.fake.with(|s| s.access.users.remove(SERVICE_USER));
    let socket = lab.work.path().join("pve.sock");
    let out = lab
        .cli()
        .args(["connect", TARGET, "--socket", socket.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("no such user ('svc-terraform@pve')"),
        "Proxmox's answer is named: {stderr}"
    );
    assert!(!socket.exists());
    poll(
        "the failed mint in the audit",
        Duration::from_secs(15),
        || {
            let failed = lab.audit("pve_token_mint_failed");
            if failed.is_empty() {
                Err("none yet".to_owned())
            } else {
                Ok(())
            }
        },
    );
    assert!(lab.fake.tokens().is_empty());
    assert!(lab.fake.with(|s| s.access.acl.is_empty()));
    let live: Value =
        serde_json::from_str(&lab.ok(&["sessions", "list", "--live", "--json"])).unwrap();
    assert_eq!(live, serde_json::json!([]), "no session left open");
}

/// Request smuggling's shapes are refused at the worker, before Proxmox sees anything:
/// Content-Length with Transfer-Encoding, two Content-Lengths, an absolute-form target, and
/// an Upgrade; each is answered with a 4xx and the connection closed.
#[test]
fn smuggling_shaped_requests_are_refused_before_proxmox() {
    let lab = PveLab::start(None);
    let socket = lab.work.path().join("pve.sock");
    let (mut child, _, full, _) = lab.connect_socket(&socket);
    lab.fake.clear_requests();
    let smuggled = "GET /api2/json/access/acl HTTP/1.1\r\nHost: pve\r\n\r\n";
    let attempts = [
        (
            "CL+TE",
            format!(
                "POST /api2/json/nodes/node1/qemu HTTP/1.1\r\nHost: pve\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "duplicate CL",
            format!(
                "POST /api2/json/nodes/node1/qemu HTTP/1.1\r\nHost: pve\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{smuggled}",
                smuggled.len()
            ),
        ),
        (
            "absolute-form",
            "GET http://evil.example/api2/json/version HTTP/1.1\r\nHost: pve\r\n\r\n".to_owned(),
        ),
        (
            "Upgrade",
            "GET /api2/json/nodes/node1/qemu/100/vncwebsocket HTTP/1.1\r\nHost: pve\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".to_owned(),
        ),
    ];
    for (what, raw) in attempts {
        let answer = raw_over_socket(&socket, &raw);
        let status = answer.lines().next().unwrap_or_default().to_owned();
        let code: u16 = status
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        assert!(
            (400..500).contains(&code),
            "{what}: answered {status:?}\n{answer}"
        );
        assert_eq!(
            answer.matches("HTTP/1.1 ").count(),
            1,
            "{what}: one answer, nothing for a smuggled request:\n{answer}"
        );
        assert!(
            worker_requests(&lab.fake).is_empty(),
            "{what} reached Proxmox: {:?}",
            worker_requests(&lab.fake)
        );
    }
    // The session still works for a well-formed request.
    let (code, body) = over_socket(&socket, "GET", "/version", &[]);
    assert_eq!(code, 200, "{body}");
    assert_eq!(lab.fake.requests_of(&full).len(), 1);
    PveLab::interrupt(&mut child);
    lab.wait_gone(&full, Duration::from_secs(15));
}

/// Bodies up to 512 KiB pass, larger ones are refused 413 before Proxmox; a chunked answer
/// (a task's log) arrives whole; keep-alive carries several requests on one connection;
/// and each request is audited as method, path (query values redacted), status and bytes.
#[test]
fn bodies_chunked_answers_and_the_request_record() {
    let lab = PveLab::start(None);
    let socket = lab.work.path().join("pve.sock");
    let (mut child, line, full, _) = lab.connect_socket(&socket);
    let session = line["session_id"].as_str().unwrap().to_owned();
    let (code, body) = over_socket(
        &socket,
        "POST",
        "/nodes/node1/qemu",
        &["--data", "vmid=4000&name=big"],
    );
    assert_eq!(code, 200, "{body}");
    let upid = serde_json::from_str::<Value>(&body).unwrap()["data"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let fits = write(
        dir.path(),
        "fits",
        &format!("description={}", "a".repeat(500 * 1024)),
    );
    let (code, body) = over_socket(
        &socket,
        "PUT",
        "/nodes/node1/qemu/4000/config",
        &["--data-binary", &format!("@{}", fits.display())],
    );
    assert_eq!(code, 200, "{body}");
    assert!(lab
        .fake
        .requests_of(&full)
        .iter()
        .any(|r| r.method == "PUT" && r.body.len() > 500 * 1024));
    let too_big = write(
        dir.path(),
        "too_big",
        &format!("description={}", "a".repeat(600 * 1024)),
    );
    let before = worker_requests(&lab.fake).len();
    let (code, _) = over_socket(
        &socket,
        "PUT",
        "/nodes/node1/qemu/4000/config",
        &[
            "--data-binary",
            &format!("@{}", too_big.display()),
            "-H",
            "Expect: 100-continue",
        ],
    );
    assert_eq!(code, 413);
    assert_eq!(
        worker_requests(&lab.fake).len(),
        before,
        "the large body never reached Proxmox"
    );
    let (code, body) = over_socket(
        &socket,
        "GET",
        &format!(
            "/nodes/node1/tasks/{}/log?start=0&limit=500",
            upid.replace(':', "%3A")
        ),
        &[],
    );
    assert_eq!(code, 200);
    let log: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        log["data"].as_array().unwrap().len(),
        200,
        "the whole chunked answer"
    );
    // Keep-alive: curl fetches two URLs on one connection (it says "Re-using").
    let out = Command::new("curl")
        .args([
            "-sS",
            "-v",
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            "--unix-socket",
        ])
        .arg(&socket)
        .args(["http://pve/api2/json/version", "http://pve/api2/json/nodes"])
        .output()
        .unwrap();
    let verbose = String::from_utf8_lossy(&out.stderr);
    assert!(verbose.to_lowercase().contains("re-using"), "{verbose}");
    let (code, _) = over_socket(&socket, "GET", "/cluster/resources?type=vm", &[]);
    assert_eq!(code, 200);
    let record = poll("the requests in the audit", Duration::from_secs(15), || {
        let events = lab.audit("pve_request");
        let text: Vec<String> = events.iter().map(Value::to_string).collect();
        if text.iter().any(|t| t.contains("/cluster/resources"))
            && text.iter().any(|t| t.contains("\"status\":413"))
        {
            Ok(text)
        } else {
            Err(format!("{text:?}"))
        }
    });
    let listing = record
        .iter()
        .find(|t| t.contains("/cluster/resources"))
        .unwrap();
    assert!(
        !listing.contains("type=vm"),
        "the query value is redacted: {listing}"
    );
    assert!(listing.contains(&session), "{listing}");
    assert!(
        record.iter().all(|t| !t.contains("aaaaaaaa")),
        "no bodies in the record"
    );
    PveLab::interrupt(&mut child);
    lab.wait_gone(&full, Duration::from_secs(15));
}

/// Proxmox is down while the session ends: the revocation fails (audited), and once Proxmox
/// is back the token and its ACL entries are removed, with no further action. The fake is
/// told to leave a deleted token's ACL entries in place, so the controller must remove
/// them itself.
#[test]
fn the_token_and_its_acl_are_removed_after_a_proxmox_outage() {
    let mut lab = PveLab::start(None);
    lab.fake.with(|s| s.access.delete_keeps_acls = true);
    let socket = lab.work.path().join("pve.sock");
    let (mut child, _, full, _) = lab.connect_socket(&socket);
    lab.fake.pause();
    PveLab::interrupt(&mut child);
    poll(
        "a failed revocation in the audit",
        Duration::from_secs(30),
        || {
            let failed = lab.audit("pve_token_revoke_failed");
            if failed.iter().any(|e| e.to_string().contains(&full)) {
                Ok(())
            } else {
                Err(format!("{failed:?}"))
            }
        },
    );
    assert!(lab.fake.tokens().contains_key(&full), "Proxmox was down");
    lab.fake.resume();
    lab.wait_gone(&full, Duration::from_secs(60));
    assert!(lab
        .fake
        .requests()
        .iter()
        .any(|r| r.method == "PUT" && r.path == "/access/acl" && r.body.contains("delete=1")));
}

/// The controller dies after committing its intent and sending the token creation, before
/// Proxmox answers ([`Hold`]): started again, it ends the session and deletes whatever
/// exists under the token id derived from the session id, ACL entries included.
fn a_crash_between_intent_and_creation(hold: Hold) {
    let lab = PveLab::start(None);
    lab.fake.hold_token_create(hold);
    let socket = lab.work.path().join("pve.sock");
    let mut connect = lab
        .cli()
        .args(["connect", TARGET, "--socket", socket.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        "the token creation to be held",
        Duration::from_secs(60),
        || lab.fake.held() == 1,
    );
    let create = lab
        .fake
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path.contains("/token/"))
        .unwrap();
    let token_path = create.path.clone();
    let name = token_path.rsplit('/').next().unwrap().to_owned();
    let full = format!("{SERVICE_USER}!{name}");
    assert_eq!(
        lab.fake.tokens().contains_key(&full),
        hold == Hold::AfterCreating
    );
    // The crash: the dev stack (controller and worker) killed outright; the client too.
    let PveLab {
        fake,
        mut dev,
        args,
        work,
    } = lab;
    dev.child.kill().unwrap();
    dev.child.wait().unwrap();
    connect.kill().unwrap();
    connect.wait().unwrap();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let restarted = Dev::start_in(&dev.state_dir, &refs);
    fake.release();
    let lab = PveLab {
        fake,
        dev: restarted,
        args,
        work,
    };
    poll(
        "the derived token to be deleted",
        Duration::from_secs(60),
        || {
            let deleted = lab.fake.requests().iter().any(|r| {
                r.method == "DELETE"
                    && common::proxmox::decoded_path(&r.path)
                        == common::proxmox::decoded_path(&token_path)
            });
            let gone = !lab.fake.tokens().contains_key(&full) && lab.fake.acl_of(&full).is_empty();
            if deleted && gone {
                Ok(())
            } else {
                Err(format!(
                    "deleted: {deleted}; tokens: {:?}",
                    lab.fake.tokens().keys()
                ))
            }
        },
    );
    poll("the session to end", Duration::from_secs(30), || {
        let live: Value =
            serde_json::from_str(&lab.ok(&["sessions", "list", "--live", "--json"])).unwrap();
        if live.as_array().is_some_and(Vec::is_empty) {
            Ok(())
        } else {
            Err(live.to_string())
        }
    });
    drop(dev);
}

#[test]
fn a_controller_crash_before_proxmox_created_the_token_leaves_nothing() {
    a_crash_between_intent_and_creation(Hold::Stall);
}

#[test]
fn a_controller_crash_after_proxmox_created_the_token_deletes_it() {
    a_crash_between_intent_and_creation(Hold::AfterCreating);
}

/// Every file under `dir` (recursively) whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if kind.is_file() {
            if let Ok(bytes) = std::fs::read(&path) {
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(path);
                }
            }
        }
    }
    found
}

/// The Proxmox secret stays with the controller (sealed) and the worker (in memory): it is
/// in no log line of the controller or the worker, no audit event (which name the token
/// id), none of the client's files (config, cache, runtime directories), not in plain text
/// in the controller's state directory, and in the environment of no process.
#[test]
fn the_proxmox_secret_appears_nowhere_outside_the_worker() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("dev.log");
    let lab = PveLab::start(Some(&log));
    let socket = lab.work.path().join("pve.sock");
    let (mut child, _, full, secret) = lab.connect_socket(&socket);
    for path in ["/version", "/nodes", "/cluster/resources?type=vm"] {
        assert_eq!(over_socket(&socket, "GET", path, &[]).0, 200);
    }
    let environ_holders = |needle: &str| -> Vec<String> {
        let mut holders = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let environ = entry.path().join("environ");
            if let Ok(bytes) = std::fs::read(&environ) {
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    holders.push(environ.display().to_string());
                }
            }
        }
        holders
    };
    assert_eq!(
        environ_holders(&secret),
        Vec::<String>::new(),
        "while the session is live"
    );
    PveLab::interrupt(&mut child);
    lab.wait_gone(&full, Duration::from_secs(15));
    let exported = lab.work.path().join("audit.jsonl");
    lab.ok(&[
        "audit",
        "export",
        "--format",
        "jsonl",
        "--output",
        exported.to_str().unwrap(),
    ]);
    let audit = std::fs::read_to_string(&exported).unwrap();
    assert!(audit.contains(&full), "the audit names the token id");
    assert!(!audit.contains(&secret), "the secret is in the audit");
    let listed = lab.ok(&["audit", "list", "--json", "--limit", "1000"]);
    assert!(!listed.contains(&secret));
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(!log_text.is_empty(), "the dev stack logged at info");
    assert!(!log_text.contains(&secret), "the secret is in the log");
    assert_eq!(
        files_containing(lab.work.path(), &secret),
        Vec::<PathBuf>::new()
    );
    assert_eq!(
        files_containing(&lab.dev.state_dir, &secret),
        Vec::<PathBuf>::new()
    );
    assert_eq!(environ_holders(&secret), Vec::<String>::new());
}

/// The local end is a credential: by default a unix socket 0600 in a 0700 directory of the
/// runtime directory, which another local user cannot use (as root: `runuser -u nobody`;
/// made reachable on purpose, the same request does get through, so the refusal is the
/// permissions'). The loopback HTTPS end (`--exec`) refuses a request without the local
/// secret or with a wrong one (401), and serves one with it, as a PVEAPIToken or in
/// X-Portcullis-Session-Secret, with a certificate the CA bundle it hands the child verifies
/// for 127.0.0.1 and localhost; the child's environment names the endpoint.
#[test]
fn the_local_end_is_the_users_alone() {
    let lab = PveLab::start(None);
    // The runtime directory's parents open to all: only the CLI's own modes protect it.
    std::fs::set_permissions(lab.work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        lab.work.path().join("run"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let (mut child, line) = lab.connect(&[]);
    let socket = PathBuf::from(
        ["path", "socket", "endpoint"]
            .iter()
            .find_map(|k| line[k].as_str())
            .map(|p| p.trim_start_matches("unix:"))
            .unwrap_or_else(|| panic!("no socket path in {line}")),
    );
    assert!(
        socket.starts_with(lab.work.path().join("run/portcullis")),
        "{}",
        socket.display()
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&socket), 0o600);
    assert_eq!(mode(socket.parent().unwrap()), 0o700);
    assert_eq!(over_socket(&socket, "GET", "/version", &[]).0, 200);
    if rustix::process::geteuid().is_root() {
        let as_nobody = || {
            Command::new("runuser")
                .args([
                    "-u",
                    "nobody",
                    "--",
                    "curl",
                    "-sS",
                    "--max-time",
                    "10",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--unix-socket",
                ])
                .arg(&socket)
                .arg("http://pve/api2/json/version")
                .output()
                .unwrap()
        };
        let refused = as_nobody();
        assert!(
            !refused.status.success(),
            "nobody used the socket: {refused:?}"
        );
        std::fs::set_permissions(
            socket.parent().unwrap(),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
        let allowed = as_nobody();
        assert_eq!(
            String::from_utf8_lossy(&allowed.stdout),
            "200",
            "the control: {allowed:?}"
        );
    } else {
        println!("skipped the second user's attempt: it needs root to run as nobody (runuser)");
    }
    PveLab::interrupt(&mut child);

    let script = r#"
code() { curl -sS --max-time 20 -o /dev/null -w '%{http_code}' "$@"; }
printf '%s %s %s %s %s\n' \
  "$(code "$PORTCULLIS_PVE_URL/api2/json/version")" \
  "$(code -H "Authorization: PVEAPIToken=$PROXMOX_USER!$PROXMOX_TOKEN_ID=0000" "$PORTCULLIS_PVE_URL/api2/json/version")" \
  "$(code -H "Authorization: PVEAPIToken=$PROXMOX_USER!$PROXMOX_TOKEN_ID=$PROXMOX_TOKEN_SECRET" "$PORTCULLIS_PVE_URL/api2/json/version")" \
  "$(code -H "X-Portcullis-Session-Secret: $PROXMOX_TOKEN_SECRET" "${PROXMOX_VE_ENDPOINT}api2/json/nodes")" \
  "$(code -H "Authorization: PVEAPIToken=$PROXMOX_VE_API_TOKEN" "https://[::1]:$PROXMOX_PORT/api2/json/version" || true)"
env | grep -E '^(PORTCULLIS_PVE_URL|PROXMOX_VE_ENDPOINT|PROXMOX_HOST|PROXMOX_PORT|PROXMOX_USER|PROXMOX_TOKEN_ID)=' | sort
"#;
    lab.fake.clear_requests();
    let out = lab.exec("sh", &["-c", script]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let codes: Vec<&str> = stdout.lines().next().unwrap().split(' ').collect();
    assert_eq!(&codes[..4], ["401", "401", "200", "200"], "{stdout}");
    let env: BTreeMap<&str, &str> = stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once('='))
        .collect();
    let port = env["PROXMOX_PORT"];
    assert_eq!(
        env["PORTCULLIS_PVE_URL"],
        format!("https://127.0.0.1:{port}")
    );
    assert_eq!(
        env["PROXMOX_VE_ENDPOINT"],
        format!("https://localhost:{port}/")
    );
    assert_eq!(env["PROXMOX_HOST"], "localhost");
    assert_eq!(env["PROXMOX_USER"], portcullis_proto::pve::LOCAL_TOKEN_USER);
    assert_eq!(
        env["PROXMOX_TOKEN_ID"],
        portcullis_proto::pve::LOCAL_TOKEN_NAME
    );
    // Only the two requests with the secret reached Proxmox (the ::1 one too, if served).
    let reached = lab
        .fake
        .requests()
        .iter()
        .filter(|r| r.token_id.as_deref().is_some_and(|t| t.contains("!pc-")))
        .count();
    assert!((2..=3).contains(&reached), "{:?}", lab.fake.requests());
}

/// The fake serves proxmoxer's session script straight to a minted token (the calls the
/// session test makes through the worker).
#[test]
fn the_fake_serves_proxmoxers_session_script() {
    let fake = FakeProxmox::start();
    let token = mint_vm_admin(&fake, "pc-py");
    let (_, secret) = token.rsplit_once('=').unwrap();
    let dir = tempfile::tempdir().unwrap();
    let script = write(dir.path(), "session.py", PROXMOXER_SESSION);
    let out = Command::new(proxmoxer_python())
        .arg(&script)
        .env("PROXMOX_HOST", "localhost")
        .env("PROXMOX_PORT", fake.port.to_string())
        .env("PROXMOX_USER", SERVICE_USER)
        .env("PROXMOX_TOKEN_ID", "pc-py")
        .env("PROXMOX_TOKEN_SECRET", secret)
        .env("REQUESTS_CA_BUNDLE", &fake.ca_file)
        .output()
        .unwrap();
    assert_proxmoxer(&out);
}

/// What [`PROXMOXER_SESSION`] must have printed.
fn assert_proxmoxer(out: &std::process::Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["version"]["version"], "9.1.1", "{v}");
    assert_eq!(v["config"]["name"], "py-vm", "{v}");
    assert!(v["nodes"].as_array().unwrap().len() >= 4, "{v}");
}

/// proxmoxer, configured only from what `--exec` hands it (host, port, the local token id
/// and secret, the CA bundle), reads the cluster and creates a VM through the session; the
/// fake saw the session's token on each of its requests.
#[test]
fn proxmoxer_works_through_the_session_without_a_proxmox_secret() {
    let lab = PveLab::start(None);
    let script = write(lab.work.path(), "session.py", PROXMOXER_SESSION);
    let python = proxmoxer_python();
    let out = lab.exec(python.to_str().unwrap(), &[script.to_str().unwrap()]);
    assert_proxmoxer(&out);
    let created: Vec<_> = lab
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/nodes/node1/qemu")
        .collect();
    assert_eq!(created.len(), 1);
    assert!(created[0]
        .token_id
        .as_deref()
        .is_some_and(|t| t.starts_with(&format!("{SERVICE_USER}!pc-"))));
}

/// The bpg/proxmox Terraform provider's sequence ([`TERRAFORM_REPLAY`]), configured from
/// PROXMOX_VE_ENDPOINT, PROXMOX_VE_API_TOKEN and SSL_CERT_FILE as `--exec` sets them:
/// create, configure, start, read, task polling, the chunked log, stop and destroy all
/// work on one keep-alive connection with no Proxmox secret on the client side.
#[test]
fn the_terraform_providers_sequence_works_through_the_session() {
    let lab = PveLab::start(None);
    let script = write(lab.work.path(), "replay.py", TERRAFORM_REPLAY);
    let out = lab.exec(python3(), &[script.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_terraform_replay(&v);
    let minted: Vec<_> = worker_requests(&lab.fake)
        .into_iter()
        .filter(|r| r.path.starts_with("/nodes/node1/qemu"))
        .collect();
    assert!(minted.len() >= 8, "{minted:?}");
    assert!(
        minted
            .iter()
            .all(|r| r.token_id.as_deref().is_some_and(|t| t.contains("!pc-"))),
        "{minted:?}"
    );
}

/// The playbook [`ansible_community_proxmox_works_through_the_session`] runs: the VMs of
/// node1 (`proxmox_vm_info`), then a VM made (`proxmox_kvm`), with the connection from the
/// environment `portcullis connect --exec` sets; written into `dir` with an inventory. The
/// arguments for `ansible-playbook` and the file the results land in.
fn ansible_files(dir: &Path) -> (Vec<String>, PathBuf) {
    let python = ansible_playbook().with_file_name("python");
    let inventory = write(
        dir,
        "inventory",
        &format!(
            "localhost ansible_connection=local ansible_python_interpreter={}\n",
            python.display()
        ),
    );
    let out = dir.join("ansible-out.json");
    let playbook = write(
        dir,
        "pve.yml",
        r#"- hosts: localhost
  gather_facts: false
  module_defaults:
    group/community.proxmox.proxmox:
      api_host: "{{ lookup('env', 'PROXMOX_HOST') }}"
      api_port: "{{ lookup('env', 'PROXMOX_PORT') | int }}"
      api_user: "{{ lookup('env', 'PROXMOX_USER') }}"
      api_token_id: "{{ lookup('env', 'PROXMOX_TOKEN_ID') }}"
      api_token_secret: "{{ lookup('env', 'PROXMOX_TOKEN_SECRET') }}"
      validate_certs: true
  tasks:
    - name: the VMs of node1
      community.proxmox.proxmox_vm_info:
        node: node1
        type: qemu
      register: info
    - name: a VM
      community.proxmox.proxmox_kvm:
        node: node1
        vmid: 4100
        name: ansible-vm
        cores: 1
        memory: 512
        state: present
        timeout: 30
      register: created
    - ansible.builtin.copy:
        content: "{{ {'info': info, 'created': created} | to_json }}"
        dest: "{{ out }}"
"#,
    );
    let args = vec![
        "-i".to_owned(),
        inventory.display().to_string(),
        playbook.display().to_string(),
        "-e".to_owned(),
        format!("out={}", out.display()),
    ];
    (args, out)
}

/// What the playbook must have done, and the fake seen.
fn assert_ansible(out: &std::process::Output, results: &Path, fake: &FakeProxmox) {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(results).unwrap()).unwrap();
    let vms = v["info"]["proxmox_vms"].as_array().unwrap();
    assert!(vms.iter().any(|vm| vm["vmid"] == 101), "{v}");
    assert_eq!(v["created"]["changed"], true, "{v}");
    assert!(fake.with(|s| s.guests.vms.contains_key(&4100)));
}

/// The fake serves Ansible's `community.proxmox` modules (the PyPI `ansible` package's
/// collection), straight to a minted token: the playbook the session test runs works
/// against the fake itself.
#[test]
fn the_fake_serves_ansible_community_proxmox() {
    let fake = FakeProxmox::start();
    let token = mint_vm_admin(&fake, "pc-ansible");
    let (_, secret) = token.rsplit_once('=').unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (args, results) = ansible_files(dir.path());
    let out = Command::new(ansible_playbook())
        .args(&args)
        .env("ANSIBLE_NOCOLOR", "1")
        .env("PROXMOX_HOST", "localhost")
        .env("PROXMOX_PORT", fake.port.to_string())
        .env("PROXMOX_USER", SERVICE_USER)
        .env("PROXMOX_TOKEN_ID", "pc-ansible")
        .env("PROXMOX_TOKEN_SECRET", secret)
        .env("REQUESTS_CA_BUNDLE", &fake.ca_file)
        .output()
        .unwrap();
    assert_ansible(&out, &results, &fake);
}

/// Ansible's `community.proxmox` modules (from the PyPI `ansible` package) read the VMs and
/// create one through the session, given only the local token id and secret; every request
/// of theirs reached Proxmox with the session's token.
#[test]
fn ansible_community_proxmox_works_through_the_session() {
    let lab = PveLab::start(None);
    let (args, results) = ansible_files(lab.work.path());
    let started = std::time::Instant::now();
    let out = lab
        .cli()
        .args(["connect", TARGET, "--exec"])
        .arg(ansible_playbook())
        .arg("--")
        .args(&args)
        .env("ANSIBLE_NOCOLOR", "1")
        .output()
        .unwrap();
    println!("the playbook took {:?}", started.elapsed());
    assert_ansible(&out, &results, &lab.fake);
    assert!(lab
        .fake
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/nodes/") || r.path.starts_with("/cluster/"))
        .filter(|r| r.token_id.as_deref() != Some("portcullis@pve!discovery"))
        .all(|r| r.token_id.as_deref().is_some_and(|t| t.contains("!pc-"))));
}
