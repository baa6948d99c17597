//! Recorded SSH sessions end to end: a controller (or two sharing PostgreSQL) and a worker as
//! separate processes, with the recording policy (tests/fixtures/policy-recording.toml: every
//! session into the loopback zone is recorded), a real sshd target behind the worker's SSH
//! gateway, and a client with a HOME of its own. Also the reviewer's side: the recordings as
//! the CLI lists them, exported bundles decoded, and a stored chunk edited behind the
//! controller's back.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use portcullis_proto::recording::{
    Bundle, Chunk, ChunkKind, RecordingInfo, RecordingList, RecordingState,
};
use serde_json::Value;

use super::cluster::{sigterm, wait_exit, Controller, Worker};
use super::dev::bin;
use super::netns::Place;
use super::sshd::{login_user, Sshd};
use super::wait::poll;

/// The target every recording test reaches.
pub(crate) const TARGET: &str = "web-01";
/// The target's name as ssh reaches it through the `ssh-config` block.
pub(crate) const HOST: &str = "web-01.pc";

pub(crate) fn policy_fixture() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/policy-recording.toml"
    ))
}

/// How the deployment differs from the default one (one controller on SQLite).
#[derive(Default)]
pub(crate) struct Setup<'a> {
    /// Two controllers sharing a fresh PostgreSQL database (the suite's cluster), the
    /// worker linked to both.
    pub postgres: bool,
    /// Extra lines for the worker's config, after its `[worker]` section (e.g. a
    /// `[recording]` section).
    pub worker_extra: &'a str,
    /// Extra lines for the controllers' `[api]` table (and tables after it), and the CA the
    /// clients then trust instead of the internal one (a browser test's certificate).
    pub api_extra: &'a str,
    pub api_ca: Option<&'a Path>,
}

pub(crate) struct Recorded {
    pub controllers: Vec<Controller>,
    /// `None` once a test killed it.
    pub worker: Option<Worker>,
    pub sshd: Sshd,
    /// The login user: the sessions' owner (group `admins`).
    pub user: String,
    /// The owner's API token.
    pub token: String,
    /// The client's HOME; `ssh-prepare` keeps its sessions under HOME/run.
    pub home: tempfile::TempDir,
    pub tmp: tempfile::TempDir,
    /// What `portcullis ssh-config` printed.
    pub config: PathBuf,
    store_url: String,
    dir: tempfile::TempDir,
}

impl Recorded {
    pub(crate) fn start() -> Recorded {
        Recorded::start_with(&Setup::default())
    }

