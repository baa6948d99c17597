//! A fresh PostgreSQL database per test, in the cluster `scripts/test` started.

use sqlx::Connection as _;

/// The URL of a new, empty database; panics with instructions when no cluster is available.
pub(crate) async fn fresh_database() -> String {
    let admin = std::env::var("PORTCULLIS_TEST_PG_URL").unwrap_or_else(|_| {
        panic!("PORTCULLIS_TEST_PG_URL is not set: run the suite with scripts/test, which starts PostgreSQL")
    });
    let name = format!("t_{}", hex_id());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL at {admin}: {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let (base, _) = admin.rsplit_once('/').expect("URL has a database part");
    format!("{base}/{name}")
}

fn hex_id() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{:x}_{}_{}", nanos, std::process::id(), n)
}

/// A PostgreSQL cluster of the test's own, which it may stop and start (the suite's shared
/// cluster must never be stopped).
pub(crate) struct PrivateCluster {
    pub url: String,
    bin: std::path::PathBuf,
    data: std::path::PathBuf,
    port: u16,
    dir: tempfile::TempDir,
}

fn pg_bin() -> std::path::PathBuf {
    let mut found = None;
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        for e in entries.flatten() {
            let bin = e.path().join("bin");
            if bin.join("initdb").exists() {
                found = Some(bin);
            }
        }
    }
    found.expect("PostgreSQL binaries under /usr/lib/postgresql (scripts/test installs them)")
}

fn as_postgres(cmd: &str, args: &[&str]) -> std::process::Command {
    let is_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false);
    if is_root {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--", cmd]).args(args);
        c
    } else {
        let mut c = std::process::Command::new(cmd);
        c.args(args);
        c
    }
}

impl PrivateCluster {
    pub(crate) fn start() -> PrivateCluster {
        let dir = tempfile::tempdir().unwrap();
        let _ = std::process::Command::new("chown")
            .arg("postgres")
            .arg(dir.path())
            .status();
        let bin = pg_bin();
        let data = dir.path().join("data");
        let initdb = bin.join("initdb");
        let out = as_postgres(
            initdb.to_str().unwrap(),
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "portcullis",
                "--auth=trust",
            ],
        )
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut c = PrivateCluster {
            url: String::new(),
            bin,
            data,
            port: 0,
            dir,
        };
        // PostgreSQL cannot listen on port 0 and say which port it got: a free port, and
        // another when that one was taken before the server bound it.
        let port = super::ports::start_on_free_port("PostgreSQL", |port| {
            c.port = port;
            match c.try_up() {
                Ok(()) => super::ports::Start::Up(port),
                Err(said) => super::ports::collided_or_panic("pg_ctl start", said),
            }
        });
        c.url = format!("postgres://portcullis@127.0.0.1:{port}/postgres");
        c
    }

    /// Starts the server again on its port (after [`PrivateCluster::down`]).
    pub(crate) fn up(&self) {
        if let Err(said) = self.try_up() {
            panic!("pg_ctl start: {said}");
        }
    }

    /// Starts the server on its port; `Err`: what pg_ctl and the server's log said.
    fn try_up(&self) -> Result<(), String> {
        let ctl = self.bin.join("pg_ctl");
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        let out = as_postgres(
            ctl.to_str().unwrap(),
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-o",
                &opts,
                "start",
            ],
        )
        .output()
        .unwrap();
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}\n{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(&log).unwrap_or_default()
            ))
        }
    }

    pub(crate) fn down(&self) {
        let ctl = self.bin.join("pg_ctl");
        let out = as_postgres(
            ctl.to_str().unwrap(),
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        )
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let ctl = self.bin.join("pg_ctl");
        let _ = as_postgres(
            ctl.to_str().unwrap(),
            &["-D", self.data.to_str().unwrap(), "-m", "immediate", "stop"],
        )
        .output();
    }
}
