//! Leased secrets end to end (issue 23): OpenBao's database engine leases a PostgreSQL user
//! per session; the controller keeps the data sealed and serves it only to the session's own
//! user while it lives, each read audited; `connect postgres` and `connect --env` hand it to
//! a child's environment, never its command line; the user is dropped when the session ends.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::cluster::{Controller, Worker};
use common::vault::{Bao, DB_ROLE, SSH_ROLE, TOKEN_ROLE};
use common::wait::{poll, wait_for};
use serde_json::{json, Value};

struct Setup {
    c: Controller,
    _w: Worker,
    _bao: Bao,
    _dir: tempfile::TempDir,
}

/// OpenBao with the database engine on the test PostgreSQL, a controller on its Vault
/// backend, a worker, and the target `db`: the test PostgreSQL, its sessions leased a user.
fn setup() -> Setup {
    let bao = Bao::start();
    let dir = tempfile::tempdir().unwrap();
    let vault = format!(
        "[ssh]\nbackend = \"vault\"\n[vault]\naddress = \"{}\"\ntoken_file = \"{}\"\nssh_role = \"{SSH_ROLE}\"\n\
         token_role = \"{TOKEN_ROLE}\"\nrevoke_retry_max = 2\nmint_timeout = 3\njob_interval = 0.5\nrequest_timeout = 3\n",
        bao.addr,
        bao.controller_token_file("1h").display(),
    );
    let c = Controller::start_with(&dir.path().join("controller"), &vault);
    let w = Worker::start(
        &dir.path().join("w1"),
        std::slice::from_ref(&c.cluster),
        Some(&c.join_token()),
        "",
    )
    .unwrap();
    let body = json!({
        "name": "db", "address": pg_address(), "zone": "LOCAL", "service": "echo",
        "vault_secrets": [format!("database/creds/{DB_ROLE}")],
    })
    .to_string();
    let (code, text) = c.curl("POST", "/v1/targets", Some(&body));
    assert_eq!(code, 201, "{text}");
    Setup {
        c,
        _w: w,
        _bao: bao,
        _dir: dir,
    }
}

/// HOST:PORT of the test PostgreSQL (`postgres://USER@HOST:PORT/DB`).
fn pg_address() -> String {
    let url = std::env::var("PORTCULLIS_TEST_PG_URL")
        .expect("PORTCULLIS_TEST_PG_URL (run the suite with scripts/test)");
    let rest = url.split_once('@').unwrap().1;
    rest.split('/').next().unwrap().to_owned()
}

fn pg_role_exists(name: &str) -> bool {
    use sqlx::Connection as _;
    let url = std::env::var("PORTCULLIS_TEST_PG_URL").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        let row: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM pg_roles WHERE rolname = $1")
            .bind(name)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        row.0 == 1
    })
}

/// Rows of `session_secrets` for the session in the controller's SQLite store.
fn sealed_rows(db: &Path, session_id: &str) -> i64 {
    use sqlx::Connection as _;
    let url = format!("sqlite://{}", db.display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let row: (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM session_secrets WHERE session_id = ?")
                .bind(session_id)
                .fetch_one(&mut conn)
                .await
                .unwrap();
        row.0
    })
}