    pub(crate) fn start_with(setup: &Setup<'_>) -> Recorded {
        let user = login_user();
        let dir = tempfile::tempdir().unwrap();
        let (store_url, names): (String, &[&str]) = if setup.postgres {
            let url = tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(super::pg::fresh_database());
            (url, &["a", "b"])
        } else {
            let url = format!("sqlite://{}", dir.path().join("a/portcullis.db").display());
            (url, &["a"])
        };
        let controllers: Vec<Controller> = names
            .iter()
            .map(|name| {
                let mut c = Controller::start_configured(
                    &Place::host(),
                    &dir.path().join(name),
                    &store_url,
                    policy_fixture(),
                    setup.api_extra,
                    "",
                    "",
                );
                if let Some(ca) = setup.api_ca {
                    c.ca = ca.to_owned();
                }
                c
            })
            .collect();
        let first = &controllers[0];
        let links: Vec<String> = controllers.iter().map(|c| c.cluster.clone()).collect();
        let worker = Worker::start(
            &dir.path().join("w1"),
            &links,
            Some(&first.join_token()),
            setup.worker_extra,
        )
        .unwrap_or_else(|e| panic!("the worker did not start: {e}"));
        let (code, user_ca) = first.curl("GET", "/v1/ssh/ca", None);
        assert_eq!(code, 200, "{user_ca}");
        let sshd =
            Sshd::start_configured(&user_ca, &[&user], None, "Subsystem sftp internal-sftp\n");
        let body = serde_json::json!({
            "name": TARGET,
            "address": format!("127.0.0.1:{}", sshd.port),
            "zone": "LOCAL",
            "service": "echo",
            "ssh_host_keys": [sshd.host_key_pub],
        })
        .to_string();
        let (code, text) = first.curl("POST", "/v1/targets", Some(&body));
        assert_eq!(code, 201, "{text}");
        let token = first.issue_token(&user, &["admins"]);
        let home = tempfile::tempdir().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join("run")).unwrap();
        let mut rec = Recorded {
            controllers,
            worker: Some(worker),
            sshd,
            user,
            token,
            home,
            tmp,
            config: PathBuf::new(),
            store_url,
            dir,
        };
        let out = rec.cli().arg("ssh-config").output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        rec.config = rec.runtime().join("ssh_config");
        std::fs::write(&rec.config, &out.stdout).unwrap();
        rec
    }

    pub(crate) fn runtime(&self) -> PathBuf {
        self.home.path().join("run")
    }

    /// The client's environment on `cmd`, talking to controller `index`, as the owner.
    pub(crate) fn env_on<'c>(&self, index: usize, cmd: &'c mut Command) -> &'c mut Command {
        let c = &self.controllers[index];
        cmd.env("PORTCULLIS_ADDR", &c.api)
            .env("PORTCULLIS_CA", &c.ca)
            .env("PORTCULLIS_TOKEN", &self.token)
            .env("PORTCULLIS_LOG", "warn")
            .env("HOME", self.home.path())
            .env("TMPDIR", self.tmp.path())
            .env("XDG_RUNTIME_DIR", self.runtime())
    }

    pub(crate) fn client_env<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        self.env_on(0, cmd)
    }

    /// A `portcullis` command as the owner runs it against the first controller.
    pub(crate) fn cli(&self) -> Command {
        self.cli_on(0)
    }

    /// A `portcullis` command as the owner runs it against controller `index`.
    pub(crate) fn cli_on(&self, index: usize) -> Command {
        let mut cmd = Command::new(bin());
        self.env_on(index, &mut cmd);
        cmd
    }

    /// `ssh -F CONFIG` as the client runs it, never waiting for a prompt.
    pub(crate) fn ssh(&self) -> Command {
        let mut cmd = Command::new("ssh");
        self.client_env(&mut cmd).arg("-F").arg(&self.config).args([
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=30",
        ]);
        cmd
    }

    /// A tool that runs ssh (`sftp`, `scp`) with the same environment.
    pub(crate) fn tool(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        self.client_env(&mut cmd);
        cmd
    }

    /// Runs `cmd`, which must succeed; its stdout.
    pub(crate) fn ok(&self, cmd: &mut Command) -> String {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?} failed ({}):\n{}{}\nsshd:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.sshd.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The id of the session `ssh-prepare` has on disk.
    pub(crate) fn cached_session_id(&self) -> String {
        let path = self
            .runtime()
            .join("portcullis/ssh")
            .join(HOST)
            .join("session.json");
        let text = std::fs::read_to_string(path).unwrap();
        let file: Value = serde_json::from_str(&text).unwrap();
        file["session_id"].as_str().unwrap().to_owned()
    }

    /// `sessions recordings ID --json` against controller `index`, parsed as the API's
    /// body; `Err`: what the CLI said instead.
    pub(crate) fn try_recordings_on(
        &self,
        index: usize,
        session: &str,
    ) -> Result<RecordingList, String> {
        let out = self
            .cli_on(index)
            .args(["sessions", "recordings", session, "--json"])
            .output()
            .unwrap();
        if !out.status.success() {
            return Err(said(&out));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("{e}: {}", said(&out)))
    }

    /// Waits until session `session` has `count` recordings, every one of them `state`; a
    /// complete one also sealed as such in the audit chain (the controller seals a head just
    /// after storing its chunk, in the audit log's own transaction).
    pub(crate) fn wait_recordings(
        &self,
        session: &str,
        count: usize,
        state: RecordingState,
    ) -> Vec<RecordingInfo> {
        self.wait_recordings_on(0, session, count, state)
    }

    pub(crate) fn wait_recordings_on(
        &self,
        index: usize,
        session: &str,
        count: usize,
        state: RecordingState,
    ) -> Vec<RecordingInfo> {
        poll(
            &format!("{count} {} recording(s) of {session}", state.as_str()),
            Duration::from_secs(60),
            || {
                let list = self.try_recordings_on(index, session)?;
                let sealed = |r: &RecordingInfo| {
                    state != RecordingState::Complete
                        || r.sealed.as_ref().is_some_and(|s| s.complete)
                };
                if list.recordings.len() == count
                    && list
                        .recordings
                        .iter()
                        .all(|r| r.state == state && sealed(r))
                {
                    Ok(list.recordings)
                } else {
                    Err(format!("{list:?}"))
                }
            },
        )
    }

    /// `sessions export ID --recording R --format FORMAT -o FILE` (must succeed); FILE.
    pub(crate) fn export(&self, session: &str, recording: &str, format: &str) -> PathBuf {
        let file = self.tmp.path().join(format!(
            "{recording}.{}",
            if format == "bundle" { "json" } else { "cast" }
        ));
        self.ok(self
            .cli()
            .args(["sessions", "export", session, "--recording", recording])
            .args(["--format", format, "-o"])
            .arg(&file));
        file
    }

    /// Audit events matching `query` (e.g. `session=s_1`), newest first, as an admin reads
    /// them from the first controller.
    pub(crate) fn audit(&self, query: &str) -> Vec<Value> {
        let (code, text) =
            self.controllers[0].curl("GET", &format!("/v1/audit?limit=1000&{query}"), None);
        assert_eq!(code, 200, "{text}");
        let answer: Value = serde_json::from_str(&text).unwrap();
        answer["items"].as_array().unwrap().clone()
    }

    /// Waits for an audit event of `kind` about `session`; returns it.
    pub(crate) fn wait_audited(&self, session: &str, kind: &str) -> Value {
        poll(
            &format!("a {kind} event of session {session}"),
            Duration::from_secs(30),
            || {
                let events = self.audit(&format!("session={session}"));
                events
                    .iter()
                    .find(|e| e["type"] == kind)
                    .cloned()
                    .ok_or_else(|| summary(&events))
            },
        )
    }

    /// Kills the worker with SIGKILL (no chance to flush or finish anything).
    pub(crate) fn kill_worker(&mut self) {
        if let Some(mut worker) = self.worker.take() {
            worker.child.kill().unwrap();
            worker.child.wait().unwrap();
        }
    }

    /// Stops controller `index` (SIGTERM) and starts it again on the same directory and
    /// store.
    pub(crate) fn restart_controller(&mut self, index: usize) {
        let name = ["a", "b"][index];
        {
            let c = &mut self.controllers[index];
            sigterm(&c.child);
            wait_exit(&mut c.child, Duration::from_secs(30));
        }
        self.controllers[index] = start_controller(&self.dir.path().join(name), &self.store_url);
    }

    /// Flips one byte of the stored chunk `seq` of `recording` in the controller's SQLite
    /// files, wherever the recordings store keeps it (found by its columns: a `seq` and a
    /// blob); returns what was edited.
    pub(crate) fn tamper_stored_chunk(&self, recording: &str, seq: u64) -> String {
        let out = Command::new("python3")
            .arg("-c")
            .arg(TAMPER_SQLITE)
            .arg(self.dir.path().join("a"))
            .arg(recording)
            .arg(seq.to_string())
            .output()
            .expect("python3");
        assert!(out.status.success(), "editing the store: {}", said(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

fn start_controller(dir: &Path, url: &str) -> Controller {
    Controller::start_policy(&Place::host(), dir, url, policy_fixture(), "", "")
}

/// Edits a stored chunk in SQLite: argv DIR RECORDING SEQ. Looks through every database file
/// under DIR for a table with a `seq` column and a blob column, takes the row of RECORDING
/// (a text column equal to it) at SEQ, and flips a byte in the middle of its largest blob.
const TAMPER_SQLITE: &str = r#"
import glob, os, sqlite3, sys
root, rid, seq = sys.argv[1], sys.argv[2], int(sys.argv[3])
files = [f for f in glob.glob(os.path.join(root, '**', '*'), recursive=True)
         if os.path.isfile(f) and not f.endswith(('-wal', '-shm', '-journal'))]
for f in sorted(files):
    with open(f, 'rb') as h:
        if h.read(16) != b'SQLite format 3\x00':
            continue
    con = sqlite3.connect(f, timeout=30)
    tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
    for t in tables:
        cols = [r[1] for r in con.execute(f'pragma table_info("{t}")')]
        if 'seq' not in cols:
            continue
        for (rowid,) in con.execute(f'select rowid from "{t}" where seq = ?', (seq,)).fetchall():
            row = con.execute(f'select * from "{t}" where rowid = ?', (rowid,)).fetchone()
            if rid not in [v for v in row if isinstance(v, str)]:
                continue
            blobs = [(len(v), c) for c, v in zip(cols, row) if isinstance(v, bytes)]
            if not blobs:
                continue
            _, col = max(blobs)
            data = bytearray(row[cols.index(col)])
            data[len(data) // 2] ^= 0x01
            con.execute(f'update "{t}" set "{col}" = ? where rowid = ?', (bytes(data), rowid))
            con.commit()
            print(f'{os.path.basename(f)} {t}.{col} seq {seq} byte {len(data) // 2} of {len(data)}')
            sys.exit(0)
sys.exit(f'no stored chunk {seq} of {rid} under {root}')
"#;

/// What a process printed, both streams.
pub(crate) fn said(out: &Output) -> String {
    format!(
        "({}) {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn summary(events: &[Value]) -> String {
    events
        .iter()
        .map(|e| format!("{} {}", e["type"], e["details"]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A bundle file, parsed.
pub(crate) fn read_bundle(path: &Path) -> Bundle {
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The chunks of a bundle, decoded (every one must be readable).
pub(crate) fn bundle_chunks(bundle: &Bundle) -> Vec<Chunk> {
    bundle
        .chunks
        .iter()
        .map(|c| {
            let data = c
                .data
                .as_deref()
                .unwrap_or_else(|| panic!("chunk {} unreadable: {:?}", c.seq, c.unreadable));
            Chunk::decode(data).unwrap()
        })
        .collect()
}

/// The structured events (exec, exit status, sftp, forwards) of a bundle, in order.
pub(crate) fn bundle_events(bundle: &Bundle) -> Vec<Value> {
    bundle_chunks(bundle)
        .iter()
        .filter(|c| c.header.kind == ChunkKind::Events)
        .flat_map(|c| c.body.lines().map(str::to_owned).collect::<Vec<_>>())
        .map(|l| serde_json::from_str(&l).unwrap())
        .collect()
}

/// Everything the pty channels of a bundle showed (the `o` events' text), in order.
pub(crate) fn bundle_output(bundle: &Bundle) -> String {
    let mut out = String::new();
    for chunk in bundle_chunks(bundle) {
        if chunk.header.kind != ChunkKind::Asciicast {
            continue;
        }
        for line in chunk.body.lines() {
            if let Ok(Value::Array(event)) = serde_json::from_str::<Value>(line) {
                if event.get(1).and_then(Value::as_str) == Some("o") {
                    out.push_str(event.get(2).and_then(Value::as_str).unwrap_or_default());
                }
            }
        }
    }
    out
}
