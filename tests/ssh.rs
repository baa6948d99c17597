//! `portcullis connect ssh` against a real OpenSSH sshd that trusts the controller's SSH CA.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::process::Command;

use common::dev::{curl, Dev};
use common::sshd::{login_user, Sshd};

fn setup(host_key: Option<&str>) -> (Dev, Sshd) {
    let user = login_user();
    let dev = Dev::start(&["--user", &user, "--worker-egress", "127.0.0.2"]);
    let (code, ca) = curl(&dev, "GET", "/v1/ssh/ca", None, None);
    assert_eq!(code, 200, "{ca}");
    assert!(ca.starts_with("ssh-ed25519 "), "{ca}");
    let sshd = Sshd::start(&ca, &[&user]);
    let body = serde_json::json!({
        "name": "box",
        "address": format!("127.0.0.1:{}", sshd.port),
        "zone": "LOCAL",
        "service": "echo",
        "ssh_host_keys": [host_key.unwrap_or(&sshd.host_key_pub)],
    })
    .to_string();
    let (code, text) = curl(
        &dev,
        "POST",
        "/v1/targets",
        Some(&dev.var("PORTCULLIS_TOKEN")),
        Some(&body),
    );
    assert_eq!(code, 201, "{text}");
    (dev, sshd)
}

#[test]
fn connect_ssh_runs_a_command_and_sshd_names_the_session() {
    let (dev, sshd) = setup(None);
    let out = dev
        .cli()
        .args(["connect", "ssh", "box", "--", "echo", "hello-from-target"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\nsshd log:\n{}", sshd.log());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "hello-from-target"
    );
    // The certificate's key id is the session id, and sshd logs it.
    let (line, sid) = sshd.accepted_session();
    assert!(sid.starts_with("s_"), "{line}");
    // The connection came from the worker's egress address.
    assert!(line.contains("from 127.0.0.2"), "{line}");
    // The session is known and ended when ssh exited.
    let (code, text) = curl(
        &dev,
        "GET",
        &format!("/v1/sessions/{sid}"),
        Some(&dev.var("PORTCULLIS_TOKEN")),
        None,
    );
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("\"terminated\""), "{text}");
}

#[test]
fn the_certificate_is_useless_outside_the_broker() {
    let (dev, sshd) = setup(None);
    // A key and certificate of our own, for a real session.
    let key = sshd.path("user_key");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success());
    let public = std::fs::read_to_string(sshd.path("user_key.pub")).unwrap();
    let tls = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let body = serde_json::json!({
        "client_public_key": portcullis_proto::keys::b64(&rcgen::PublicKeyData::subject_public_key_info(&tls)),
        "ssh_public_key": public.trim(),
    })
    .to_string();
    let (code, text) = curl(
        &dev,
        "POST",
        "/v1/targets/box/authorize-session",
        Some(&dev.var("PORTCULLIS_TOKEN")),
        Some(&body),
    );
    assert_eq!(code, 201, "{text}");
    let auth: serde_json::Value = serde_json::from_str(&text).unwrap();
    std::fs::write(
        sshd.path("user_key-cert.pub"),
        auth["ssh_certificate"].as_str().unwrap(),
    )
    .unwrap();
    let cert_info = Command::new("ssh-keygen")
        .arg("-L")
        .arg("-f")
        .arg(sshd.path("user_key-cert.pub"))
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&cert_info.stdout);
    assert!(
        info.contains(auth["session_id"].as_str().unwrap()),
        "{info}"
    );
    assert!(info.contains("source-address 127.0.0.2"), "{info}");
    // Used directly from 127.0.0.1 (not through the worker): refused.
    let known = sshd.path("known_hosts");
    std::fs::write(
        &known,
        format!("[127.0.0.1]:{} {}\n", sshd.port, sshd.host_key_pub),
    )
    .unwrap();
    let out = Command::new("ssh")
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known.display()))
        .arg("-i")
        .arg(&key)
        .args([
            "-p",
            &sshd.port.to_string(),
            "-l",
            &sshd.user,
            "127.0.0.1",
            "true",
        ])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "direct use of the certificate succeeded"
    );
    let log = sshd.log();
    assert!(log.contains("not from a permitted source address"), "{log}");
}

