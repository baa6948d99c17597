//! SSH in gateway mode, end to end: real OpenSSH clients (ssh, scp, sftp, rsync, Ansible, a
//! terminal driven through tmux) log into the worker's SSH gateway with the session's key,
//! and the gateway logs into a real sshd with a credential the client never holds. Every
//! channel is checked against the role: forwards to the target's own loopback go through the
//! target, the worker's own loopback is never dialled, `-R` and `-A` are refused and audited.
//! One test runs with certificates from a real OpenBao.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::dev::bin;
use common::gateway::{
    collect_lines, key_words, random_file, remote_dir, sha256_file, target_credentials,
    target_refused_forwards, Canary, Gateway, Setup, Tmux, HOST, HOST_ALIAS, TARGET,
};
use common::netns::{Echo, Place};
use common::sshd::login_user;
use common::wait::{poll, wait_for};

/// The files of the client side that may hold a private key or a certificate: the
/// per-session SSH key (the user's own, accepted by nothing but the gateway, for this
/// session) and the session hand-off file (the per-session TLS key and its self-signed
/// certificate).
fn own_session_files(path: &Path) -> bool {
    matches!(
        path.file_name().and_then(|n| n.to_str()),
        Some("id_ed25519" | "session.json")
    )
}

/// The one known_hosts line a gateway session gets.
fn assert_gateway_known_hosts(gw: &Gateway, text: &str) {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let words: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(&words[..2], ["@cert-authority", HOST_ALIAS], "{text}");
    assert_eq!(words[2..].join(" "), gw.gateway_ca(), "{text}");
}

#[test]
fn ssh_through_the_gateway_runs_as_the_roles_login_and_the_client_holds_no_target_credential() {
    let gw = Gateway::start();
    let user = login_user();

    // `connect ssh`: inspect its private directory while the command runs.
    let mut child = gw
        .cli()
        .args([
            "connect",
            "ssh",
            TARGET,
            "--",
            "echo ready; read line; id -un",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = collect_lines(child.stdout.take().unwrap());
    let stderr = collect_lines(child.stderr.take().unwrap());
    poll(
        "the remote command to start",
        Duration::from_secs(60),
        || {
            let out = stdout.lock().unwrap().clone();
            if out.contains("ready") {
                Ok(())
            } else if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "connect ssh exited ({status}): {}\nsshd:\n{}",
                    stderr.lock().unwrap(),
                    gw.sshd.log()
                );
            } else {
                Err(out)
            }
        },
    );
    let private: Vec<_> = std::fs::read_dir(gw.tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("portcullis-ssh-")
        })
        .collect();
    assert_eq!(private.len(), 1, "{private:?}");
    let mut names: Vec<String> = std::fs::read_dir(&private[0])
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["id_ed25519", "known_hosts", "session.json"]);
    assert_gateway_known_hosts(
        &gw,
        &std::fs::read_to_string(private[0].join("known_hosts")).unwrap(),
    );
    let found = target_credentials(&[gw.home.path(), gw.tmp.path()], &own_session_files);
    assert!(found.is_empty(), "{found:?}");
    let session_key = std::fs::read_to_string(private[0].join("id_ed25519")).unwrap();
    let session_key = ssh_key::PrivateKey::from_openssh(&session_key).unwrap();

    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{}", stderr.lock().unwrap());
    let out = stdout.lock().unwrap().clone();
    assert_eq!(out.lines().last(), Some(user.as_str()), "{out}");
    assert!(stderr
        .lock()
        .unwrap()
        .contains("through the worker's SSH gateway"));

    // The target saw the worker's own key, certified for the session, from the worker.
    let accepted = gw.accepted();
    assert_eq!(accepted.len(), 1, "{accepted:?}");
    assert!(accepted[0].contains("from 127.0.0.2"), "{}", accepted[0]);
    assert!(
        accepted[0].contains("-CERT ") && accepted[0].contains("ID s_"),
        "{}",
        accepted[0]
    );
    let user_key = session_key
        .public_key()
        .fingerprint(ssh_key::HashAlg::Sha256)
        .to_string();
    assert!(
        !accepted[0].contains(&user_key),
        "the target saw the user's key: {}",
        accepted[0]
    );

    // After it: nothing of the run is left, and nothing of the target ever was.
    let left: Vec<_> = std::fs::read_dir(gw.tmp.path())
        .unwrap()
        .flatten()
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // Plain ssh through the ssh-config blocks: the same, with ssh-prepare's files kept.
    assert_eq!(gw.ok(gw.ssh().args([HOST, "id", "-un"])), user);
    let dir = gw.session_dir();
    assert!(!dir.join("id_ed25519-cert.pub").exists());
    assert_gateway_known_hosts(
        &gw,
        &std::fs::read_to_string(dir.join("known_hosts")).unwrap(),
    );
    let options = std::fs::read_to_string(dir.join("login.conf")).unwrap();
    assert_eq!(options, format!("User {user}\nHostKeyAlias {HOST_ALIAS}\n"));
    let found = target_credentials(&[gw.home.path(), gw.tmp.path()], &own_session_files);
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn an_interactive_terminal_session_through_the_gateway() {
    let gw = Gateway::start();
    let tmux = Tmux::start(&gw, &format!("{} connect ssh {TARGET}", bin()));
    tmux.type_line("echo pty-$((6*7)); tty; id -un");
    let screen = tmux.wait_for_text("pty-42", Duration::from_secs(60));
    // The shell runs on a terminal of the target's, as the role's login.
    let screen = if screen.contains("/dev/pts/") {
        screen
    } else {
        tmux.wait_for_text("/dev/pts/", Duration::from_secs(10))
    };
    assert!(screen.contains(&login_user()), "{screen}");
    // Line editing and control characters reach the remote terminal.
    tmux.type_line("stty size");
    tmux.wait_for_text("40 160", Duration::from_secs(10));
    tmux.type_line("exit");
    let status = poll(
        "the terminal's ssh to exit",
        Duration::from_secs(30),
        || tmux.exited().ok_or_else(|| tmux.screen()),
    );
    assert_eq!(status, 0, "{}", tmux.screen());
}

