//! `portcullis controller backup` and `controller restore` with the real binary
//! (docs/operations.md "Backups and restore"): a backup taken while a controller serves and
//! writes restores into a fresh directory whose controller serves the old targets and whose
//! audit chain verifies; the backup holds no plain master key; a wrong passphrase, a changed
//! snapshot, a schema newer than the binary and an existing store are refused with nothing
//! written; a backup never migrates: a store at another schema than the binary's is refused
//! and left as it was. On PostgreSQL the backup prints the `pg_dump` line, which, with the `pg_restore`
//! line, brings the store back into a new database.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::cluster::Controller;
use common::dev::bin;
use common::init::write_config;
use serde_json::Value;

/// The master key every test controller uses (`tests/common/cluster.rs`).
const MASTER_HEX: &str = "abababababababababababababababababababababababababababababababab";
const PASSPHRASE: &str = "correct horse battery staple";

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn secret_file(path: &Path, text: &str) -> PathBuf {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
    path.to_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn backup(config: &Path, out: &Path, passphrase: &Path) -> Output {
    Command::new(bin())
        .args(["controller", "backup", "--json", "--config"])
        .arg(config)
        .arg("--out")
        .arg(out)
        .arg("--passphrase-file")
        .arg(passphrase)
        .env("PORTCULLIS_LOG", "warn")
        .env_remove("PORTCULLIS_MASTER_KEY")
        .output()
        .unwrap()
}

fn restore(config: &Path, from: &Path, passphrase: &Path) -> Output {
    Command::new(bin())
        .args(["controller", "restore", "--json", "--config"])
        .arg(config)
        .arg("--from")
        .arg(from)
        .arg("--passphrase-file")
        .arg(passphrase)
        .env("PORTCULLIS_LOG", "warn")
        .env_remove("PORTCULLIS_MASTER_KEY")
        .output()
        .unwrap()
}

fn json_ok(out: &Output) -> Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The names of the targets the controller serves, through `portcullis targets list`.
fn target_names(c: &Controller) -> Vec<String> {
    let out = c
        .cli()
        .args(["targets", "list", "--json"])
        .output()
        .unwrap();
    let listed = json_ok(&out);
    let items = listed
        .as_array()
        .or_else(|| listed["targets"].as_array())
        .unwrap_or_else(|| panic!("no list of targets in {listed}"));
    let mut names: Vec<String> = items
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// `portcullis audit verify` on the running controller: exit 0 is the verdict.
fn audit_verifies(c: &Controller) -> Value {
    let out = c
        .cli()
        .args(["audit", "verify", "--json"])
        .output()
        .unwrap();
    json_ok(&out)
}

/// No file in `dir` holds the master key, as hex (either case) or as its 32 raw bytes.
fn holds_no_plain_master_key(dir: &Path) {
    let raw = hex_decode(MASTER_HEX);
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes).to_ascii_lowercase();
        assert!(
            !text.contains(MASTER_HEX),
            "{} holds the key's hex",
            path.display()
        );
        assert!(
            !bytes.windows(raw.len()).any(|w| w == raw.as_slice()),
            "{} holds the key's bytes",
            path.display()
        );
    }
}