#[test]
fn a_wrong_host_key_is_refused() {
    let other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGfJ5mkQp5q2eJp5r0N4rK1pY2uXQ0Jm7KcQxUY9n3aK";
    let (dev, sshd) = setup(Some(other));
    let out = dev
        .cli()
        .args(["connect", "ssh", "box", "--", "true"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "connected despite a wrong pinned host key"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Host key verification failed")
            || stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{stderr}"
    );
    assert!(!sshd.log().contains("Accepted publickey"));
}

/// Authorises a session for a fresh key and returns (session id, certificate path).
fn certified_session(dev: &Dev, sshd: &Sshd, name: &str) -> (String, std::path::PathBuf) {
    let key = sshd.path(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success());
    let public = std::fs::read_to_string(sshd.path(&format!("{name}.pub"))).unwrap();
    let tls = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let body = serde_json::json!({
        "client_public_key": portcullis_proto::keys::b64(&rcgen::PublicKeyData::subject_public_key_info(&tls)),
        "ssh_public_key": public.trim(),
    })
    .to_string();
    let (code, text) = curl(
        dev,
        "POST",
        "/v1/targets/box/authorize-session",
        Some(&dev.var("PORTCULLIS_TOKEN")),
        Some(&body),
    );
    assert_eq!(code, 201, "{text}");
    let auth: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cert = sshd.path(&format!("{name}-cert.pub"));
    std::fs::write(&cert, auth["ssh_certificate"].as_str().unwrap()).unwrap();
    (auth["session_id"].as_str().unwrap().to_owned(), cert)
}

#[test]
fn the_krl_revokes_certificates_of_ended_sessions() {
    let (dev, sshd) = setup(None);
    let (ended, ended_cert) = certified_session(&dev, &sshd, "k1");
    let (_live, live_cert) = certified_session(&dev, &sshd, "k2");
    let (code, text) = curl(
        &dev,
        "POST",
        &format!("/v1/sessions/{ended}/cancel"),
        Some(&dev.var("PORTCULLIS_TOKEN")),
        Some("{}"),
    );
    assert_eq!(code, 200, "{text}");
    let verdict = sshd.krl_says(&dev, &ended_cert);
    assert!(verdict.contains("REVOKED"), "{verdict}");
    let verdict = sshd.krl_says(&dev, &live_cert);
    assert!(verdict.contains(": ok"), "{verdict}");
    // The revocation is audited with the serial.
    let (_, text) = curl(
        &dev,
        "GET",
        &format!("/v1/audit?session={ended}&type=session_terminated"),
        Some(&dev.var("PORTCULLIS_TOKEN")),
        None,
    );
    assert!(text.contains("ssh_certificates_revoked"), "{text}");
    // A random 64-bit serial is mostly beyond what RFC 8785 (audit schema 3) holds exactly:
    // serials are always written as decimal strings, and the chain verifies.
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    let serials = &answer["items"][0]["details"]["ssh_certificates_revoked"];
    let written_right = serials[0]
        .as_str()
        .is_some_and(|s| s.parse::<u64>().is_ok());
    assert!(written_right, "{serials}");
    let out = dev.cli().args(["audit", "verify"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn plain_ssh_works_through_the_generated_ssh_config() {
    let (dev, sshd) = setup(None);
    let runtime = tempfile::tempdir().unwrap();
    let config_path = dev.write_ssh_config(runtime.path());
    let config = std::fs::read_to_string(&config_path).unwrap();
    assert!(config.contains("Match originalhost *.pc exec"), "{config}");
    assert!(
        config
            .contains("# No pinned SSH host key or host CA (ssh to them fails until one is): echo"),
        "{config}"
    );
    let mut ssh = dev.ssh(&config_path, runtime.path());
    ssh.args([
        "-o",
        "BatchMode=yes",
        "-l",
        &sshd.user,
        "box.pc",
        "echo",
        "plain-ssh-ok",
    ]);
    let out = ssh.output().unwrap();
    assert!(
        out.status.success(),
        "{}\nsshd:\n{}",
        String::from_utf8_lossy(&out.stderr),
        sshd.log()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "plain-ssh-ok");
    // A second connection within the certificate's life reuses the session.
    let out2 = ssh.output().unwrap();
    assert!(out2.status.success());
    let log = sshd.log();
    let ids: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Accepted publickey"))
        .filter_map(|l| l.split("ID ").nth(1))
        .filter_map(|r| r.split_whitespace().next())
        .collect::<Vec<_>>();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_eq!(ids[0], ids[1], "connections of one host share a session");
}

/// While ssh runs (for hours, perhaps), `connect ssh` holds no connection to the controller:
/// the controller allows each address only a few, and many `connect ssh` run side by side.
#[test]
fn connect_ssh_holds_no_api_connection_while_ssh_runs() {
    use std::io::{BufRead as _, Write as _};
    let (dev, sshd) = setup(None);
    let mut child = dev
        .cli()
        .args(["connect", "ssh", "box", "--", "echo up; read line"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "up\n", "sshd:\n{}", sshd.log());
    let api_port = dev.api().rsplit(':').next().unwrap().to_owned();
    let out = Command::new("ss")
        .args([
            "-tnp",
            "state",
            "established",
            &format!("( dport = :{api_port} )"),
        ])
        .output()
        .unwrap();
    let connections = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{connections}");
    assert!(
        !connections.contains(&format!("pid={},", child.id())),
        "connect ssh holds an API connection while ssh runs:\n{connections}"
    );
    child.stdin.take().unwrap().write_all(b"done\n").unwrap();
    assert!(child.wait().unwrap().success());
}