#[test]
fn sftp_moves_ten_mebibytes_intact_both_ways() {
    let gw = Gateway::start();
    let local = tempfile::tempdir().unwrap();
    let remote = remote_dir();
    let src = local.path().join("up.bin");
    random_file(&src, 10 << 20);
    let back = local.path().join("back.bin");
    let batch = local.path().join("batch");
    std::fs::write(
        &batch,
        format!(
            "put {} {}/up.bin\nget {}/up.bin {}\n",
            src.display(),
            remote.path().display(),
            remote.path().display(),
            back.display()
        ),
    )
    .unwrap();
    gw.ok(gw
        .tool("sftp")
        .arg("-F")
        .arg(&gw.config)
        .args(["-o", "BatchMode=yes", "-b"])
        .arg(&batch)
        .arg(HOST));
    let want = sha256_file(&src);
    assert_eq!(
        sha256_file(&remote.path().join("up.bin")),
        want,
        "on the target"
    );
    assert_eq!(sha256_file(&back), want, "fetched back");
}

#[test]
fn scp_and_rsync_copy_files_intact() {
    let gw = Gateway::start();
    let local = tempfile::tempdir().unwrap();
    let remote = remote_dir();
    let src = local.path().join("data.bin");
    random_file(&src, 3 << 20);
    let want = sha256_file(&src);
    let r = remote.path().display();
    // scp over SFTP (OpenSSH 9's default) and over the old protocol (`scp -t`, an exec).
    for (flag, name) in [("-s", "scp-sftp.bin"), ("-O", "scp-exec.bin")] {
        gw.ok(gw
            .tool("scp")
            .arg("-F")
            .arg(&gw.config)
            .args(["-o", "BatchMode=yes", flag])
            .arg(&src)
            .arg(format!("{HOST}:{r}/{name}")));
        assert_eq!(sha256_file(&remote.path().join(name)), want, "{name}");
        let back = local.path().join(format!("back-{name}"));
        gw.ok(gw
            .tool("scp")
            .arg("-F")
            .arg(&gw.config)
            .args(["-o", "BatchMode=yes", flag])
            .arg(format!("{HOST}:{r}/{name}"))
            .arg(&back));
        assert_eq!(sha256_file(&back), want, "{name} fetched back");
    }
    // rsync runs `rsync --server` on the target through an exec channel.
    let tree = local.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::copy(&src, tree.join("sub/data.bin")).unwrap();
    std::fs::write(tree.join("small.txt"), "small\n").unwrap();
    let ssh = format!("ssh -F {} -o BatchMode=yes", gw.config.display());
    gw.ok(gw
        .tool("rsync")
        .args(["-a", "-e", &ssh])
        .arg(format!("{}/", tree.display()))
        .arg(format!("{HOST}:{r}/tree/")));
    assert_eq!(sha256_file(&remote.path().join("tree/sub/data.bin")), want);
    assert_eq!(
        std::fs::read_to_string(remote.path().join("tree/small.txt")).unwrap(),
        "small\n"
    );
    let back = local.path().join("back-tree");
    gw.ok(gw
        .tool("rsync")
        .args(["-a", "-e", &ssh])
        .arg(format!("{HOST}:{r}/tree/"))
        .arg(format!("{}/", back.display())));
    assert_eq!(sha256_file(&back.join("sub/data.bin")), want);
}

