//! Session recordings end to end (issue 18): real OpenSSH clients through the worker's SSH
//! gateway into a real sshd, in a zone whose policy requires recording
//! (tests/fixtures/policy-recording.toml), with the controller and the worker as separate
//! processes. A terminal driven by tmux replays with `sessions play`; a recording at its cap
//! closes the channel; a killed worker leaves a recording that says incomplete; an edited
//! chunk is caught by `audit verify` and `recordings verify`; a bundle verifies offline;
//! `asciinema` plays an export; hostile escape sequences do not reach the reviewer's
//! terminal; reading another user's recordings needs `recordings:read`; recordings outlive a
//! controller and are served by another sharing the store; exec and sftp are recorded as
//! structured events.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::dev::bin;
use common::gateway::{collect_lines, random_file, remote_dir, Tmux};
use common::recording::{
    bundle_chunks, bundle_events, bundle_output, read_bundle, said, Recorded, Setup, HOST,
};
use common::wait::poll;
use portcullis_proto::recording::{ChannelKind, RecordingInfo, RecordingState};

/// Runs `cmd` to its end, which must come within `limit` (a replay at speed 100 of a
/// seconds-long session takes well under a second); its output.
fn run_within(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || read_all(stdout));
    let err = std::thread::spawn(move || read_all(stderr));
    let status = common::wait::poll_within(limit, || match child.try_wait() {
        Ok(Some(status)) => Ok(status),
        _ => Err(()),
    });
    let Ok(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{cmd:?} did not finish within {limit:?}");
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn read_all(mut pipe: impl std::io::Read) -> Vec<u8> {
    let mut bytes = Vec::new();
    let _ = pipe.read_to_end(&mut bytes);
    bytes
}

/// `sessions play ID --recording R` at speed 100 with idle gaps cut to 0.1 s: what it
/// printed (it must succeed).
fn play(rec: &Recorded, controller: usize, session: &str, recording: &str) -> String {
    let out = run_within(
        rec.cli_on(controller)
            .args(["sessions", "play", session, "--recording", recording])
            .args(["--speed", "100", "--idle-limit", "0.1"])
            .env("TERM", "xterm-256color"),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "sessions play: {}", said(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `recordings verify`'s exit codes (docs/recordings.md): complete, broken or tampered,
/// incomplete.
const COMPLETE: i32 = 0;
const BROKEN: i32 = 1;
const INCOMPLETE: i32 = 11;

/// What `recordings verify FILE --json [ARGS]` found.
struct Verified {
    code: i32,
    /// Its JSON report (null when it printed none).
    report: serde_json::Value,
    said: String,
}

/// Runs `recordings verify FILE --json [ARGS]` as `cmd` (a reviewer's CLI).
fn verify_bundle(cmd: &mut Command, bundle: &Path, args: &[&str]) -> Verified {
    let out = cmd
        .args(["recordings", "verify"])
        .arg(bundle)
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    Verified {
        code: out.status.code().unwrap_or(-1),
        report: serde_json::from_slice(&out.stdout).unwrap_or_default(),
        said: said(&out),
    }
}

/// Asserts that `recordings verify` exited `code` with the report's `state`, naming `what`
/// was verified.
fn assert_verdict(v: &Verified, code: i32, state: &str, what: &str) {
    assert_eq!(v.code, code, "{what}: {}", v.said);
    assert_eq!(v.report["state"], state, "{what}: {}", v.said);
}

/// The only recording of a session whose channels include one of `kind`.
fn with_channel(recordings: &[RecordingInfo], kind: ChannelKind) -> &RecordingInfo {
    let found: Vec<_> = recordings
        .iter()
        .filter(|r| r.channels.iter().any(|c| c.kind == kind))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one recording with a {kind:?} channel: {recordings:?}"
    );
    found[0]
}

/// Runs `ssh -tt TARGET COMMAND` (a pty, so the output is recorded as asciicast); its
/// output, and the session it ran in.
fn pty_command(rec: &Recorded, command: &str) -> (Output, String) {
    let out = rec
        .ssh()
        .args(["-tt", HOST, command])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out, rec.cached_session_id())
}

#[test]
fn an_interactive_terminal_session_replays_with_the_commands_typed_and_the_output_seen() {
    let rec = Recorded::start();
    let tmux = Tmux::start_with(
        &|cmd| rec.client_env(cmd),
        &format!("ssh -F {} -o BatchMode=yes {HOST}", rec.config.display()),
    );
    tmux.type_line("echo typed-$((6*7))");
    tmux.wait_for_text("typed-42", Duration::from_secs(60));
    tmux.type_line("printf 'row-%s\\n' alpha beta gamma");
    tmux.wait_for_text("row-gamma", Duration::from_secs(10));
    tmux.type_line("exit");
    let status = poll(
        "the terminal's ssh to exit",
        Duration::from_secs(30),
        || tmux.exited().ok_or_else(|| tmux.screen()),
    );
    assert_eq!(status, 0, "{}", tmux.screen());
    let session = rec.cached_session_id();

    let recordings = rec.wait_recordings(&session, 1, RecordingState::Complete);
    let recording = with_channel(&recordings, ChannelKind::Pty);
    assert_eq!(recording.verified_up_to, recording.chunks, "{recording:?}");
    let sealed = recording
        .sealed
        .as_ref()
        .expect("the finished head is sealed");
    assert!(sealed.complete, "{recording:?}");
    assert_eq!(sealed.head_hash, recording.head_hash, "{recording:?}");
    // The sealed head is in the audit chain.
    let finished = rec.wait_audited(&session, "recording_finished");
    assert!(
        finished.to_string().contains(&recording.head_hash),
        "{finished}"
    );

    // The replay shows what was typed (the terminal echoed it) and what it printed.
    let shown = play(&rec, 0, &session, &recording.recording_id);
    for text in [
        "echo typed-$((6*7))",
        "typed-42",
        "printf 'row-%s\\n' alpha beta gamma",
        "row-alpha",
        "row-beta",
        "row-gamma",
    ] {
        assert!(shown.contains(text), "the replay lacks {text:?}:\n{shown}");
    }
    // The listing names the channel and the verdict.
    let listing = rec.ok(rec.cli().args(["sessions", "recordings", &session]));
    assert!(
        listing.contains(&recording.recording_id)
            && listing.contains("pty")
            && listing.contains("verified"),
        "{listing}"
    );
}

#[test]
fn asciinema_plays_an_exported_cast() {
    let rec = Recorded::start();
    let (out, session) = pty_command(&rec, "echo cast-$((6*7)); printf 'second-line\\n'");
    assert!(out.status.success(), "{}", said(&out));
    let recordings = rec.wait_recordings(&session, 1, RecordingState::Complete);
    let recording = with_channel(&recordings, ChannelKind::Pty);
    let cast = rec.export(&session, &recording.recording_id, "asciicast");
    let header: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&cast)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["version"], 2, "{header}");
    // asciinema reads the terminal it plays on: give it one.
    for command in [
        format!("asciinema play -s 100 -i 0.1 {}", cast.display()),
        format!("asciinema cat {}", cast.display()),
    ] {
        let out = run_within(
            Command::new("script")
                .args(["-qec", &command, "/dev/null"])
                .env("TERM", "xterm-256color"),
            Duration::from_secs(30),
        );
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{command}: {}", said(&out));
        assert!(
            shown.contains("cast-42") && shown.contains("second-line"),
            "{command}: {shown}"
        );
    }
}