fn hex_decode(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// The files a directory holds, by name.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_backup_taken_while_the_controller_writes_restores_and_serves_the_old_targets() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Controller::start(&tmp.path().join("a"));
    const TARGETS: usize = 20;
    for i in 0..TARGETS {
        c.create_target(&format!("t{i:02}"), "127.0.0.1:9");
    }
    let pass = secret_file(&tmp.path().join("passphrase"), PASSPHRASE);
    let out_dir = tmp.path().join("backup");

    // A writer keeps creating targets (each an audited transaction) while the backup runs.
    let stop = AtomicBool::new(false);
    let written = AtomicUsize::new(0);
    let (done, during, elapsed) = std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let n = written.load(Ordering::Relaxed);
                c.create_target(&format!("w{n:04}"), "127.0.0.1:9");
                written.fetch_add(1, Ordering::Relaxed);
            }
        });
        common::wait::wait_for(
            "the writer's first targets",
            Duration::from_secs(30),
            || written.load(Ordering::Relaxed) >= 2,
        );
        let before = written.load(Ordering::Relaxed);
        let started = Instant::now();
        let out = backup(&c.config, &out_dir, &pass);
        let elapsed = started.elapsed();
        // The writer went on while the backup ran: at least one more commit after it.
        let after = written.load(Ordering::Relaxed);
        common::wait::wait_for("a write after the backup", Duration::from_secs(30), || {
            written.load(Ordering::Relaxed) > after
        });
        stop.store(true, Ordering::Relaxed);
        (out, written.load(Ordering::Relaxed) - before, elapsed)
    });
    let made = json_ok(&done);
    let manifest = &made["manifest"];
    assert_eq!(manifest["store"], "sqlite", "{made:#}");
    assert_eq!(manifest["format"], "portcullis-backup");
    assert!(
        manifest["schema_version"].as_i64().unwrap() >= 15,
        "{made:#}"
    );
    let head_seq = manifest["audit_head"]["sequence"].as_u64().unwrap();
    assert!(head_seq > TARGETS as u64, "{made:#}");
    let files: Vec<&str> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    // The recordings store is a SQLite file of its own beside the store: snapshotted too.
    assert_eq!(
        files,
        ["store.db", "recordings.db", "master-key.sealed"],
        "{made:#}"
    );
    eprintln!(
        "backup of {} targets, {} audit events: {:.2} s, {} bytes ({} writes by the controller meanwhile)",
        TARGETS + during,
        head_seq,
        elapsed.as_secs_f64(),
        made["bytes"],
        during
    );

    // The directory is the owner's alone, and holds no plain master key.
    assert_eq!(mode(&out_dir), 0o700);
    assert_eq!(
        names_in(&out_dir),
        [
            "manifest.json",
            "master-key.sealed",
            "recordings.db",
            "store.db"
        ]
    );
    for name in names_in(&out_dir) {
        assert_eq!(mode(&out_dir.join(&name)), 0o600, "{name}");
    }
    holds_no_plain_master_key(&out_dir);

    // Recorded in the live chain as backup_created, naming the manifest's hash.
    let (code, text) = c.curl("GET", "/v1/audit?type=backup_created", None);
    assert_eq!(code, 200, "{text}");
    let listed: Value = serde_json::from_str(&text).unwrap();
    let events = listed
        .as_array()
        .or_else(|| listed["items"].as_array())
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(events.len(), 1, "{listed:#}");
    assert_eq!(
        events[0]["details"]["manifest_sha256"], made["manifest_sha256"],
        "{listed:#}"
    );
    assert_eq!(events[0]["details"]["audit_sequence"], head_seq);
    assert!(!text.contains(MASTER_HEX) && !text.contains(PASSPHRASE));

    // A second backup into the same, non-empty directory is refused.
    let again = backup(&c.config, &out_dir, &pass);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("not an empty directory"),
        "{}",
        stderr(&again)
    );
    // A short passphrase is refused before anything is written.
    let short = secret_file(&tmp.path().join("short"), "too short");
    let refused = backup(&c.config, &tmp.path().join("never"), &short);
    assert!(
        stderr(&refused).contains("at least 12"),
        "{}",
        stderr(&refused)
    );
    assert!(!tmp.path().join("never").exists());

    // A passphrase file others can read is refused, like every secret file.
    let loose = tmp.path().join("loose");
    std::fs::write(&loose, PASSPHRASE).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = backup(&c.config, &tmp.path().join("never"), &loose);
    assert!(
        stderr(&refused).contains("chmod 600"),
        "{}",
        stderr(&refused)
    );
    assert!(!tmp.path().join("never").exists());

    // The new controller's directory: a config naming a store and key that do not exist.
    let fresh = tmp.path().join("b");
    let url = format!("sqlite://{}", fresh.join("portcullis.db").display());
    let config = write_config(&fresh, &url, "");
    let untouched = || assert_eq!(names_in(&fresh), ["controller.toml"]);

    // A wrong passphrase: refused, nothing written.
    let wrong = secret_file(&tmp.path().join("wrong"), "not the passphrase at all");
    let out = restore(&config, &out_dir, &wrong);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("wrong passphrase"),
        "{}",
        stderr(&out)
    );
    untouched();

    // A changed snapshot: refused by its hash, nothing written.
    let tampered = tmp.path().join("tampered");
    std::fs::create_dir(&tampered).unwrap();
    for name in names_in(&out_dir) {
        std::fs::copy(out_dir.join(&name), tampered.join(&name)).unwrap();
    }
    let mut db = std::fs::read(tampered.join("store.db")).unwrap();
    let middle = db.len() / 2;
    db[middle] ^= 0x01;
    std::fs::write(tampered.join("store.db"), &db).unwrap();
    let out = restore(&config, &tampered, &pass);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("store.db has SHA-256"),
        "{}",
        stderr(&out)
    );
    untouched();

    // A schema newer than this binary (as a newer Portcullis would write): refused.
    std::fs::copy(out_dir.join("store.db"), tampered.join("store.db")).unwrap();
    let mut m: Value =
        serde_json::from_slice(&std::fs::read(tampered.join("manifest.json")).unwrap()).unwrap();
    m["schema_version"] = 9999.into();
    std::fs::write(tampered.join("manifest.json"), m.to_string()).unwrap();
    let out = restore(&config, &tampered, &pass);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("newer than this binary"),
        "{}",
        stderr(&out)
    );
    untouched();

    // The restore: the chain verified to the manifest's head, the key written 0600.
    let out = restore(&config, &out_dir, &pass);
    let restored = json_ok(&out);
    assert_eq!(restored["audit"]["verified"], true, "{restored:#}");
    assert_eq!(
        restored["audit"]["head"], manifest["audit_head"],
        "{restored:#}"
    );
    assert_eq!(restored["audit"]["events"].as_u64().unwrap(), head_seq);
    assert_eq!(
        names_in(&fresh),
        [
            "controller.toml",
            "master.key",
            "portcullis-recordings.db",
            "portcullis.db"
        ]
    );
    for name in ["master.key", "portcullis.db", "portcullis-recordings.db"] {
        assert_eq!(mode(&fresh.join(name)), 0o600, "{name}");
    }
    assert_eq!(
        std::fs::read_to_string(fresh.join("master.key"))
            .unwrap()
            .trim(),
        MASTER_HEX
    );
    // Never over an existing store or key.
    let out = restore(&config, &out_dir, &pass);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("exists"), "{}", stderr(&out));

    // The restored controller serves the old targets, and its chain verifies.
    let old = target_names(&c);
    drop(c);
    let c2 = Controller::start_on(&fresh, &url, "");
    let served = target_names(&c2);
    for i in 0..TARGETS {
        assert!(served.contains(&format!("t{i:02}")), "{served:?}");
    }
    // A snapshot of a moment: every target it holds was served before, none is half there.
    assert!(served.iter().all(|name| old.contains(name)), "{served:?}");
    let verdict = audit_verifies(&c2);
    assert!(
        verdict["events"].as_u64().unwrap() > head_seq,
        "the restored chain goes on from the snapshot's head: {verdict}"
    );
}

