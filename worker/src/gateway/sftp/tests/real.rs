//! OpenSSH's sftp and scp against a real sftp-server, with the tracker reading the bytes in
//! between as the gateway's relay does: each piece is fed to the tracker before it is passed
//! on, so the tracker sees a request before its answer. No network: the client starts a
//! wrapper (its `-D` or `-S` program) that joins its pipes to two FIFOs, and the test relays
//! between the FIFOs and the sftp-server it started.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;

const SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";

/// How long a client may take to do its whole batch.
const DEADLINE: Duration = Duration::from_secs(30);

/// The bytes of the file sent up and fetched back: several writes and reads of 32 KiB.
const SIZE: usize = 100_000;

/// A temp dir with the server's directory (`remote`), the client's (`local`), the FIFOs and
/// the wrapper.
struct Bench {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    remote: PathBuf,
    local: PathBuf,
    wrapper: PathBuf,
}

fn bench() -> Bench {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap();
    let remote = dir.join("remote");
    let local = dir.join("local");
    std::fs::create_dir(&remote).unwrap();
    std::fs::create_dir(&local).unwrap();
    for fifo in ["c2s", "s2c"] {
        let made = Command::new("mkfifo").arg(dir.join(fifo)).status().unwrap();
        assert!(made.success(), "mkfifo failed");
    }
    let wrapper = dir.join("connect");
    let script = format!(
        "#!/bin/sh\n# Ignores the ssh arguments: the FIFOs are the connection.\ncat <'{0}/s2c' &\nexec cat >'{0}/c2s'\n",
        dir.display()
    );
    std::fs::write(&wrapper, script).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let upload = local.join("up.bin");
    let bytes: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    std::fs::write(&upload, bytes).unwrap();
    std::fs::set_permissions(&upload, std::fs::Permissions::from_mode(0o640)).unwrap();
    Bench {
        _tmp: tmp,
        dir,
        remote,
        local,
        wrapper,
    }
}

/// Runs `client` (which reaches the server through the bench's wrapper) against a fresh
/// sftp-server; the events the tracker gave for what passed.
fn track(bench: &Bench, client: &mut Command) -> Vec<Event> {
    let mut server = Command::new(SFTP_SERVER)
        .current_dir(&bench.remote)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (to_server, from_server) = (server.stdin.take().unwrap(), server.stdout.take().unwrap());
    let tracker = Arc::new(Mutex::new((SftpTracker::new(), Vec::new())));
    let up = {
        let (tracker, c2s) = (tracker.clone(), bench.dir.join("c2s"));
        std::thread::spawn(move || relay_up(&c2s, to_server, &tracker))
    };
    let down = {
        let (tracker, s2c) = (tracker.clone(), bench.dir.join("s2c"));
        std::thread::spawn(move || relay_down(from_server, &s2c, &tracker))
    };
    let mut client = client.stdin(Stdio::null()).spawn().unwrap();
    let status = wait(&mut client);
    // A client that failed before starting the wrapper left the relays opening the FIFOs:
    // an open of the other end lets them through (and changes nothing otherwise).
    for fifo in ["c2s", "s2c"] {
        drop(
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(bench.dir.join(fifo))
                .unwrap(),
        );
    }
    up.join().unwrap();
    wait(&mut server);
    down.join().unwrap();
    assert!(status.success(), "the client failed: {status}");
    let (tracker, events) = &mut *tracker.lock().unwrap();
    events.extend(tracker.finish());
    assert_eq!(tracker.gave_up(), None);
    std::mem::take(events)
}

type Tracked = Mutex<(SftpTracker, Vec<Event>)>;