#[test]
fn sessions_watch_follows_a_live_terminal_and_ends_with_it() {
    let rec = Recorded::start();
    let tmux = Tmux::start_with(
        &|cmd| rec.client_env(cmd),
        &format!("ssh -F {} -o BatchMode=yes {HOST}", rec.config.display()),
    );
    tmux.type_line("echo before-$((6*7))");
    tmux.wait_for_text("before-42", Duration::from_secs(60));
    let session = rec.cached_session_id();
    // The live recording is listed once its first chunk is stored (the worker sends what it
    // has every second).
    rec.wait_recordings(&session, 1, RecordingState::Incomplete);
    let mut watch = rec
        .cli()
        .args(["sessions", "watch", &session])
        .env("TERM", "xterm-256color")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let seen = collect_lines(watch.stdout.take().unwrap());
    let errors = collect_lines(watch.stderr.take().unwrap());
    // What the terminal shows next reaches the watcher while the session lives.
    tmux.type_line("echo during-$((6*7))");
    poll(
        "the watcher to show the live output",
        Duration::from_secs(60),
        || {
            let text = seen.lock().unwrap().clone();
            if text.contains("during-42") {
                Ok(())
            } else if let Ok(Some(status)) = watch.try_wait() {
                panic!("watch exited ({status}): {}", errors.lock().unwrap());
            } else {
                Err(text)
            }
        },
    );
    assert!(seen.lock().unwrap().contains("before-42"));
    tmux.type_line("exit");
    let status = poll(
        "watch to end with the recording",
        Duration::from_secs(60),
        || watch.try_wait().unwrap().ok_or("still watching"),
    );
    assert!(status.success(), "{status}: {}", errors.lock().unwrap());
}