fn ansible_playbook() -> std::path::PathBuf {
    if let Ok(path) = std::env::var("PORTCULLIS_TEST_ANSIBLE_PLAYBOOK") {
        return path.into();
    }
    let home = std::env::var("HOME").unwrap();
    let path = Path::new(&home).join(".cache/portcullis-test/ansible/bin/ansible-playbook");
    assert!(path.exists(), "ansible-playbook not found at {}: run the suite with scripts/test, which installs ansible-core", path.display());
    path
}

#[test]
fn ansible_runs_a_playbook_with_pipelining_through_the_gateway() {
    let gw = Gateway::start();
    let work = tempfile::tempdir().unwrap();
    let remote = remote_dir();
    let payload = work.path().join("payload.bin");
    random_file(&payload, 1 << 20);
    let want = sha256_file(&payload);
    let dest = remote.path().join("payload.bin");
    std::fs::write(
        work.path().join("inventory.ini"),
        format!(
            "[targets]\n{HOST}\n\n[targets:vars]\nansible_python_interpreter=/usr/bin/python3\n\
             ansible_ssh_common_args=-F {} -o ControlMaster=no -o ControlPath=none\n",
            gw.config.display()
        ),
    )
    .unwrap();
    // Ansible's temporary files on the target go where its login can write, whatever the
    // state of its home directory on this machine.
    std::fs::write(
        work.path().join("ansible.cfg"),
        format!(
            "[defaults]\nhost_key_checking = True\nremote_tmp = {}/ansible-tmp\n\
             [ssh_connection]\npipelining = True\n",
            remote.path().display()
        ),
    )
    .unwrap();
    std::fs::write(
        work.path().join("play.yml"),
        format!(
            "- hosts: targets\n  gather_facts: false\n  tasks:\n\
             \x20   - ping:\n\
             \x20   - copy:\n        src: {}\n        dest: {}\n        mode: '0644'\n\
             \x20   - command: sha256sum {}\n      register: sum\n\
             \x20   - assert:\n        that: sum.stdout.split()[0] == '{want}'\n\
             \x20   - command: id -un\n      register: who\n\
             \x20   - assert:\n        that: who.stdout == '{}'\n",
            payload.display(),
            dest.display(),
            dest.display(),
            login_user()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(ansible_playbook());
    gw.client_env(&mut cmd)
        .arg("-i")
        .arg(work.path().join("inventory.ini"))
        .arg(work.path().join("play.yml"))
        .env("ANSIBLE_CONFIG", work.path().join("ansible.cfg"))
        .env("ANSIBLE_LOCAL_TEMP", work.path().join("tmp"))
        .env("ANSIBLE_NOCOLOR", "1");
    let stdout = gw.ok(&mut cmd);
    assert!(
        stdout.contains("ok=6") && stdout.contains("failed=0"),
        "{stdout}"
    );
    assert_eq!(sha256_file(&dest), want);
    // Every connection went through the gateway: the target saw only the worker.
    let accepted = gw.accepted();
    assert!(!accepted.is_empty());
    assert!(
        accepted.iter().all(|l| l.contains("from 127.0.0.2")),
        "{accepted:?}"
    );
}

/// Sends `probe` through a local port and returns what came back: empty when the far end
/// closed or reset the connection without an answer (ssh does when the forward is refused).
/// `Err` only when nothing listens there yet.
fn exchange(port: u16, probe: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut conn = TcpStream::connect(("127.0.0.1", port))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut got = Vec::new();
    let sent = conn
        .write_all(probe)
        .and_then(|()| conn.shutdown(std::net::Shutdown::Write))
        .and_then(|()| conn.read_to_end(&mut got));
    match sent {
        Ok(_) => Ok(got),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(Vec::new()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

#[test]
fn ssh_l_to_the_targets_loopback_goes_through_the_target() {
    // The target's sshd permits forwards to the echo port only: what it refuses, it logs.
    let echo_port = common::ports::free_port();
    let echo = Echo::start(&Place::host(), echo_port);
    let sshd_config = format!("PermitOpen 127.0.0.1:{echo_port} localhost:{echo_port}\n");
    let gw = Gateway::start_with(&Setup {
        sshd_config: &sshd_config,
        ..Setup::default()
    });
    let local = common::ports::free_port();
    let errors = gw.tmp.path().join("ssh-L.err");
    let mut ssh = gw
        .ssh()
        .args(["-N", "-o", "ExitOnForwardFailure=yes", "-L"])
        .arg(format!("{local}:127.0.0.1:{}", echo.addr.port()))
        .arg(HOST)
        .stderr(std::fs::File::create(&errors).unwrap())
        .spawn()
        .unwrap();
    let echoed = common::wait::poll_within(Duration::from_secs(60), || {
        if let Ok(Some(status)) = ssh.try_wait() {
            return Ok(Err(format!("ssh -L exited ({status})")));
        }
        match exchange(local, b"through the target") {
            Ok(got) if got == b"through the target" => Ok(Ok(())),
            Ok(got) => Err(format!("got {got:?}")),
            Err(e) => Err(e.to_string()),
        }
    });
    let _ = ssh.kill();
    let _ = ssh.wait();
    let said = std::fs::read_to_string(&errors).unwrap_or_default();
    match echoed {
        Ok(Ok(())) => {}
        Ok(Err(why)) | Err(why) => {
            panic!(
                "no echo through ssh -L: {why}\nssh:\n{said}\nsshd:\n{}",
                gw.sshd.log()
            )
        }
    }
    // A port the target does not permit: the target refused it, so the forward went there.
    let canary = Canary::start();
    gw.fails(
        gw.ssh()
            .arg("-W")
            .arg(format!("127.0.0.1:{}", canary.port))
            .arg(HOST)
            .stdin(Stdio::null()),
    );
    wait_for(
        "the target to refuse the forward",
        Duration::from_secs(10),
        || target_refused_forwards(&gw.sshd.log(), canary.port) == 1,
    );
    assert_eq!(canary.accepted(), 0);
}

#[test]
fn the_workers_own_loopback_is_never_dialled_for_a_forward() {
    // The target refuses every forward: whatever reaches the canary on this machine's
    // loopback (the worker's) was dialled by the worker itself.
    let gw = Gateway::start_with(&Setup {
        sshd_config: "PermitOpen none\n",
        ..Setup::default()
    });
    let canary = Canary::start();
    gw.ok(gw.ssh().args([HOST, "true"]));
    for destination in [
        format!("127.0.0.1:{}", canary.port),
        format!("localhost:{}", canary.port),
        format!("127.9.9.9:{}", canary.port),
        format!("[::1]:{}", canary.port),
    ] {
        let out = gw.fails(
            gw.ssh()
                .arg("-W")
                .arg(&destination)
                .arg(HOST)
                .stdin(Stdio::null()),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("open failed") || stderr.contains("forwarding failed"),
            "{destination}: {stderr}"
        );
    }
    // And with -L, the way a user asks for the worker's view of "localhost".
    let local = common::ports::free_port();
    let mut ssh = gw
        .ssh()
        .args(["-N", "-L"])
        .arg(format!("{local}:127.0.0.1:{}", canary.port))
        .arg(HOST)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let tried = common::wait::poll_within(Duration::from_secs(60), || {
        exchange(local, b"canary").map_err(|e| e.to_string())
    });
    let _ = ssh.kill();
    let _ = ssh.wait();
    assert!(tried.is_ok(), "the local end of -L never opened: {tried:?}");
    // All five were asked of the target, which refused them.
    wait_for(
        "the target to refuse all five forwards",
        Duration::from_secs(10),
        || target_refused_forwards(&gw.sshd.log(), canary.port) >= 5,
    );
    assert_eq!(canary.accepted(), 0, "the worker dialled its own loopback");
}

#[test]
fn a_forward_to_a_zone_the_matrix_denies_is_refused_and_audited() {
    let gw = Gateway::start();
    gw.ok(gw.ssh().args([HOST, "true"]));
    let session = gw.cached_session_id();
    let out = gw.fails(
        gw.ssh()
            .args(["-W", "192.0.2.10:80", HOST])
            .stdin(Stdio::null()),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("open failed") || stderr.contains("forwarding failed"),
        "{stderr}"
    );
    let refusal = gw.channel_refusal(&session, "direct-tcpip");
    assert_eq!(
        refusal["details"]["destination"], "192.0.2.10:80",
        "{refusal}"
    );
    assert_eq!(refusal["decision"], "deny", "{refusal}");
    // The refusal names the matrix cell: the zones no cell joins.
    let reason = refusal["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("LOCAL -> DENIED"), "{refusal}");
}

#[test]
fn remote_forwarding_and_agent_forwarding_are_refused_and_audited() {
    let gw = Gateway::start();
    let user = login_user();
    gw.ok(gw.ssh().args([HOST, "true"]));
    let session = gw.cached_session_id();

    let out = gw.fails(gw.ssh().args([
        "-o",
        "ExitOnForwardFailure=yes",
        "-R",
        "0:127.0.0.1:9",
        HOST,
        "sleep",
        "5",
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("remote port forwarding failed"), "{stderr}");
    gw.channel_refusal(&session, "tcpip-forward");

    // An agent offered with -A (ssh asks to forward only an agent it can use, so the
    // block's `IdentityAgent none` is overridden): the remote shell gets none.
    let agent_dir = tempfile::tempdir().unwrap();
    let socket = agent_dir.path().join("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&socket)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("ssh-agent's socket", Duration::from_secs(10), || {
        socket.exists()
    });
    let said = gw.ok(gw
        .ssh()
        .arg("-o")
        .arg(format!("IdentityAgent={}", socket.display()))
        .args(["-A", HOST, "echo agent=[$SSH_AUTH_SOCK] user=$(id -un)"]));
    let _ = agent.kill();
    let _ = agent.wait();
    assert_eq!(said, format!("agent=[] user={user}"));
    gw.channel_refusal(&session, "auth-agent-req@openssh.com");
}

#[test]
fn a_key_other_than_the_sessions_is_refused_over_the_sessions_own_tunnel() {
    let gw = Gateway::start();
    let user = login_user();
    gw.ok(gw.ssh().args([HOST, "true"]));
    let dir = gw.session_dir();
    let other = gw.tmp.path().join("other_key");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .output()
        .unwrap();
    assert!(out.status.success());
    // The session's tunnel (its hand-off file), as another local user's ssh would reach it
    // through a listener of the session; only the key differs between the two runs.
    let through_the_tunnel = |key: &Path| {
        let mut cmd = Command::new("ssh");
        gw.client_env(&mut cmd)
            .args([
                "-F",
                "/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
            ])
            .args([
                "-o",
                "IdentityAgent=none",
                "-o",
                "StrictHostKeyChecking=yes",
            ])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                dir.join("known_hosts").display()
            ))
            .arg("-o")
            .arg(format!("HostKeyAlias={HOST_ALIAS}"))
            .arg("-o")
            .arg(format!(
                "ProxyCommand={} connect {TARGET} --stdio --session-file {}",
                bin(),
                dir.join("session.json").display()
            ))
            .arg("-i")
            .arg(key)
            .args(["-l", &user, TARGET, "id", "-un"]);
        cmd
    };
    let out = gw.fails(&mut through_the_tunnel(&other));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Permission denied"), "{stderr}");
    assert_eq!(
        gw.ok(&mut through_the_tunnel(&dir.join("id_ed25519"))),
        user
    );
}

#[test]
fn a_target_host_key_mismatch_is_refused_naming_the_target_and_the_fingerprint() {
    let wrong = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGfJ5mkQp5q2eJp5r0N4rK1pY2uXQ0Jm7KcQxUY9n3aK";
    let gw = Gateway::start_with(&Setup {
        pinned_host_key: Some(wrong),
        ..Setup::default()
    });
    let out = gw.fails(gw.cli().args(["connect", "ssh", TARGET, "--", "true"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let seen = ssh_key::PublicKey::from_openssh(&gw.sshd.host_key_pub)
        .unwrap()
        .fingerprint(ssh_key::HashAlg::Sha256)
        .to_string();
    assert!(
        stderr.contains(TARGET) && stderr.contains(&seen),
        "the message names {TARGET} and {seen}: {stderr}"
    );
    assert!(gw.accepted().is_empty(), "{}", gw.sshd.log());
}

#[test]
fn cancelling_the_session_closes_an_interactive_terminal() {
    let gw = Gateway::start();
    let tmux = Tmux::start(&gw, &format!("{} connect ssh {TARGET}", bin()));
    tmux.type_line("echo up-$((40+2))");
    let screen = tmux.wait_for_text("up-42", Duration::from_secs(60));
    let session = screen
        .split_whitespace()
        .find(|w| w.starts_with("s_"))
        .unwrap_or_else(|| panic!("connect ssh names its session: {screen}"))
        .to_owned();
    let cancelled = Instant::now();
    gw.ok(gw.cli().args(["sessions", "cancel", &session]));
    // A generous bound: the worker ends the session's connections as soon as it hears.
    poll(
        "the terminal's ssh to exit",
        Duration::from_secs(30),
        || tmux.exited().ok_or_else(|| tmux.screen()),
    );
    eprintln!("cancel to close: {:?}", cancelled.elapsed());
    let ended = gw.wait_ended(&session);
    assert_eq!(ended["termination_reason"], "canceled", "{ended}");
    // The worker's connection to the target closed with it.
    wait_for(
        "the target to see the worker leave",
        Duration::from_secs(30),
        || {
            let log = gw.sshd.log();
            log.contains("Disconnected from user") || log.contains("Connection closed by 127.0.0.2")
        },
    );
}

#[test]
fn with_openbao_the_worker_logs_in_with_a_certificate_from_vault() {
    let bao = common::vault::Bao::start();
    // A session longer than the Vault role's max_ttl (an hour; the dev sessions last 8): the
    // worker's certificate is short-lived within it.
    let gw = Gateway::start_with(&Setup {
        vault: Some(&bao),
        ..Setup::default()
    });
    let user = login_user();
    let out = gw
        .cli()
        .args(["connect", "ssh", TARGET, "--", "id", "-un"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\nsshd:\n{}", gw.sshd.log());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), user);
    let session = stderr
        .split_whitespace()
        .find(|w| w.starts_with("s_"))
        .unwrap()
        .to_owned();
    // sshd names Vault's CA and the session as the key id.
    let vault_ca = ssh_key::PublicKey::from_openssh(&bao.ssh_ca())
        .unwrap()
        .fingerprint(ssh_key::HashAlg::Sha256)
        .to_string();
    let accepted = gw.accepted();
    assert_eq!(accepted.len(), 1, "{accepted:?}");
    assert!(accepted[0].contains(&vault_ca), "{}", accepted[0]);
    assert!(
        accepted[0].contains(&format!("ID {session} ")),
        "{}",
        accepted[0]
    );
    // The session ended with ssh, and its Vault token with it.
    gw.wait_ended(&session);
    wait_for(
        "the session's Vault token to be revoked",
        Duration::from_secs(30),
        || bao.tokens_of_session(&session).is_empty(),
    );
    assert_eq!(key_words(&gw.gateway_ca()).split(' ').count(), 2);
}

#[test]
fn another_key_on_the_same_listener_is_refused() {
    let gw = Gateway::start();
    let user = login_user();
    let keys = tempfile::tempdir().unwrap();
    let keygen = |name: &str| {
        let key = keys.path().join(name);
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        key
    };
    // K1 is the user's own key, bound into the session; K2 is another local user's.
    let (k1, k2) = (keygen("k1"), keygen("k2"));
    let mut listener = gw
        .cli()
        .args([
            "connect",
            TARGET,
            "--listen-port",
            "0",
            "--json",
            "--ssh-key",
        ])
        .arg(k1.with_extension("pub"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = collect_lines(listener.stdout.take().unwrap());
    let stderr = collect_lines(listener.stderr.take().unwrap());
    let line: serde_json::Value = poll("the listening line", Duration::from_secs(60), || {
        let out = stdout.lock().unwrap().clone();
        if let Some(first) = out.lines().next() {
            return Ok(serde_json::from_str(first).unwrap());
        }
        if let Ok(Some(status)) = listener.try_wait() {
            panic!("connect exited ({status}): {}", stderr.lock().unwrap());
        }
        Err(out)
    });
    let port = line["port"].as_u64().unwrap().to_string();
    let ssh = &line["ssh"];
    assert_eq!(ssh["mode"], "gateway", "{line}");
    assert_eq!(ssh["logins"], serde_json::json!([user]), "{line}");
    let known_hosts = Path::new(ssh["known_hosts"].as_str().unwrap()).to_path_buf();
    let options: Vec<String> = ssh["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        options,
        [
            "-o".to_owned(),
            format!("HostKeyAlias={HOST_ALIAS}"),
            "-o".to_owned(),
            format!("UserKnownHostsFile={}", known_hosts.display()),
            "-o".to_owned(),
            "StrictHostKeyChecking=yes".to_owned(),
        ]
    );
    assert_gateway_known_hosts(&gw, &std::fs::read_to_string(&known_hosts).unwrap());
    assert!(
        ssh["command"]
            .as_str()
            .unwrap()
            .ends_with(&format!("-p {port} {user}@127.0.0.1")),
        "{line}"
    );

    // ssh as the listening line says, with only the authentication differing between runs.
    let through_the_listener = |auth: &[&str]| {
        let mut cmd = Command::new("ssh");
        gw.client_env(&mut cmd)
            .args([
                "-F",
                "/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=30",
            ])
            .args(["-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none"])
            .args(&options)
            .args(auth)
            .args(["-p", &port, &format!("{user}@127.0.0.1")])
            .arg("echo ran-$((6*7)); id -un");
        cmd
    };
    let k1 = k1.display().to_string();
    let k2 = k2.display().to_string();
    assert_eq!(
        gw.ok(&mut through_the_listener(&["-i", &k1])),
        format!("ran-42\n{user}")
    );
    let out = gw.fails(&mut through_the_listener(&["-i", &k2]));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("Permission denied (publickey)"), "{said}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ran-42"));
    let out = gw.fails(&mut through_the_listener(&[
        "-o",
        "PreferredAuthentications=password,keyboard-interactive",
        "-o",
        "PubkeyAuthentication=no",
    ]));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("Permission denied"), "{said}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ran-42"));
    // Only K1's login reached the target.
    assert_eq!(gw.accepted().len(), 1, "{}", gw.sshd.log());

    // Ctrl-C ends the session and removes the known_hosts file.
    let status = Command::new("kill")
        .args(["-INT", &listener.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = listener.wait().unwrap();
    assert!(status.success(), "{}", stderr.lock().unwrap());
    assert!(!known_hosts.exists(), "{} is left", known_hosts.display());
    gw.wait_ended(line["session_id"].as_str().unwrap());
}
