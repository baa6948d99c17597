//! The tracker on hand-built sessions (whole, split at every byte, byte by byte), its
//! bounds, random input, and (with `real-peers`) OpenSSH's sftp and scp against a real
//! sftp-server.

use portcullis_proto::recording::SftpOp;
use proptest::prelude::*;

use super::fuzz::fuzz_run;
use super::packet::{attr, fxp, MAX_HANDLE, STATUS_OK};
use super::*;

#[cfg(feature = "real-peers")]
mod real;

/// Builds a packet's fields.
#[derive(Default, Clone)]
pub(super) struct Fields(Vec<u8>);

impl Fields {
    pub(super) fn u32(mut self, v: u32) -> Fields {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(super) fn u64(mut self, v: u64) -> Fields {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(super) fn string(self, s: impl AsRef<[u8]>) -> Fields {
        let s = s.as_ref();
        let mut f = self.u32(s.len() as u32);
        f.0.extend_from_slice(s);
        f
    }

    /// `ATTRS` with the permissions, when given, and nothing else.
    pub(super) fn mode(self, mode: Option<u32>) -> Fields {
        match mode {
            Some(mode) => self.u32(attr::PERMISSIONS).u32(mode),
            None => self.u32(0),
        }
    }

    /// The packet: length, type, these fields.
    pub(super) fn packet(self, kind: u8) -> Vec<u8> {
        let mut p = ((self.0.len() + 1) as u32).to_be_bytes().to_vec();
        p.push(kind);
        p.extend(self.0);
        p
    }
}

fn id(id: u32) -> Fields {
    Fields::default().u32(id)
}

pub(super) fn init() -> Vec<u8> {
    id(3).packet(fxp::INIT)
}

fn version(v: u32) -> Vec<u8> {
    id(v)
        .string("posix-rename@openssh.com")
        .string("1")
        .packet(fxp::VERSION)
}

pub(super) fn open(n: u32, path: impl AsRef<[u8]>, mode: Option<u32>) -> Vec<u8> {
    id(n).string(path).u32(0x1a).mode(mode).packet(fxp::OPEN)
}

fn handle(n: u32, h: &[u8]) -> Vec<u8> {
    id(n).string(h).packet(fxp::HANDLE)
}

fn read(n: u32, h: &[u8], offset: u64) -> Vec<u8> {
    id(n).string(h).u64(offset).u32(32768).packet(fxp::READ)
}

fn data(n: u32, len: usize) -> Vec<u8> {
    id(n).string(vec![b'd'; len]).packet(fxp::DATA)
}

fn write(n: u32, h: &[u8], offset: u64, len: usize) -> Vec<u8> {
    id(n)
        .string(h)
        .u64(offset)
        .string(vec![b'w'; len])
        .packet(fxp::WRITE)
}

fn close(n: u32, h: &[u8]) -> Vec<u8> {
    id(n).string(h).packet(fxp::CLOSE)
}

pub(super) fn status(n: u32, code: u32) -> Vec<u8> {
    id(n)
        .u32(code)
        .string("message")
        .string("en")
        .packet(fxp::STATUS)
}

fn ok(n: u32) -> Vec<u8> {
    status(n, STATUS_OK)
}

fn rename(n: u32, from: &str, to: &str) -> Vec<u8> {
    id(n).string(from).string(to).packet(fxp::RENAME)
}

pub(super) fn path_packet(kind: u8, n: u32, path: impl AsRef<[u8]>) -> Vec<u8> {
    id(n).string(path).packet(kind)
}

fn with_mode(kind: u8, n: u32, path: &str, mode: Option<u32>) -> Vec<u8> {
    id(n).string(path).mode(mode).packet(kind)
}

const EOF: u32 = 1;
const NO_SUCH_FILE: u32 = 2;
const PERMISSION_DENIED: u32 = 3;
const FAILURE: u32 = 4;

const H0: &[u8] = &[0, 0, 0, 0];
const H1: &[u8] = &[0, 0, 0, 1];

/// One step of a session: what one side sent at once (one packet or several).
type Step = (Side, Vec<u8>);

fn c(bytes: Vec<u8>) -> Step {
    (Side::Client, bytes)
}

fn s(bytes: Vec<u8>) -> Step {
    (Side::Server, bytes)
}

fn cat(packets: impl IntoIterator<Item = Vec<u8>>) -> Vec<u8> {
    packets.into_iter().flatten().collect()
}

fn event(op: SftpOp, path: &str, to: Option<&str>, mode: Option<u32>, bytes: u64) -> Event {
    Event::Sftp {
        op,
        path: path.to_owned(),
        to: to.map(str::to_owned),
        mode,
        bytes,
    }
}

/// A session with every recorded operation, failures, a reused handle and one file left
/// open; and the events it must give.
fn session() -> (Vec<Step>, Vec<Event>) {
    let setstat_owner = id(14)
        .string("/tmp/d")
        .u32(attr::UIDGID)
        .u32(1000)
        .u32(1000)
        .packet(fxp::SETSTAT);
    let fsetstat = id(4)
        .string(H0)
        .u32(attr::PERMISSIONS | attr::ACMODTIME | attr::EXTENDED)
        .u32(0o600)
        .u32(1)
        .u32(2)
        .u32(1)
        .string("name")
        .string("value")
        .packet(fxp::FSETSTAT);
    let steps = vec![
        c(init()),
        s(version(3)),
        c(open(1, "/home/u/up.txt", Some(0o644))),
        s(handle(1, H0)),
        c(cat([write(2, H0, 0, 5000), write(3, H0, 5000, 3000)])),
        s(cat([ok(2), ok(3)])),
        c(fsetstat),
        s(ok(4)),
        c(close(5, H0)),
        s(ok(5)),
        // The same handle again, for another file.
        c(open(6, "/etc/hosts", None)),
        s(handle(6, H0)),
        c(cat([read(7, H0, 0), read(8, H0, 32768)])),
        s(cat([data(7, 1200), status(8, EOF)])),
        c(close(9, H0)),
        s(ok(9)),
        c(rename(10, "/tmp/a", "/tmp/b")),
        s(ok(10)),
        c(id(11)
            .string("posix-rename@openssh.com")
            .string("/tmp/c")
            .string("/tmp/e")
            .packet(fxp::EXTENDED)),
        s(ok(11)),
        c(id(23)
            .string("lsetstat@openssh.com")
            .string("/tmp/link")
            .mode(Some(0o700))
            .packet(fxp::EXTENDED)),
        s(ok(23)),
        c(id(24)
            .string("statvfs@openssh.com")
            .string("/")
            .packet(fxp::EXTENDED)),
        s(id(24).u64(4096).packet(fxp::EXTENDED_REPLY)),
        c(path_packet(fxp::REMOVE, 12, "/etc/shadow")),
        s(status(12, PERMISSION_DENIED)),
        c(with_mode(fxp::MKDIR, 13, "/tmp/d", Some(0o755))),
        s(ok(13)),
        c(setstat_owner),
        s(ok(14)),
        c(path_packet(fxp::RMDIR, 15, "/tmp/d")),
        s(ok(15)),
        c(path_packet(fxp::STAT, 16, "/x")),
        s(id(16).u32(0).packet(fxp::ATTRS)),
        c(open(17, "/nope", None)),
        s(status(17, NO_SUCH_FILE)),
        c(path_packet(fxp::REMOVE, 18, b"/tmp/\xff")),
        s(ok(18)),
        c(open(19, "/var/log/big", None)),
        s(handle(19, H1)),
        c(read(20, H1, 0)),
        s(data(20, 100)),
        c(write(21, H1, 0, 10)),
        s(status(21, FAILURE)),
        c(id(22).string(H1).mode(Some(0o4755)).packet(fxp::FSETSTAT)),
        s(status(22, PERMISSION_DENIED)),
    ];
    let events = vec![
        event(SftpOp::Open, "/home/u/up.txt", None, Some(0o644), 0),
        event(SftpOp::Setstat, "/home/u/up.txt", None, Some(0o600), 0),
        event(SftpOp::Write, "/home/u/up.txt", None, None, 8000),
        event(SftpOp::Open, "/etc/hosts", None, None, 0),
        event(SftpOp::Read, "/etc/hosts", None, None, 1200),
        event(SftpOp::Rename, "/tmp/a", Some("/tmp/b"), None, 0),
        event(SftpOp::Rename, "/tmp/c", Some("/tmp/e"), None, 0),
        event(SftpOp::Setstat, "/tmp/link", None, Some(0o700), 0),
        event(SftpOp::Mkdir, "/tmp/d", None, Some(0o755), 0),
        event(SftpOp::Setstat, "/tmp/d", None, None, 0),
        event(SftpOp::Rmdir, "/tmp/d", None, None, 0),
        event(SftpOp::Remove, "/tmp/\u{fffd}", None, None, 0),
        event(SftpOp::Open, "/var/log/big", None, None, 0),
        // Left open: `finish` gives its bytes.
        event(SftpOp::Read, "/var/log/big", None, None, 100),
    ];
    (steps, events)
}

/// Feeds each step cut where `cuts` says (given the step's index and length); then
/// finishes.
fn run(steps: &[Step], cuts: impl Fn(usize, usize) -> Vec<usize>) -> Vec<Event> {
    let mut tracker = SftpTracker::new();
    let mut events = Vec::new();
    for (at, (side, bytes)) in steps.iter().enumerate() {
        let mut start = 0;
        let mut pieces = Vec::new();
        for end in cuts(at, bytes.len()).into_iter().chain([bytes.len()]) {
            pieces.push(&bytes[start..end]);
            start = end;
        }
        for piece in pieces {
            events.extend(match side {
                Side::Client => tracker.from_client(piece),
                Side::Server => tracker.from_server(piece),
            });
        }
    }
    events.extend(tracker.finish());
    assert_eq!(tracker.gave_up(), None);
    events
}

fn whole(_: usize, _: usize) -> Vec<usize> {
    Vec::new()
}

#[test]
fn a_session_gives_its_operations_with_paths_modes_and_bytes() {
    let (steps, expected) = session();
    assert_eq!(run(&steps, whole), expected);
}

#[test]
fn a_session_split_at_every_byte_gives_the_same_events() {
    let (steps, expected) = session();
    for step in 0..steps.len() {
        for k in 0..=steps[step].1.len() {
            let cut = |at: usize, _| if at == step { vec![k] } else { vec![] };
            assert_eq!(run(&steps, cut), expected, "step {step} cut at {k}");
        }
    }
    let bytewise = run(&steps, |_, len| (1..len).collect());
    assert_eq!(bytewise, expected);
}

#[test]
fn a_whole_direction_in_one_piece_is_read_packet_by_packet() {
    // Requests that do not wait for each other (no handle needed) sent in one piece, then
    // all the answers in one piece.
    let steps = vec![
        c(cat([
            init(),
            with_mode(fxp::MKDIR, 1, "/a", None),
            path_packet(fxp::REMOVE, 2, "/b"),
            path_packet(fxp::RMDIR, 3, "/a"),
        ])),
        s(cat([version(3), ok(1), status(2, NO_SUCH_FILE), ok(3)])),
    ];
    assert_eq!(
        run(&steps, whole),
        vec![
            event(SftpOp::Mkdir, "/a", None, None, 0),
            event(SftpOp::Rmdir, "/a", None, None, 0),
        ]
    );
}

#[test]
fn a_reused_request_id_pairs_answers_first_in_first_out() {
    // A stat and a remove under the same id: the stat's failure must not be read as the
    // remove's answer, nor the remove's success lost.
    let steps = vec![
        c(cat([
            path_packet(fxp::STAT, 5, "/missing"),
            path_packet(fxp::REMOVE, 5, "/victim"),
        ])),
        s(cat([status(5, NO_SUCH_FILE), ok(5)])),
    ];
    assert_eq!(
        run(&steps, whole),
        vec![event(SftpOp::Remove, "/victim", None, None, 0)]
    );
}

#[test]
fn a_type_the_server_does_not_answer_waits_for_nothing() {
    // sftp-server answers no unknown type: a later request with its id gets the answer.
    let steps = vec![
        c(cat([
            path_packet(99, 5, "/x"),
            path_packet(fxp::STATUS, 5, "/x"),
            path_packet(fxp::REMOVE, 5, "/victim"),
        ])),
        s(ok(5)),
    ];
    assert_eq!(
        run(&steps, whole),
        vec![event(SftpOp::Remove, "/victim", None, None, 0)]
    );
}

#[test]
fn handles_never_granted_move_nothing_recorded() {
    let long = vec![7; MAX_HANDLE + 1];
    let steps = vec![
        c(open(1, "/f", None)),
        s(handle(1, H0)),
        // A made-up handle, and one longer than any server grants: the writes fail.
        c(cat([write(2, H1, 0, 10), write(3, &long, 0, 10)])),
        s(cat([status(2, FAILURE), status(3, FAILURE)])),
        c(read(4, H1, 0)),
        s(data(4, 10)),
        c(close(5, H1)),
        s(ok(5)),
    ];
    assert_eq!(
        run(&steps, whole),
        vec![event(SftpOp::Open, "/f", None, None, 0)]
    );
}

#[test]
fn a_close_that_fails_still_ends_the_file_with_its_bytes() {
    // sftp-server forgets the handle whatever close returns.
    let steps = vec![
        c(open(1, "/f", Some(0o600))),
        s(handle(1, H0)),
        c(write(2, H0, 0, 10)),
        s(ok(2)),
        c(close(3, H0)),
        s(status(3, FAILURE)),
        c(with_mode(fxp::MKDIR, 4, "/d", None)),
        s(ok(4)),
    ];
    // The write comes with the close, not at the end of the channel.
    assert_eq!(
        run(&steps, whole),
        vec![
            event(SftpOp::Open, "/f", None, Some(0o600), 0),
            event(SftpOp::Write, "/f", None, None, 10),
            event(SftpOp::Mkdir, "/d", None, None, 0),
        ]
    );
}

#[test]
fn a_path_longer_than_path_max_is_cut() {
    let long = "p".repeat(MAX_PATH + 10);
    let steps = vec![c(path_packet(fxp::REMOVE, 1, &long)), s(ok(1))];
    let cut = format!("{}…", &long[..MAX_PATH]);
    assert_eq!(
        run(&steps, whole),
        vec![event(SftpOp::Remove, &cut, None, None, 0)]
    );
}

#[test]
fn a_write_of_the_largest_packet_is_counted_without_being_kept() {
    let h = H0;
    // The largest packet sftp-server accepts: 256 KiB, its header included.
    let len = MAX_PACKET as usize - (1 + 4 + 4 + h.len() + 8 + 4);
    let big = write(2, h, 0, len);
    assert_eq!(big.len(), 4 + MAX_PACKET as usize);
    let mut tracker = SftpTracker::new();
    tracker.from_client(&open(1, "/f", None));
    tracker.from_server(&handle(1, h));
    for piece in big.chunks(1000) {
        tracker.from_client(piece);
        let State::Tracking(session) = &tracker.state else {
            panic!("gave up: {:?}", tracker.gave_up());
        };
        assert!(session.from_client.kept() <= 300, "the payload is kept");
    }
    tracker.from_server(&ok(2));
    assert_eq!(
        tracker.finish(),
        vec![event(SftpOp::Write, "/f", None, None, len as u64)]
    );
}

/// Feeds the client's bytes and then the server's; the reason the tracker gave up.
fn give_up(client: &[u8], server: &[u8]) -> GaveUp {
    give_up_after(&[c(client.to_vec()), s(server.to_vec())])
}

/// Feeds the steps; the reason the tracker gave up.
fn give_up_after(steps: &[Step]) -> GaveUp {
    let mut tracker = SftpTracker::new();
    for (side, bytes) in steps {
        match side {
            Side::Client => tracker.from_client(bytes),
            Side::Server => tracker.from_server(bytes),
        };
    }
    let Some(why) = tracker.gave_up().cloned() else {
        panic!("the tracker did not give up");
    };
    // Nothing more, whatever comes.
    let (steps, _) = session();
    for (side, bytes) in steps {
        let events = match side {
            Side::Client => tracker.from_client(&bytes),
            Side::Server => tracker.from_server(&bytes),
        };
        assert_eq!(events, vec![]);
    }
    assert_eq!(tracker.finish(), vec![]);
    why
}

#[test]
fn a_packet_longer_than_sftp_server_accepts_stops_the_tracker() {
    let mut long = (MAX_PACKET + 1).to_be_bytes().to_vec();
    long.push(fxp::WRITE);
    assert_eq!(
        give_up(&long, &[]),
        GaveUp::BadLength {
            from: Side::Client,
            len: MAX_PACKET + 1
        }
    );
    assert_eq!(
        give_up(&[], &[0, 0, 0, 0, 0]),
        GaveUp::BadLength {
            from: Side::Server,
            len: 0
        }
    );
}

#[test]
fn a_packet_cut_short_stops_the_tracker() {
    // An open whose attributes end early; a write whose data is longer than its packet.
    let open = id(1)
        .string("/f")
        .u32(0x1a)
        .u32(attr::SIZE)
        .packet(fxp::OPEN);
    let truncated = GaveUp::Truncated {
        from: Side::Client,
        kind: fxp::OPEN,
    };
    assert_eq!(give_up(&open, &[]), truncated);
    let mut lying = write(2, H0, 0, 10);
    lying.truncate(lying.len() - 1);
    lying[3] -= 1;
    assert_eq!(
        give_up(&lying, &[]),
        GaveUp::Truncated {
            from: Side::Client,
            kind: fxp::WRITE
        }
    );
    let status = id(1).packet(fxp::STATUS);
    assert_eq!(
        give_up(&[], &status),
        GaveUp::Truncated {
            from: Side::Server,
            kind: fxp::STATUS
        }
    );
}

#[test]
fn another_version_stops_the_tracker() {
    assert_eq!(give_up(&init(), &version(4)), GaveUp::Version(4));
}

#[test]
fn more_pending_requests_than_the_cap_stop_the_tracker() {
    let stats = |n: u32| cat((0..n).map(|n| path_packet(fxp::STAT, n, "/")));
    let mut tracker = SftpTracker::new();
    tracker.from_client(&stats(MAX_PENDING as u32));
    assert_eq!(tracker.gave_up(), None);
    assert_eq!(
        give_up(&stats(MAX_PENDING as u32 + 1), &[]),
        GaveUp::TooManyPending
    );
}

#[test]
fn more_open_files_than_the_cap_stop_the_tracker() {
    let steps: Vec<Step> = (0..MAX_FILES as u32 + 1)
        .flat_map(|n| [c(open(n, "/f", None)), s(handle(n, &n.to_be_bytes()))])
        .collect();
    assert_eq!(give_up_after(&steps), GaveUp::TooManyFiles);
    let mut tracker = SftpTracker::new();
    for (side, bytes) in &steps[..steps.len() - 2] {
        match side {
            Side::Client => tracker.from_client(bytes),
            Side::Server => tracker.from_server(bytes),
        };
    }
    assert_eq!(tracker.gave_up(), None);
}

#[test]
fn more_path_bytes_held_than_the_cap_stop_the_tracker() {
    let path = "p".repeat(MAX_PATH);
    let opens = (MAX_HELD / MAX_PATH) as u32 + 1;
    let client = cat((0..opens).map(|n| open(n, &path, None)));
    assert_eq!(give_up(&client, &[]), GaveUp::TooMuchHeld);
}

#[test]
fn answered_requests_give_back_what_they_held() {
    // Many more path bytes than the cap over a session, never too many at once.
    let path = "p".repeat(MAX_PATH);
    let mut tracker = SftpTracker::new();
    for n in 0..2 * (MAX_HELD / MAX_PATH) as u32 {
        tracker.from_client(&open(n, &path, None));
        tracker.from_server(&handle(n, H0));
        tracker.from_client(&close(n, H0));
        tracker.from_server(&ok(n));
    }
    assert_eq!(tracker.gave_up(), None);
    let State::Tracking(session) = &tracker.state else {
        panic!("not tracking");
    };
    assert_eq!(session.held, 0);
}

#[test]
fn the_fuzz_input_format_runs_the_session() {
    let (steps, expected) = session();
    let input = fuzz_input(&steps);
    assert_eq!(fuzz_run(&input, usize::MAX), expected);
    fuzz_streams(&input);
}

/// A session in the fuzz target's format (see [`fuzz_streams`]).
fn fuzz_input(steps: &[Step]) -> Vec<u8> {
    let mut input = Vec::new();
    for (side, bytes) in steps {
        for record in bytes.chunks(127) {
            input.push((record.len() as u8) << 1 | u8::from(*side == Side::Server));
            input.extend_from_slice(record);
        }
    }
    input
}

/// Writes the seed corpus of the fuzz target `sftp_tracker`.
#[test]
#[ignore = "writes fuzz/corpus/sftp_tracker"]
fn write_sftp_seeds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/sftp_tracker");
    std::fs::create_dir_all(&dir).unwrap();
    let (steps, _) = session();
    std::fs::write(dir.join("session"), fuzz_input(&steps)).unwrap();
    let opens = vec![
        c(cat([init(), open(1, "/f", Some(0o644))])),
        s(cat([version(3), handle(1, H0)])),
        c(write(2, H0, 0, 300)),
        s(ok(2)),
    ];
    std::fs::write(dir.join("write_left_open"), fuzz_input(&opens)).unwrap();
}

/// A packet a client or server could send, with small ids and handles so that requests
/// and answers meet.
fn any_packet() -> impl Strategy<Value = Step> {
    let n = 0u32..4;
    let h = prop::sample::select(vec![H0.to_vec(), H1.to_vec()]);
    let path = prop::sample::select(vec!["/a", "/b", ""]);
    let mode = prop::option::of(0u32..0o10000);
    prop_oneof![
        (n.clone(), path.clone(), mode.clone()).prop_map(|(n, p, m)| c(open(n, p, m))),
        (n.clone(), h.clone()).prop_map(|(n, h)| c(read(n, &h, 0))),
        (n.clone(), h.clone(), 0usize..300).prop_map(|(n, h, l)| c(write(n, &h, 0, l))),
        (n.clone(), h.clone()).prop_map(|(n, h)| c(close(n, &h))),
        (n.clone(), path.clone(), path.clone()).prop_map(|(n, a, b)| c(rename(n, a, b))),
        (n.clone(), path.clone(), 3u8..=20).prop_map(|(n, p, k)| c(path_packet(k, n, p))),
        (n.clone(), path.clone(), mode).prop_map(|(n, p, m)| c(with_mode(fxp::MKDIR, n, p, m))),
        (n.clone(), h.clone()).prop_map(|(n, h)| s(handle(n, &h))),
        (n.clone(), 0usize..300).prop_map(|(n, l)| s(data(n, l))),
        (n.clone(), 0u32..5).prop_map(|(n, code)| s(status(n, code))),
    ]
}

proptest! {
    #[test]
    fn random_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..4096)) {
        fuzz_streams(&input);
    }

    #[test]
    fn random_sessions_never_panic_and_splits_do_not_matter(
        steps in prop::collection::vec(any_packet(), 0..64),
    ) {
        fuzz_streams(&fuzz_input(&steps));
    }
}