#[test]
fn a_backup_never_migrates_and_refuses_a_store_at_another_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let mut c = Controller::start(&dir);
    common::cluster::sigterm(&c.child);
    common::cluster::wait_exit(&mut c.child, Duration::from_secs(20));
    let pass = secret_file(&tmp.path().join("passphrase"), PASSPHRASE);
    let url = format!("sqlite://{}", dir.join("portcullis.db").display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sql = |query: &str| {
        rt.block_on(async {
            use sqlx::Connection as _;
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            let rows: Vec<(i64,)> = sqlx::query_as(query).fetch_all(&mut conn).await.unwrap();
            rows.into_iter().map(|r| r.0).collect::<Vec<i64>>()
        })
    };
    // The store as an older binary left it: its newest migration not applied yet.
    let newest = sql("SELECT MAX(version) FROM _sqlx_migrations WHERE version < 1000")[0];
    sql(&format!(
        "DELETE FROM _sqlx_migrations WHERE version = {newest} RETURNING version"
    ));
    let out_dir = tmp.path().join("older");
    let out = backup(&c.config, &out_dir, &pass);
    assert!(!out.status.success());
    let text = stderr(&out);
    assert!(text.contains("never migrates"), "{text}");
    assert!(
        !out_dir.exists() || names_in(&out_dir).is_empty(),
        "files left in {out_dir:?}"
    );
    let left = sql(&format!(
        "SELECT COUNT(*) FROM _sqlx_migrations WHERE version = {newest}"
    ));
    assert_eq!(left, [0], "the backup migrated the store");

    // A store a newer binary migrated.
    sql(&format!(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ({newest}, 'back', 1, x'00', 0), (999, 'newer', 1, x'00', 0) RETURNING version"
    ));
    let out_dir = tmp.path().join("newer");
    let out = backup(&c.config, &out_dir, &pass);
    assert!(!out.status.success());
    let text = stderr(&out);
    assert!(text.contains("999"), "{text}");
    assert!(
        !out_dir.exists() || names_in(&out_dir).is_empty(),
        "files left in {out_dir:?}"
    );
}

