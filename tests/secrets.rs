//! Secrets at rest with a real controller process: a master key file others can read is
//! refused, `PORTCULLIS_MASTER_KEY` is gone from a running controller's environment as the
//! kernel shows it, the SQLite store and its WAL files are 0600, and `controller keygen`
//! writes a 0600 key atomically without ever overwriting one unasked.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::cluster::{sigterm, wait_exit};
use common::dev::bin;
use common::wait::wait_for;

const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn write_key(path: &Path, hex: &str, mode: u32) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .unwrap();
    f.write_all(hex.as_bytes()).unwrap();
    // The umask may have masked bits off at creation: set exactly what the test wants.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A controller config on SQLite in `dir`; `keys` is the `[keys]` section's body.
fn config(dir: &Path, keys: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("controller.toml");
    std::fs::write(
        &path,
        format!(
            "[store]\nurl = \"sqlite://{}\"\n[keys]\n{keys}\n[api]\nlisten = \"127.0.0.1:0\"\n\
             [cluster]\nlisten = \"127.0.0.1:0\"\n",
            dir.join("portcullis.db").display()
        ),
    )
    .unwrap();
    path
}

/// A running `portcullis controller run`, stopped at drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `controller run` and waits for its readiness line; on exit without one, returns
/// its stderr.
fn run(config: &Path, env: &[(&str, &str)]) -> Result<Running, String> {
    let mut child = Command::new(bin())
        .args(["controller", "run", "--config"])
        .arg(config)
        .env("PORTCULLIS_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = tx.send(lines.next().and_then(Result::ok));
        for _ in lines {}
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Some(line)) if line.contains("\"ready\"") => Ok(Running(child)),
        _ => {
            let _ = child.kill();
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            let _ = child.wait();
            Err(err)
        }
    }
}

fn portcullis(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("PORTCULLIS_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn a_master_key_file_others_can_read_is_refused_naming_the_chmod() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("master.key");
    write_key(&key, KEY, 0o644);
    let cfg = config(
        dir.path(),
        &format!("master_key_file = \"{}\"", key.display()),
    );
    let Err(err) = run(&cfg, &[]) else {
        panic!("a controller started with a world-readable master key")
    };
    assert!(
        err.contains(&format!("master key file {} has mode 644", key.display()))
            && err.contains(&format!("`chmod 600 {}`", key.display())),
        "{err}"
    );
    // Nothing was bound or created meanwhile: the store was never opened with the key.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let _running = run(&cfg, &[]).expect("the same key at 0600 starts");
}

#[test]
fn the_master_key_leaves_a_running_controllers_environment() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let running = run(&cfg, &[("PORTCULLIS_MASTER_KEY", KEY)]).expect("start");
    let pid = running.0.id();
    // What the kernel shows other processes of the same account (and root).
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(
        environ.contains("PORTCULLIS_LOG=warn"),
        "not the controller's environment: {environ}"
    );
    assert!(
        !environ.contains("PORTCULLIS_MASTER_KEY=") && !environ.contains(KEY),
        "the master key is still in /proc/{pid}/environ"
    );
    // The key was used, not lost: the keyset it sealed opens with the same key from a file
    // and not with another.
    sigterm(&running.0);
    drop(running);
    let key = dir.path().join("master.key");
    write_key(&key, KEY, 0o600);
    let with_file = config(
        dir.path(),
        &format!("master_key_file = \"{}\"", key.display()),
    );
    let out = portcullis(&["controller", "ca", "--config", with_file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let other = dir.path().join("other.key");
    write_key(&other, &"ff".repeat(32), 0o600);
    let with_other = config(
        dir.path(),
        &format!("master_key_file = \"{}\"", other.display()),
    );
    let out = portcullis(&["controller", "ca", "--config", with_other.to_str().unwrap()]);
    assert!(!out.status.success());
}

#[test]
fn the_sqlite_store_and_its_wal_and_shm_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("master.key");
    write_key(&key, KEY, 0o600);
    let cfg = config(
        dir.path(),
        &format!("master_key_file = \"{}\"", key.display()),
    );
    let mut running = run(&cfg, &[]).expect("start");
    let db = dir.path().join("portcullis.db");
    let files = [
        db.clone(),
        dir.path().join("portcullis.db-wal"),
        dir.path().join("portcullis.db-shm"),
    ];
    wait_for("the WAL files", Duration::from_secs(10), || {
        files.iter().all(|f| f.exists())
    });
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    sigterm(&running.0);
    wait_exit(&mut running.0, Duration::from_secs(20));
}

#[test]
fn keygen_writes_a_private_key_atomically_and_never_overwrites_unasked() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("master.key");
    let out = portcullis(&["controller", "keygen", "--out", key.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&key), 0o600);
    let first = std::fs::read_to_string(&key).unwrap();
    assert!(
        first.trim().len() == 64 && first.trim().bytes().all(|b| b.is_ascii_hexdigit()),
        "{first}"
    );
    // A controller starts with it.
    let cfg = config(
        dir.path(),
        &format!("master_key_file = \"{}\"", key.display()),
    );
    let out = portcullis(&["controller", "ca", "--config", cfg.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = portcullis(&["controller", "keygen", "--out", key.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exists") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read_to_string(&key).unwrap(), first);

    let out = portcullis(&[
        "controller",
        "keygen",
        "--out",
        key.to_str().unwrap(),
        "--force",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(std::fs::read_to_string(&key).unwrap(), first);
    assert_eq!(mode(&key), 0o600);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("master"))
        .collect();
    assert_eq!(names, ["master.key"], "a temporary file was left behind");

    let help = portcullis(&["controller", "keygen", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("Examples:") && help.contains("keygen --out /etc/portcullis/master.key"),
        "{help}"
    );
}