fn relay_up(c2s: &Path, mut to_server: ChildStdin, tracker: &Tracked) {
    let mut from_client = File::open(c2s).unwrap();
    let mut buf = vec![0; 7000];
    loop {
        let n = from_client.read(&mut buf).unwrap();
        if n == 0 {
            return;
        }
        let (tracker, events) = &mut *tracker.lock().unwrap();
        events.extend(tracker.from_client(&buf[..n]));
        if to_server.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

fn relay_down(mut from_server: ChildStdout, s2c: &Path, tracker: &Tracked) {
    let mut to_client = OpenOptions::new().write(true).open(s2c).unwrap();
    let mut buf = vec![0; 5000];
    loop {
        let n = from_server.read(&mut buf).unwrap();
        if n == 0 {
            return;
        }
        let (tracker, events) = &mut *tracker.lock().unwrap();
        events.extend(tracker.from_server(&buf[..n]));
        if to_client.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// Waits for the child to exit, killing it past the deadline.
fn wait(child: &mut Child) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > DEADLINE {
            child.kill().unwrap();
            panic!("{} did not finish within {DEADLINE:?}", child.id());
        }
        // std's Child has no wait with a deadline: poll its exit within DEADLINE.
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn at(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

#[test]
fn sftp_batch_through_the_tracker_records_what_the_server_did() {
    let bench = bench();
    let batch = bench.dir.join("batch");
    std::fs::write(
        &batch,
        "put local/up.bin up.bin\n\
         chmod 600 up.bin\n\
         get up.bin local/down.bin\n\
         rename up.bin moved.bin\n\
         mkdir d\n\
         -rm missing.bin\n\
         rmdir d\n\
         rm moved.bin\n",
    )
    .unwrap();
    let events = track(
        &bench,
        Command::new("sftp")
            .current_dir(&bench.dir)
            .arg("-D")
            .arg(&bench.wrapper)
            .arg("-b")
            .arg(&batch),
    );
    let r = &bench.remote;
    assert_eq!(
        events,
        vec![
            event(SftpOp::Open, &at(r, "up.bin"), None, Some(0o640), 0),
            event(SftpOp::Write, &at(r, "up.bin"), None, None, SIZE as u64),
            event(SftpOp::Setstat, &at(r, "up.bin"), None, Some(0o600), 0),
            event(SftpOp::Open, &at(r, "up.bin"), None, None, 0),
            event(SftpOp::Read, &at(r, "up.bin"), None, None, SIZE as u64),
            event(
                SftpOp::Rename,
                &at(r, "up.bin"),
                Some(&at(r, "moved.bin")),
                None,
                0
            ),
            event(SftpOp::Mkdir, &at(r, "d"), None, Some(0o777), 0),
            event(SftpOp::Rmdir, &at(r, "d"), None, None, 0),
            event(SftpOp::Remove, &at(r, "moved.bin"), None, None, 0),
        ]
    );
    let down = std::fs::read(bench.local.join("down.bin")).unwrap();
    assert_eq!(down.len(), SIZE, "the file did not make the round trip");
}

#[test]
fn scp_through_the_tracker_records_its_uploads_and_downloads() {
    let bench = bench();
    let scp = |from: &str, to: &str| {
        let mut scp = Command::new("scp");
        scp.current_dir(&bench.dir)
            .args(["-s", "-p", "-S"])
            .arg(&bench.wrapper)
            .args([from, to]);
        scp
    };
    let up = track(&bench, &mut scp("local/up.bin", "target:copy.bin"));
    let down = track(&bench, &mut scp("target:copy.bin", "local/back.bin"));
    // scp sends the paths as given, relative to the server's directory; it sets the file's
    // size (a setstat without permissions) and, with `-p`, its mode and times before it
    // closes it.
    assert_eq!(
        up,
        vec![
            event(SftpOp::Open, "copy.bin", None, Some(0o640), 0),
            event(SftpOp::Setstat, "copy.bin", None, None, 0),
            event(SftpOp::Setstat, "copy.bin", None, Some(0o640), 0),
            event(SftpOp::Write, "copy.bin", None, None, SIZE as u64),
        ]
    );
    assert_eq!(
        down,
        vec![
            event(SftpOp::Open, "copy.bin", None, None, 0),
            event(SftpOp::Read, "copy.bin", None, None, SIZE as u64),
        ]
    );
    let back = std::fs::read(bench.local.join("back.bin")).unwrap();
    assert_eq!(back.len(), SIZE, "the file did not make the round trip");
}