#[test]
fn a_required_recording_at_its_cap_closes_the_channel_and_is_audited() {
    let rec = Recorded::start_with(&Setup {
        worker_extra: "[recording]\nmax_bytes = 65536\n",
        ..Setup::default()
    });
    // About 6.9 MB of output through a pty, a hundred times the cap.
    let (out, session) = pty_command(&rec, "seq 1 1000000; echo all-printed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stdout.contains("all-printed"),
        "the channel stayed open past the cap ({}): {stderr}",
        out.status
    );
    assert!(
        stdout.len() < 2 << 20,
        "{} bytes came through",
        stdout.len()
    );
    // ssh says why the channel closed.
    let said_why = format!("{stdout}{stderr}").to_lowercase();
    assert!(
        said_why.contains("recording") && said_why.contains("cap"),
        "ssh printed no reason: {stderr}"
    );
    let failed = rec.wait_audited(&session, "recording_failed");
    let details = failed["details"].to_string();
    assert!(
        details.contains("size_cap") && details.contains("closed_channels"),
        "{failed}"
    );
    // What was recorded stays within the cap.
    let list = rec.try_recordings_on(0, &session).unwrap();
    for r in &list.recordings {
        assert!(r.bytes <= 65536, "{r:?}");
    }
}

#[test]
fn a_worker_killed_mid_session_leaves_a_recording_verified_up_to_its_last_stored_chunk() {
    let mut rec = Recorded::start();
    let mut ssh = rec
        .ssh()
        .args(["-tt", HOST, "seq 1 300000; echo burst-done; exec sleep 600"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = collect_lines(ssh.stdout.take().unwrap());
    let _stderr = collect_lines(ssh.stderr.take().unwrap());
    poll("the burst to be printed", Duration::from_secs(60), || {
        let seen = stdout.lock().unwrap().clone();
        if seen.contains("burst-done") {
            Ok(())
        } else {
            Err(seen.len())
        }
    });
    let session = rec.cached_session_id();
    // Some of the burst (about 2 MB) is stored: several full chunks.
    poll(
        "stored chunks of the live recording",
        Duration::from_secs(60),
        || {
            let list = rec.try_recordings_on(0, &session)?;
            match list.recordings.as_slice() {
                [r] if r.chunks >= 2 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    );
    rec.kill_worker();
    // The client's connection went with the worker.
    poll("ssh to exit", Duration::from_secs(30), || {
        ssh.try_wait().unwrap().ok_or("still running")
    });

    let recordings = rec.wait_recordings(&session, 1, RecordingState::Incomplete);
    let recording = &recordings[0];
    assert!(recording.chunks >= 2, "{recording:?}");
    assert_eq!(recording.verified_up_to, recording.chunks, "{recording:?}");
    assert!(recording.why.is_some(), "{recording:?}");
    // The stored part is the start of what was shown.
    let bundle_file = rec.export(&session, &recording.recording_id, "bundle");
    let bundle = read_bundle(&bundle_file);
    assert_eq!(bundle.chunks.len() as u64, recording.chunks);
    let output = bundle_output(&bundle);
    assert!(
        output.starts_with("1\r\n2\r\n3\r\n"),
        "{:?}",
        &output[..40.min(output.len())]
    );
    // `recordings verify` says incomplete, up to the last stored chunk.
    let v = verify_bundle(&mut rec.cli(), &bundle_file, &[]);
    assert_verdict(
        &v,
        INCOMPLETE,
        "incomplete",
        "the killed worker's recording",
    );
    assert_eq!(v.report["verified_up_to"], recording.chunks, "{}", v.said);
    // The same bundle with an edited chunk is broken: another verdict, another exit code.
    let mut edited = bundle;
    let mut first = bundle_chunks(&edited).remove(0);
    first.body.push(' ');
    edited.chunks[0].data = Some(first.encode().unwrap());
    let broken = rec.tmp.path().join("broken.json");
    std::fs::write(&broken, serde_json::to_vec(&edited).unwrap()).unwrap();
    let v = verify_bundle(&mut rec.cli(), &broken, &[]);
    assert_verdict(&v, BROKEN, "broken", "its first chunk edited");
}

#[test]
fn editing_a_stored_chunk_or_a_bundle_is_detected_by_audit_verify_and_recordings_verify() {
    let rec = Recorded::start();
    // About 600 KB through a pty: three chunks or more.
    let (out, session) = pty_command(&rec, "seq 1 100000");
    assert!(out.status.success(), "{}", said(&out));
    let recordings = rec.wait_recordings(&session, 1, RecordingState::Complete);
    let recording = recordings[0].clone();
    assert!(recording.chunks >= 3, "{recording:?}");
    let rid = recording.recording_id.clone();
    let good = rec.export(&session, &rid, "bundle");
    let v = verify_bundle(&mut rec.cli(), &good, &[]);
    assert_verdict(&v, COMPLETE, "complete", "the untouched bundle");
    // `audit verify` checks recordings for a reviewer who may read them.
    let reviewer = rec.controllers[0].issue_token("rita", &["reviewers"]);
    let audit_verify = || {
        rec.cli()
            .env("PORTCULLIS_TOKEN", &reviewer)
            .args(["audit", "verify"])
            .output()
            .unwrap()
    };
    let out = audit_verify();
    assert!(out.status.success(), "before the edit: {}", said(&out));

    // A bundle edited: one recorded character changed, the chunk re-encoded whole.
    let mut bundle = read_bundle(&good);
    let mut chunks = bundle_chunks(&bundle);
    let body = &chunks[1].body;
    let at = body.find("\\r\\n").expect("output lines in the chunk") - 1;
    let digit = body.as_bytes()[at];
    let other = if digit == b'7' { '8' } else { '7' };
    chunks[1].body.replace_range(at..=at, &other.to_string());
    bundle.chunks[1].data = Some(chunks[1].encode().unwrap());
    let edited = rec.tmp.path().join("edited.json");
    std::fs::write(&edited, serde_json::to_vec(&bundle).unwrap()).unwrap();
    let v = verify_bundle(&mut rec.cli(), &edited, &[]);
    assert_verdict(&v, BROKEN, "broken", "a recorded character changed");
    assert_eq!(v.report["verified_up_to"], 1, "{}", v.said);
    // Its last chunk dropped: short of the head a signed event sealed.
    let mut cut = read_bundle(&good);
    cut.chunks.pop();
    std::fs::write(&edited, serde_json::to_vec(&cut).unwrap()).unwrap();
    let v = verify_bundle(&mut rec.cli(), &edited, &[]);
    assert_verdict(&v, BROKEN, "broken", "the final chunk cut off");
    // An audit event in it altered: its signature no longer holds.
    let mut forged = read_bundle(&good);
    let event = forged
        .audit_events
        .iter_mut()
        .find(|e| e.to_string().contains("recording_finished"))
        .expect("the bundle holds recording_finished");
    assert!(event.to_string().contains(&recording.head_hash), "{event}");
    *event = serde_json::from_str(&event.to_string().replacen(
        &recording.head_hash,
        &"0".repeat(64),
        1,
    ))
    .unwrap();
    std::fs::write(&edited, serde_json::to_vec(&forged).unwrap()).unwrap();
    let v = verify_bundle(&mut rec.cli(), &edited, &[]);
    assert_verdict(&v, BROKEN, "broken", "the sealing event altered");

    // A stored chunk edited behind the controller's back.
    let what = rec.tamper_stored_chunk(&rid, 1);
    eprintln!("edited {what}");
    let out = audit_verify();
    assert!(
        !out.status.success(),
        "audit verify missed {what}: {}",
        said(&out)
    );
    assert!(
        said(&out).contains(&rid),
        "audit verify names the recording: {}",
        said(&out)
    );
    let list = rec.try_recordings_on(0, &session).unwrap();
    assert_eq!(list.recordings[0].state, RecordingState::Broken, "{list:?}");
    assert_eq!(list.recordings[0].verified_up_to, 1, "{list:?}");
    let after = rec.export(&session, &rid, "bundle");
    let v = verify_bundle(&mut rec.cli(), &after, &[]);
    assert_verdict(&v, BROKEN, "broken", "exported after the store was edited");
    assert_eq!(v.report["verified_up_to"], 1, "{}", v.said);
}

#[test]
fn an_exported_bundle_verifies_offline_with_only_the_bundle_and_the_cli() {
    let mut rec = Recorded::start();
    let (out, session) = pty_command(&rec, "echo offline-$((6*7))");
    assert!(out.status.success(), "{}", said(&out));
    let recordings = rec.wait_recordings(&session, 1, RecordingState::Complete);
    let bundle = rec.export(&session, &recordings[0].recording_id, "bundle");
    let keys = rec.ok(rec.cli().args(["audit", "keys"]));
    let key = keys.split_whitespace().next().unwrap().to_owned();
    // No controller to ask.
    rec.kill_worker();
    for c in &mut rec.controllers {
        c.child.kill().unwrap();
        c.child.wait().unwrap();
    }

    // Another machine: a directory with the bundle and the CLI, an empty home.
    let elsewhere = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    std::fs::copy(&bundle, elsewhere.path().join("bundle.json")).unwrap();
    // Copied by `cp`: a copy written by this process would be open for writing in every
    // child another test thread forks meanwhile, and executing it would fail (ETXTBSY).
    let out = Command::new("cp")
        .arg(bin())
        .arg(elsewhere.path().join("portcullis"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", said(&out));
    let offline = || {
        let mut cmd = Command::new(elsewhere.path().join("portcullis"));
        cmd.env_clear()
            .current_dir(elsewhere.path())
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .env("XDG_DATA_HOME", home.path().join("data"))
            .env("XDG_CACHE_HOME", home.path().join("cache"))
            .env("XDG_RUNTIME_DIR", home.path().join("run"))
            .env("PORTCULLIS_LOG", "warn");
        cmd
    };
    let bundle = PathBuf::from("bundle.json");
    let v = verify_bundle(&mut offline(), &bundle, &[]);
    assert_verdict(&v, COMPLETE, "complete", "offline");
    let v = verify_bundle(&mut offline(), &bundle, &["--public-key", &key]);
    assert_verdict(&v, COMPLETE, "complete", "offline, the audit key pinned");
    // Pinned to another key, the bundle's own key is not trusted.
    let (key_id, _) = key.split_once(':').unwrap();
    let wrong = format!("{key_id}:{}", "A".repeat(43) + "=");
    let v = verify_bundle(&mut offline(), &bundle, &["--public-key", &wrong]);
    assert_verdict(&v, BROKEN, "broken", "pinned to a key that did not sign it");
}

#[test]
fn hostile_escape_sequences_in_a_recording_do_not_reach_the_reviewers_terminal() {
    let rec = Recorded::start();
    // A clipboard write (OSC 52), a DCS string, an APC string, a cursor position report
    // request and a device attributes request, each between visible words.
    let (out, session) = pty_command(
        &rec,
        r"printf 'seen-one\033]52;c;cHduZWQ=\007seen-two\033Pq#0;2;0;0;0\033\\seen-three\033_apc-payload\033\\seen-four\033[6nseen-five\033[cseen-six\n'",
    );
    assert!(out.status.success(), "{}", said(&out));
    let recordings = rec.wait_recordings(&session, 1, RecordingState::Complete);
    let recording = with_channel(&recordings, ChannelKind::Pty);
    // The recording holds them as they were printed.
    let bundle = read_bundle(&rec.export(&session, &recording.recording_id, "bundle"));
    let recorded = bundle_output(&bundle);
    for raw in ["\x1b]52;c;", "\x1bPq", "\x1b_apc", "\x1b[6n", "\x1b[c"] {
        assert!(
            recorded.contains(raw),
            "the recording lacks {raw:?}: {recorded:?}"
        );
    }
    let shown = play(&rec, 0, &session, &recording.recording_id);
    for visible in [
        "seen-one",
        "seen-two",
        "seen-three",
        "seen-four",
        "seen-five",
        "seen-six",
    ] {
        assert!(
            shown.contains(visible),
            "the replay lacks {visible}: {shown:?}"
        );
    }
    for hostile in [
        "\x1b]52",
        "\x1bP",
        "\x1b_",
        "\x1b[6n",
        "\x1b[c",
        "cHduZWQ=",
        "apc-payload",
    ] {
        assert!(
            !shown.contains(hostile),
            "the replay passes {hostile:?}: {shown:?}"
        );
    }
}

#[test]
fn reading_another_users_recordings_needs_recordings_read_and_a_refusal_is_audited() {
    let rec = Recorded::start();
    let (out, session) = pty_command(&rec, "echo mine");
    assert!(out.status.success(), "{}", said(&out));
    let recordings = rec.wait_recordings(&session, 1, RecordingState::Complete);
    let rid = &recordings[0].recording_id;
    let c = &rec.controllers[0];
    let paths = [
        format!("/v1/sessions/{session}/recordings"),
        format!("/v1/sessions/{session}/recordings/{rid}/chunks?from=0&limit=10"),
        format!("/v1/sessions/{session}/recordings/{rid}/bundle"),
    ];
    // A user without recordings:read: refused, every time, and audited.
    let mallory = c.issue_token("mallory", &["users"]);
    for path in &paths {
        let (code, text) = c.curl_as(&mallory, "GET", path, None);
        assert_eq!(code, 403, "{path}: {text}");
        assert!(text.contains("recordings:read"), "{path}: {text}");
    }
    common::wait::poll(
        "mallory's refusals in the audit log",
        Duration::from_secs(30),
        || {
            let denied: Vec<_> = rec
                .audit("type=permission_denied")
                .into_iter()
                .filter(|e| e.to_string().contains("mallory"))
                .filter(|e| e.to_string().contains(&session))
                .collect();
            if denied.len() >= paths.len() {
                Ok(())
            } else {
                Err(format!("{denied:?}"))
            }
        },
    );
    // A reviewer with recordings:read, and the session's own user, may; each read is audited.
    let reviewer = c.issue_token("rita", &["reviewers"]);
    for token in [&reviewer, &rec.token] {
        for path in &paths {
            let (code, text) = c.curl_as(token, "GET", path, None);
            assert_eq!(code, 200, "{path}: {text}");
        }
    }
    poll("rita's reads audited", Duration::from_secs(30), || {
        let reads: Vec<_> = rec
            .audit(&format!("session={session}"))
            .into_iter()
            .filter(|e| e["type"] == "recording_read" && e.to_string().contains("rita"))
            .collect();
        if reads.is_empty() {
            Err("none yet")
        } else {
            Ok(())
        }
    });
}

#[test]
fn recordings_survive_a_controller_restart_and_are_served_by_the_other_controller() {
    let mut rec = Recorded::start_with(&Setup {
        postgres: true,
        ..Setup::default()
    });
    let (out, session) = pty_command(&rec, "echo kept-$((6*7))");
    assert!(out.status.success(), "{}", said(&out));
    let on_a = rec.wait_recordings_on(0, &session, 1, RecordingState::Complete);
    let rid = on_a[0].recording_id.clone();
    let on_b = rec.wait_recordings_on(1, &session, 1, RecordingState::Complete);
    assert_eq!(on_b[0].head_hash, on_a[0].head_hash);
    assert_eq!(on_b[0].chunks, on_a[0].chunks);
    assert!(play(&rec, 1, &session, &rid).contains("kept-42"));

    rec.restart_controller(0);
    let after = rec.wait_recordings_on(0, &session, 1, RecordingState::Complete);
    assert_eq!(after[0].head_hash, on_a[0].head_hash);
    assert_eq!(after[0].sealed, on_a[0].sealed);
    assert!(play(&rec, 0, &session, &rid).contains("kept-42"));
}

#[test]
fn an_exec_request_is_recorded_with_its_command_and_exit_status() {
    let rec = Recorded::start();
    let command = "echo exec-out; exit 3";
    let out = rec
        .ssh()
        .args([HOST, command])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", said(&out));
    let session = rec.cached_session_id();
    let recordings = rec.wait_recordings(&session, 1, RecordingState::Complete);
    let recording = with_channel(&recordings, ChannelKind::Exec);
    let channel = recording
        .channels
        .iter()
        .find(|c| c.kind == ChannelKind::Exec)
        .unwrap();
    assert_eq!(channel.command.as_deref(), Some(command), "{recording:?}");
    assert_eq!(channel.exit_status, Some(3), "{recording:?}");
    let bundle = read_bundle(&rec.export(&session, &recording.recording_id, "bundle"));
    let events = bundle_events(&bundle);
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "exec" && e["command"] == command),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "exited" && e["status"] == 3),
        "{events:?}"
    );
}

#[test]
fn sftp_put_and_get_are_recorded_with_their_paths_and_bytes() {
    let rec = Recorded::start();
    let local = tempfile::tempdir().unwrap();
    let remote = remote_dir();
    let len: u64 = 300 * 1024;
    let src = local.path().join("up.bin");
    random_file(&src, len);
    let up = remote.path().join("up.bin");
    let batch = local.path().join("batch");
    std::fs::write(
        &batch,
        format!(
            "put {} {}\nget {} {}\n",
            src.display(),
            up.display(),
            up.display(),
            local.path().join("back.bin").display()
        ),
    )
    .unwrap();
    rec.ok(rec
        .tool("sftp")
        .arg("-F")
        .arg(&rec.config)
        .args(["-o", "BatchMode=yes", "-b"])
        .arg(&batch)
        .arg(HOST));
    let session = rec.cached_session_id();
    let recordings = rec.wait_recordings(&session, 1, RecordingState::Complete);
    let recording = with_channel(&recordings, ChannelKind::Sftp);
    let channel = recording
        .channels
        .iter()
        .find(|c| c.kind == ChannelKind::Sftp)
        .unwrap();
    assert!(channel.bytes >= 2 * len, "{recording:?}");
    let bundle = read_bundle(&rec.export(&session, &recording.recording_id, "bundle"));
    let events = bundle_events(&bundle);
    let path = up.display().to_string();
    let moved = |op: &str| -> u64 {
        events
            .iter()
            .filter(|e| e["event"] == "sftp" && e["op"] == op && e["path"] == path.as_str())
            .map(|e| e["bytes"].as_u64().unwrap_or(0))
            .sum()
    };
    assert_eq!(moved("write"), len, "{events:?}");
    assert_eq!(moved("read"), len, "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "sftp" && e["op"] == "open" && e["path"] == path.as_str()),
        "{events:?}"
    );
}