fn said(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn audit(c: &Controller, query: &str) -> Vec<Value> {
    let (code, text) = c.curl("GET", &format!("/v1/audit?{query}"), None);
    assert_eq!(code, 200, "{text}");
    serde_json::from_str::<Value>(&text).unwrap()["items"]
        .as_array()
        .unwrap()
        .clone()
}

fn session_count(c: &Controller) -> usize {
    let (code, text) = c.curl("GET", "/v1/sessions?limit=1000", None);
    assert_eq!(code, 200, "{text}");
    serde_json::from_str::<Value>(&text).unwrap()["items"]
        .as_array()
        .unwrap()
        .len()
}

#[test]
fn connect_postgres_runs_psql_as_the_leased_user_who_is_dropped_when_it_exits() {
    let s = setup();
    let started = std::time::Instant::now();
    let out =
        s.c.cli()
            .args([
                "connect",
                "postgres",
                "db",
                "--",
                "-X",
                "-tAc",
                "select current_user",
            ])
            .output()
            .unwrap();
    assert!(out.status.success(), "{}", said(&out));
    let user = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        user.starts_with("v-"),
        "not a user Vault leased: {}",
        said(&out)
    );
    // psql's exit ended the session, which revokes the lease: Vault drops the user.
    wait_for("the leased user dropped", Duration::from_secs(10), || {
        !pg_role_exists(&user)
    });
    eprintln!("connect postgres and the drop took {:?}", started.elapsed());
    let sessions = audit(&s.c, "type=session_secrets_read");
    assert_eq!(sessions.len(), 1, "one read, by the CLI: {sessions:?}");
    let sid = sessions[0]["session"].as_str().unwrap();
    let (code, text) = s.c.curl("GET", &format!("/v1/sessions/{sid}"), None);
    assert_eq!(code, 200, "{text}");
    assert!(
        text.contains("\"terminated\"") && text.contains("closed"),
        "{text}"
    );

    // psql's exit status is the command's.
    let out =
        s.c.cli()
            .args([
                "connect",
                "postgres",
                "db",
                "--",
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                "select nope",
            ])
            .output()
            .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));

    // A target that leases no secret: a clear error, and the session it opened is ended.
    s.c.create_target("plain", &pg_address());
    let out =
        s.c.cli()
            .args(["connect", "postgres", "plain"])
            .output()
            .unwrap();
    assert!(!out.status.success(), "{}", said(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no leased secrets") && err.contains("vault_secrets"),
        "{err}"
    );
    let (code, text) = s.c.curl("GET", "/v1/sessions?live=true", None);
    assert_eq!(code, 200, "{text}");
    assert!(
        !text.contains("\"target_name\":\"plain\""),
        "left open: {text}"
    );

    // A secret on --exec's command line is refused before any session is opened.
    let before = session_count(&s.c);
    let out =
        s.c.cli()
            .args([
                "connect",
                "db",
                "--exec",
                "sh",
                "--",
                "-c",
                "echo {{secret.password}}",
            ])
            .output()
            .unwrap();
    assert!(!out.status.success(), "{}", said(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--env PGPASSWORD="),
        "{}",
        said(&out)
    );
    assert_eq!(session_count(&s.c), before, "no session was opened");

    // In the environment the child gets them: the same values `sessions secrets` serves.
    let script = "printf 'user=%s\\npass=%s\\n' \"$PGUSER\" \"$PGPASSWORD\" && \
                  \"$PORTCULLIS_BIN\" sessions secrets \"$PORTCULLIS_SESSION_ID\" --json && \
                  psql -X -h {{host}} -p {{port}} -tAc 'select current_user'";
    let out =
        s.c.cli()
            .env("PORTCULLIS_BIN", common::dev::bin())
            .args([
                "connect",
                "db",
                "--env",
                "PGUSER={{secret.username}}",
                "--env",
                "PGPASSWORD={{secret.0.password}}",
                "--env",
                "PGDATABASE=postgres",
                "--exec",
                "sh",
                "--",
                "-c",
                script,
            ])
            .output()
            .unwrap();
    assert!(out.status.success(), "{}", said(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let line = |prefix: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix} line: {stdout}"))
            .to_owned()
    };
    let (user, pass) = (line("user="), line("pass="));
    let json_start = stdout.find('{').unwrap();
    let json_end = stdout.rfind('}').unwrap();
    let served: Value = serde_json::from_str(&stdout[json_start..=json_end]).unwrap();
    assert_eq!(served["secrets"][0]["data"]["username"], user.as_str());
    assert_eq!(served["secrets"][0]["data"]["password"], pass.as_str());
    assert!(pass.len() >= 8, "{stdout}");
    assert_eq!(
        stdout.trim_end().lines().last(),
        Some(user.as_str()),
        "{stdout}"
    );
    wait_for(
        "the second leased user dropped",
        Duration::from_secs(10),
        || !pg_role_exists(&user),
    );
    // No event holds a password.
    let (_, everything) = s.c.curl("GET", "/v1/audit?limit=1000", None);
    assert!(!everything.contains(&pass), "a password in the audit log");
}

#[test]
fn secrets_are_served_to_the_sessions_own_user_only_while_it_lives_each_read_audited() {
    let s = setup();
    let listener = common::client::listen(s.c.cli(), "db");
    let sid = listener.session_id.clone();
    let read = |token: Option<&str>, json: bool| {
        let mut cmd = s.c.cli();
        if let Some(token) = token {
            cmd.env("PORTCULLIS_TOKEN", token);
        }
        cmd.args(["sessions", "secrets", &sid]);
        if json {
            cmd.arg("--json");
        }
        cmd.output().unwrap()
    };
    // The owner, while the session lives: JSON and text.
    let out = read(None, true);
    assert!(out.status.success(), "{}", said(&out));
    let served: Value = serde_json::from_slice(&out.stdout).unwrap();
    let secret = &served["secrets"][0];
    assert_eq!(secret["path"], format!("database/creds/{DB_ROLE}"));
    let user = secret["data"]["username"].as_str().unwrap().to_owned();
    let pass = secret["data"]["password"].as_str().unwrap().to_owned();
    assert!(user.starts_with("v-") && pg_role_exists(&user), "{served}");
    let out = read(None, false);
    assert!(out.status.success(), "{}", said(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("username  {user}")), "{text}");

    // Sealed in the store: the password is nowhere in the database files.
    let db = s.c.dir.join("portcullis.db");
    assert_eq!(sealed_rows(&db, &sid), 1);
    for file in [db.clone(), s.c.dir.join("portcullis.db-wal")] {
        if let Ok(bytes) = std::fs::read(&file) {
            assert!(
                !bytes.windows(pass.len()).any(|w| w == pass.as_bytes()),
                "the password in clear in {}",
                file.display()
            );
        }
    }

    // Anyone else is told there is no such session, admins too; the refusal is audited.
    let other_admin = s.c.issue_token("root2", &["admins"]);
    let out = read(Some(&other_admin), true);
    assert!(!out.status.success(), "{}", said(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no session"),
        "{}",
        said(&out)
    );
    let (code, text) = s.c.curl_as(
        &other_admin,
        "GET",
        &format!("/v1/sessions/{sid}/secrets"),
        None,
    );
    assert_eq!(code, 404, "{text}");
    assert!(!text.contains(&pass));
    poll("the refusals audited", Duration::from_secs(10), || {
        let denied: Vec<Value> = audit(&s.c, "type=permission_denied")
            .into_iter()
            .filter(|e| e.to_string().contains("root2") && e.to_string().contains(&sid))
            .collect();
        if denied.len() >= 2 {
            Ok(())
        } else {
            Err(format!("{denied:?}"))
        }
    });

    // Each read by the owner is one event naming the path, never the data.
    let reads = audit(&s.c, &format!("session={sid}&type=session_secrets_read"));
    assert_eq!(reads.len(), 2, "{reads:?}");
    for event in &reads {
        assert_eq!(
            event["details"]["paths"],
            json!([format!("database/creds/{DB_ROLE}")])
        );
        assert_eq!(event["actor"]["user"], "admin", "{event}");
        let text = event.to_string();
        assert!(!text.contains(&pass) && !text.contains(&user), "{text}");
    }

    // Once the session ended: refused, the sealed row gone, the user dropped.
    drop(listener);
    let (code, text) =
        s.c.curl("POST", &format!("/v1/sessions/{sid}/cancel"), Some("{}"));
    assert!(code == 200, "{text}");
    let out = read(None, true);
    assert!(!out.status.success(), "{}", said(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("has ended") && err.contains("new session"),
        "{err}"
    );
    assert_eq!(sealed_rows(&db, &sid), 0);
    wait_for("the leased user dropped", Duration::from_secs(10), || {
        !pg_role_exists(&user)
    });
    let reads = audit(&s.c, &format!("session={sid}&type=session_secrets_read"));
    assert_eq!(reads.len(), 2, "a refused read is not a read: {reads:?}");
}
