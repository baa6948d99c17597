//! A private xrdp and xrdp-sesman (Debian's xrdp 0.9) on ports picked at run time, with a
//! throw-away Unix user to log in as; stopped at drop. Needs root (scripts/test runs as root):
//! it creates the user, and xrdp 0.9 reads the port of its sesman from
//! /etc/xrdp/sesman.ini whatever `-c` says, so xrdp runs in a mount namespace of its own
//! (`unshare -m`) where a private file is bind-mounted over that one.
//!
//! No X server runs behind the session: the sesman login (PAM, the Unix password) is what is
//! tested, and xrdp logs [`LOGIN_OK`] before it tries to reach the session's X server (which
//! it keeps retrying for half a minute, the RDP connection open meanwhile, showing its log
//! window).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use super::ports::{self, Start};
use super::wait::poll_within;

/// The Unix user the RDP client logs in as, created (or its password reset) by
/// [`Xrdp::start`].
pub(crate) const USER: &str = "pcrdp";
/// Its password: a throw-away account on a test machine.
pub(crate) const PASSWORD: &str = "pcrdp-Test-Only-1";
/// What xrdp logs once sesman accepted the user's password.
pub(crate) const LOGIN_OK: &str = "login successful for user pcrdp";
/// What xrdp logs for every TCP connection it accepts.
pub(crate) const CONNECTION: &str = "connection received from";

pub(crate) struct Xrdp {
    pub port: u16,
    dir: tempfile::TempDir,
    sesman: Child,
    xrdp: Child,
}

/// Fails the test, saying why, unless it runs as root.
pub(crate) fn require_root(test: &str) {
    assert!(
        rustix::process::geteuid().is_root(),
        "{test} needs root: it creates the Unix user {USER} and runs xrdp in a mount namespace \
         (scripts/test runs as root)"
    );
}

impl Xrdp {
    pub(crate) fn start() -> Xrdp {
        ensure_user();
        // Debian's package makes this at install time; /run may have been emptied since.
        let sockdir = Path::new("/run/xrdp/sockdir");
        if !sockdir.exists() {
            std::fs::create_dir_all(sockdir).unwrap();
            std::fs::set_permissions(
                sockdir,
                std::os::unix::fs::PermissionsExt::from_mode(0o3777),
            )
            .unwrap();
        }
        let dir = tempfile::Builder::new()
            .prefix("portcullis-xrdp.")
            .tempdir()
            .unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
        let sesman_port = ports::start_on_free_port("xrdp-sesman", |port| {
            let ini = dir.path().join("sesman.ini");
            std::fs::write(&ini, sesman_ini(dir.path(), port)).unwrap();
            // Only the [Globals] port matters to xrdp, which reads this instead of
            // /etc/xrdp/sesman.ini.
            std::fs::write(
                dir.path().join("sesman-port.ini"),
                format!("[Globals]\nListenAddress=127.0.0.1\nListenPort={port}\n"),
            )
            .unwrap();
            let child = spawn(
                Command::new("xrdp-sesman")
                    .arg("--nodaemon")
                    .arg("-c")
                    .arg(&ini),
                &dir.path().join("sesman.out"),
            );
            up_or_collided(child, port, &dir.path().join("sesman.log"))
        });
        let (sesman, sesman_port) = sesman_port;
        let (xrdp, port) = ports::start_on_free_port("xrdp", |port| {
            let ini = dir.path().join("xrdp.ini");
            std::fs::write(&ini, xrdp_ini(dir.path(), port)).unwrap();
            let script = format!(
                "mount --bind {} /etc/xrdp/sesman.ini && exec xrdp --nodaemon -c {}",
                dir.path().join("sesman-port.ini").display(),
                ini.display()
            );
            let child = spawn(
                Command::new("unshare")
                    .args(["-m", "--propagation", "private", "sh", "-c"])
                    .arg(script),
                &dir.path().join("xrdp.out"),
            );
            up_or_collided(child, port, &dir.path().join("xrdp.log"))
        });
        eprintln!("xrdp on 127.0.0.1:{port}, its sesman on 127.0.0.1:{sesman_port}");
        Xrdp {
            port,
            dir,
            sesman,
            xrdp,
        }
    }

    /// xrdp's log so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("xrdp.log")).unwrap_or_default()
    }

    /// How many TCP connections xrdp has accepted.
    pub(crate) fn connections(&self) -> usize {
        self.log().matches(CONNECTION).count()
    }
}

