//! A private OpenSSH sshd on 127.0.0.1 that trusts a CA for user certificates.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::dev::Dev;

pub(crate) struct Sshd {
    pub child: Child,
    pub port: u16,
    pub user: String,
    pub host_key_pub: String,
    pub dir: tempfile::TempDir,
    log: Arc<Mutex<String>>,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// The local account sessions log in as: `pctest` (created when running as root), else the
/// current user.
pub(crate) fn login_user() -> String {
    if !is_root() {
        return std::env::var("USER").unwrap_or_else(|_| "nobody".into());
    }
    let exists = Command::new("id")
        .arg("pctest")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !exists {
        let out = Command::new("useradd")
            .args(["-m", "-s", "/bin/sh", "pctest"])
            .output()
            .unwrap();
        assert!(
            out.status.success() || String::from_utf8_lossy(&out.stderr).contains("already exists"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A new account is locked (`!`), which sshd refuses without PAM.
    let _ = Command::new("usermod").args(["-p", "*", "pctest"]).output();
    "pctest".into()
}

impl Sshd {
    /// Starts sshd trusting `ca_pub` (OpenSSH line); the login user accepts `principals`.
    pub(crate) fn start(ca_pub: &str, principals: &[&str]) -> Sshd {
        Sshd::start_with(ca_pub, principals, None)
    }

    /// Like [`Sshd::start`]; with `host_ca` (a private key file), the host key is certified
    /// by that CA for the principal `127.0.0.1` and served as `HostCertificate`.
    pub(crate) fn start_with(
        ca_pub: &str,
        principals: &[&str],
        host_ca: Option<&std::path::Path>,
    ) -> Sshd {
        Sshd::start_configured(ca_pub, principals, host_ca, "")
    }

    /// Like [`Sshd::start_with`], with `extra` lines appended to sshd_config (e.g.
    /// `PermitOpen 127.0.0.1:PORT`).
    pub(crate) fn start_configured(
        ca_pub: &str,
        principals: &[&str],
        host_ca: Option<&std::path::Path>,
        extra: &str,
    ) -> Sshd {
        let user = login_user();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let host_key = d.join("host_ed25519");
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&host_key)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let host_key_pub = std::fs::read_to_string(d.join("host_ed25519.pub"))
            .unwrap()
            .trim()
            .to_owned();
        let mut host_cert_line = String::new();
        if let Some(ca_key) = host_ca {
            let out = Command::new("ssh-keygen")
                .args(["-q", "-s"])
                .arg(ca_key)
                .args(["-I", "test-host", "-h", "-n", "127.0.0.1", "-V", "-5m:+1h"])
                .arg(d.join("host_ed25519.pub"))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            host_cert_line = format!(
                "HostCertificate {}\n",
                d.join("host_ed25519-cert.pub").display()
            );
        }
        std::fs::write(d.join("ca.pub"), format!("{}\n", ca_pub.trim())).unwrap();
        std::fs::create_dir_all(d.join("principals")).unwrap();
        std::fs::write(
            d.join("principals").join(&user),
            principals.join("\n") + "\n",
        )
        .unwrap();
        let krl = d.join("revoked.krl");
        let out = Command::new("ssh-keygen")
            .args(["-q", "-k", "-f"])
            .arg(&krl)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if is_root() {
            let _ = std::fs::create_dir_all("/run/sshd");
        }
        let config = d.join("sshd_config");
        // sshd cannot listen on port 0 and say which port it got: a free port, and another
        // when that one was taken before sshd bound it.
        let (child, port, log) = super::ports::start_on_free_port("sshd", |port| {
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nTrustedUserCAKeys {}\n\
                     AuthorizedPrincipalsFile {}/principals/%u\nAuthorizedKeysFile none\nRevokedKeys {}\n\
                     UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\n\
                     LogLevel VERBOSE\n{host_cert_line}{extra}",
                    host_key.display(),
                    d.join("sshd.pid").display(),
                    d.join("ca.pub").display(),
                    d.display(),
                    krl.display()
                ),
            )
            .unwrap();
            let mut child = Command::new("/usr/sbin/sshd")
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start /usr/sbin/sshd (scripts/test installs openssh-server)");
            let log = Arc::new(Mutex::new(String::new()));
            let (sink, stderr) = (log.clone(), child.stderr.take().unwrap());
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Ok(mut l) = sink.lock() {
                        l.push_str(&line);
                        l.push('\n');
                    }
                }
            });
            // Our sshd, not another process that took the port meanwhile: it says it listens,
            // and is still running, when the port accepts. One that exits fails here with its
            // log, or, when the port was taken, is started again on another.
            let listening = format!("Server listening on 127.0.0.1 port {port}.");
            let up = super::wait::poll_within(Duration::from_secs(5), || {
                let seen = log.lock().map(|l| l.clone()).unwrap_or_default();
                if let Ok(Some(status)) = child.try_wait() {
                    return Ok(Err(format!("sshd exited ({status}):\n{seen}")));
                }
                if seen.contains(&listening)
                    && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                {
                    Ok(Ok(()))
                } else {
                    Err(seen)
                }
            });
            match up {
                Ok(Ok(())) => super::ports::Start::Up((child, port, log)),
                Ok(Err(exited)) => super::ports::collided_or_panic(
                    format!("sshd did not listen on port {port}"),
                    exited,
                ),
                Err(seen) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("timed out after 5 s waiting for sshd to listen on port {port}:\n{seen}")
                }
            }
        });
        Sshd {
            child,
            port,
            user,
            host_key_pub,
            dir,
            log,
        }
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The first log line in which sshd accepted a certificate, and the key id it names (the
    /// session id).
    pub(crate) fn accepted_session(&self) -> (String, String) {
        let log = self.log();
        let line = log
            .lines()
            .find(|l| l.contains("Accepted publickey"))
            .unwrap_or_else(|| panic!("{log}"));
        let sid = line
            .split("ID ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap();
        (line.to_owned(), sid.to_owned())
    }

    /// What `ssh-keygen -Q` says about the certificate `cert` against the KRL that `dev`'s
    /// controller serves (`...: REVOKED` or `...: ok`), as sshd would judge it.
    pub(crate) fn krl_says(&self, dev: &Dev, cert: &Path) -> String {
        let krl = self.path("fetched.krl");
        let out = Command::new("curl")
            .args(["-sS", "--fail", "-o"])
            .arg(&krl)
            .arg("--cacert")
            .arg(dev.var("PORTCULLIS_CA"))
            .arg(format!("{}/v1/ssh/krl", dev.api()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new("ssh-keygen")
            .arg("-Q")
            .arg("-f")
            .arg(&krl)
            .arg(cert)
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