#[test]
fn a_postgresql_backup_prints_the_pg_dump_line_and_pg_restore_brings_the_store_back() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = rt.block_on(common::pg::fresh_database());
    let tmp = tempfile::tempdir().unwrap();
    let c = Controller::start_on(&tmp.path().join("a"), &url, "");
    for name in ["pg-one", "pg-two"] {
        c.create_target(name, "127.0.0.1:9");
    }
    let pass = secret_file(&tmp.path().join("passphrase"), PASSPHRASE);
    let out_dir = tmp.path().join("backup");
    let out = backup(&c.config, &out_dir, &pass);
    let made = json_ok(&out);
    let manifest = &made["manifest"];
    assert_eq!(manifest["store"], "postgres", "{made:#}");
    let dump = manifest["postgres"]["dump"].as_str().unwrap();
    let restore_line = manifest["postgres"]["restore"].as_str().unwrap();
    assert!(
        dump.starts_with("pg_dump --format=custom --file ") && dump.contains("store.pgdump"),
        "{dump}"
    );
    assert!(stderr(&out).contains(dump), "{}", stderr(&out));
    // No snapshot of its own: the sealed key and the manifest.
    assert_eq!(names_in(&out_dir), ["manifest.json", "master-key.sealed"]);
    holds_no_plain_master_key(&out_dir);

    // The operator's steps, as printed: the dump, then pg_restore into a new database.
    let run = |line: &str| {
        let out = Command::new("sh").args(["-c", line]).output().unwrap();
        assert!(out.status.success(), "{line}: {}", stderr(&out));
    };
    run(dump);
    let new_url = rt.block_on(common::pg::fresh_database());
    run(&restore_line.replace("NEW_DATABASE_URL", &format!("'{new_url}'")));

    let fresh = tmp.path().join("b");
    let config = write_config(&fresh, &new_url, "");
    let wrong = secret_file(&tmp.path().join("wrong"), "not the passphrase at all");
    let out = restore(&config, &out_dir, &wrong);
    assert!(
        stderr(&out).contains("wrong passphrase"),
        "{}",
        stderr(&out)
    );
    assert_eq!(names_in(&fresh), ["controller.toml"]);
    let restored = json_ok(&restore(&config, &out_dir, &pass));
    assert_eq!(restored["audit"]["verified"], true, "{restored:#}");
    assert_eq!(mode(&fresh.join("master.key")), 0o600);

    drop(c);
    let c2 = Controller::start_on(&fresh, &new_url, "");
    assert_eq!(target_names(&c2), ["pg-one", "pg-two"]);
    audit_verifies(&c2);
}