impl Drop for Xrdp {
    fn drop(&mut self) {
        // Each in a process group of its own, with the processes it forked.
        for child in [&mut self.xrdp, &mut self.sesman] {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            for name in ["xrdp.log", "sesman.log", "xrdp.out", "sesman.out"] {
                let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                eprintln!("--- {name} (last lines, newest first):");
                for line in tail {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// Creates [`USER`] when missing, and sets its password.
fn ensure_user() {
    static ONCE: Mutex<bool> = Mutex::new(false);
    let mut done = ONCE.lock().unwrap();
    if *done {
        return;
    }
    let exists = Command::new("id")
        .arg(USER)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    if !exists {
        let status = Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/sh", USER])
            .status()
            .unwrap();
        assert!(status.success(), "useradd {USER}: {status}");
    }
    let mut chpasswd = Command::new("chpasswd")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        chpasswd.stdin.as_mut().unwrap(),
        format!("{USER}:{PASSWORD}\n").as_bytes(),
    )
    .unwrap();
    drop(chpasswd.stdin.take());
    assert!(chpasswd.wait().unwrap().success(), "chpasswd {USER}");
    *done = true;
}

fn spawn(command: &mut Command, out: &Path) -> Child {
    let out = std::fs::File::create(out).unwrap();
    std::os::unix::process::CommandExt::process_group(command, 0)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap()
}

/// Waits until the daemon listens on `port`; a daemon that exits first collided (or failed:
/// its log says which).
fn up_or_collided(mut child: Child, port: u16, log: &Path) -> Start<(Child, u16)> {
    let up = poll_within(Duration::from_secs(20), || {
        if let Ok(Some(status)) = child.try_wait() {
            return Ok(Err(status));
        }
        // xrdp-sesman (built with IPv6) listens on ::1 when told 127.0.0.1, and xrdp's
        // connection to 127.0.0.1 reaches it there.
        let v4 = std::net::TcpStream::connect(("127.0.0.1", port));
        let v6 = || std::net::TcpStream::connect(("::1", port));
        match v4.or_else(|_| v6()) {
            Ok(_) => Ok(Ok(())),
            Err(err) => Err(err),
        }
    });
    match up {
        Ok(Ok(())) => Start::Up((child, port)),
        Ok(Err(status)) => Start::Collided(format!(
            "exited with {status}; log: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        )),
        Err(err) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "nothing listens on 127.0.0.1 or ::1 port {port} after 20 s ({err}); log: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        }
    }
}

fn sesman_ini(dir: &Path, port: u16) -> String {
    // Sessions never get an X server here; a display number of their own per instance keeps
    // parallel tests apart.
    let display = 100 + port % 500;
    format!(
        "[Globals]
ListenAddress=127.0.0.1
ListenPort={port}
EnableUserWindowManager=false
DefaultWindowManager=/bin/true
ReconnectScript=/bin/true
[Security]
AllowRootLogin=false
MaxLoginRetry=4
AlwaysGroupCheck=false
[Sessions]
X11DisplayOffset={display}
MaxSessions=10
KillDisconnected=true
DisconnectedTimeLimit=0
IdleTimeLimit=0
Policy=Default
[Logging]
LogFile={log}
LogLevel=INFO
EnableSyslog=false
EnableConsole=false
[Xorg]
param=/usr/lib/xorg/Xorg
[Xvnc]
param=Xvnc
[Chansrv]
FuseMountName=thinclient_drives
[SessionVariables]
",
        log = dir.join("sesman.log").display()
    )
}

fn xrdp_ini(dir: &Path, port: u16) -> String {
    format!(
        "[Globals]
ini_version=1
fork=true
port=tcp://127.0.0.1:{port}
use_vsock=false
security_layer=tls
crypt_level=high
certificate={cert}
key_file={key}
ssl_protocols=TLSv1.2, TLSv1.3
autorun=Xorg
allow_channels=true
max_bpp=24
[Logging]
LogFile={log}
LogLevel=INFO
EnableSyslog=false
EnableConsole=false
[Channels]
rdpdr=true
rdpsnd=true
drdynvc=true
cliprdr=true
rail=true
xrdpvr=true
tcutils=true
[Xorg]
name=Xorg
lib=libxup.so
username=ask
password=ask
ip=127.0.0.1
port=-1
code=20
",
        cert = dir.join("cert.pem").display(),
        key = dir.join("key.pem").display(),
        log = dir.join("xrdp.log").display()
    )
}
