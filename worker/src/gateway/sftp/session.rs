//! What a tracker knows of a channel it follows: the requests awaiting an answer, the open
//! files with their byte counts, and how each answer turns into events.

use std::collections::{BTreeMap, HashMap, VecDeque};

use portcullis_proto::recording::{Event, SftpOp};

use super::packet::{self, fxp, Reader, Reply, Request, STATUS_OK};
use super::{GaveUp, Side, MAX_FILES, MAX_HELD, MAX_PATH, MAX_PENDING};

/// The only SFTP version the tracker reads.
pub(super) const VERSION: u32 = 3;

/// What a tracker knows of its channel.
#[derive(Debug)]
pub(super) struct Session {
    pub(super) from_client: Reader,
    from_server: Reader,
    /// Requests in the order sent, with their ids.
    pending: VecDeque<(u32, Pending)>,
    /// Open files by the order their handles were granted.
    files: BTreeMap<u64, OpenFile>,
    /// Each granted handle's file.
    handles: HashMap<Vec<u8>, u64>,
    /// How many handles were granted: the key of the last open file.
    granted: u64,
    /// Bytes of paths in `pending` and `files`.
    pub(super) held: usize,
}

/// A request awaiting its answer, with what recording it needs.
#[derive(Debug)]
enum Pending {
    Open {
        path: Path,
        mode: Option<u32>,
    },
    Read {
        file: u64,
    },
    Write {
        file: u64,
        len: u64,
    },
    Close {
        file: u64,
    },
    Path(PathOp),
    Fsetstat {
        file: u64,
        mode: Option<u32>,
    },
    /// Answered, not recorded.
    Other,
}

#[derive(Debug)]
struct PathOp {
    op: SftpOp,
    path: Path,
    to: Option<Path>,
    mode: Option<u32>,
}

#[derive(Debug)]
struct OpenFile {
    handle: Vec<u8>,
    path: Path,
    read: u64,
    written: u64,
}

/// A path as sent, cut at [`MAX_PATH`] bytes.
#[derive(Debug, Clone)]
struct Path {
    bytes: Vec<u8>,
    cut: bool,
}

impl Path {
    fn new(raw: &[u8]) -> Path {
        Path {
            bytes: raw[..raw.len().min(MAX_PATH)].to_vec(),
            cut: raw.len() > MAX_PATH,
        }
    }

    fn text(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.bytes).into_owned();
        if self.cut {
            text.push('…');
        }
        text
    }
}

impl Pending {
    fn held(&self) -> usize {
        match self {
            Pending::Open { path, .. } => path.bytes.len(),
            Pending::Path(op) => {
                op.path.bytes.len() + op.to.as_ref().map_or(0, |to| to.bytes.len())
            }
            _ => 0,
        }
    }
}

impl Session {
    pub(super) fn new() -> Session {
        Session {
            from_client: Reader::new(fxp::WRITE),
            from_server: Reader::new(fxp::DATA),
            pending: VecDeque::new(),
            files: BTreeMap::new(),
            handles: HashMap::new(),
            granted: 0,
            held: 0,
        }
    }

    /// The channel closed: the totals of the files still open, in the order they opened.
    pub(super) fn finish(&mut self, events: &mut Vec<Event>) {
        for file in std::mem::take(&mut self.files).into_values() {
            file.totals(events);
        }
    }

    pub(super) fn feed(
        &mut self,
        side: Side,
        mut data: &[u8],
        events: &mut Vec<Event>,
    ) -> Result<(), GaveUp> {
        loop {
            let reader = match side {
                Side::Client => &mut self.from_client,
                Side::Server => &mut self.from_server,
            };
            let packet = match reader.next(&mut data) {
                Ok(Some(packet)) => packet,
                Ok(None) => return Ok(()),
                Err(bad) => {
                    return Err(GaveUp::BadLength {
                        from: side,
                        len: bad.0,
                    })
                }
            };
            let kind = packet.kind;
            let truncated = |_| GaveUp::Truncated { from: side, kind };
            // The packet borrows its reader: what it says is copied out before the
            // session changes.
            match side {
                Side::Client => {
                    let request = packet::request(&packet).map_err(truncated)?;
                    if let Some((id, pending)) = pending_for(&self.handles, request) {
                        self.push(id, pending)?;
                    }
                }
                Side::Server => {
                    let reply = match packet::reply(&packet).map_err(truncated)? {
                        Reply::Version { version } if version != VERSION => {
                            return Err(GaveUp::Version(version))
                        }
                        Reply::Handle { id, handle } => Answer::Handle {
                            id,
                            handle: handle.to_vec(),
                        },
                        Reply::Status { id, code } => Answer::Status { id, code },
                        Reply::Data { id, len } => Answer::Data { id, len },
                        Reply::Other { id } => Answer::Other { id },
                        Reply::Version { .. } | Reply::Unknown => continue,
                    };
                    self.answer(reply, events)?;
                }
            }
        }
    }

    fn push(&mut self, id: u32, pending: Pending) -> Result<(), GaveUp> {
        if self.pending.len() >= MAX_PENDING {
            return Err(GaveUp::TooManyPending);
        }
        self.hold(pending.held())?;
        self.pending.push_back((id, pending));
        Ok(())
    }

    fn hold(&mut self, bytes: usize) -> Result<(), GaveUp> {
        self.held += bytes;
        if self.held > MAX_HELD {
            return Err(GaveUp::TooMuchHeld);
        }
        Ok(())
    }

    /// The oldest request with this id, no longer pending.
    fn take(&mut self, id: u32) -> Option<Pending> {
        let at = self
            .pending
            .iter()
            .position(|(pending, _)| *pending == id)?;
        let (_, pending) = self.pending.remove(at)?;
        self.held -= pending.held();
        Some(pending)
    }

    fn answer(&mut self, answer: Answer, events: &mut Vec<Event>) -> Result<(), GaveUp> {
        let Some(pending) = self.take(answer.id()) else {
            return Ok(());
        };
        let done = answer.done();
        match (pending, answer) {
            (Pending::Open { path, mode }, Answer::Handle { handle, .. }) => {
                events.push(sftp(SftpOp::Open, &path, None, mode, 0));
                self.open(handle, path)?;
            }
            (Pending::Read { file }, Answer::Data { len, .. }) => {
                if let Some(file) = self.files.get_mut(&file) {
                    file.read = file.read.saturating_add(len);
                }
            }
            (Pending::Write { file, len }, _) if done => {
                if let Some(file) = self.files.get_mut(&file) {
                    file.written = file.written.saturating_add(len);
                }
            }
            // sftp-server forgets the handle whatever the status: so does the tracker.
            (Pending::Close { file }, Answer::Status { .. }) => self.close(file, events),
            (Pending::Path(op), _) if done => {
                events.push(sftp(op.op, &op.path, op.to.as_ref(), op.mode, 0));
            }
            (Pending::Fsetstat { file, mode }, _) if done => {
                if let Some(file) = self.files.get(&file) {
                    events.push(sftp(SftpOp::Setstat, &file.path, None, mode, 0));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn open(&mut self, handle: Vec<u8>, path: Path) -> Result<(), GaveUp> {
        // A server that grants a handle again without its close answered: the old file is
        // gone for it.
        if let Some(old) = self.handles.remove(&handle) {
            if let Some(old) = self.files.remove(&old) {
                self.held -= old.path.bytes.len();
            }
        }
        if self.files.len() >= MAX_FILES {
            return Err(GaveUp::TooManyFiles);
        }
        self.hold(path.bytes.len())?;
        self.granted += 1;
        self.handles.insert(handle.clone(), self.granted);
        self.files.insert(
            self.granted,
            OpenFile {
                handle,
                path,
                read: 0,
                written: 0,
            },
        );
        Ok(())
    }

    fn close(&mut self, file: u64, events: &mut Vec<Event>) {
        if let Some(file) = self.files.remove(&file) {
            self.handles.remove(&file.handle);
            self.held -= file.path.bytes.len();
            file.totals(events);
        }
    }
}

/// A server's reply, copied out of its packet.
#[derive(Debug)]
enum Answer {
    Status { id: u32, code: u32 },
    Handle { id: u32, handle: Vec<u8> },
    Data { id: u32, len: u64 },
    Other { id: u32 },
}

impl Answer {
    /// `SSH_FX_OK`: the request was done.
    fn done(&self) -> bool {
        matches!(self, Answer::Status { code, .. } if *code == STATUS_OK)
    }

    fn id(&self) -> u32 {
        match self {
            Answer::Status { id, .. }
            | Answer::Handle { id, .. }
            | Answer::Data { id, .. }
            | Answer::Other { id } => *id,
        }
    }
}

impl OpenFile {
    /// The file's `read` and `write` events, those that moved bytes.
    fn totals(&self, events: &mut Vec<Event>) {
        for (op, bytes) in [(SftpOp::Read, self.read), (SftpOp::Write, self.written)] {
            if bytes > 0 {
                events.push(sftp(op, &self.path, None, None, bytes));
            }
        }
    }
}

fn sftp(op: SftpOp, path: &Path, to: Option<&Path>, mode: Option<u32>, bytes: u64) -> Event {
    Event::Sftp {
        op,
        path: path.text(),
        to: to.map(Path::text),
        mode,
        bytes,
    }
}

/// What a request leaves to await its answer: `None` for those sftp-server does not answer.
fn pending_for(handles: &HashMap<Vec<u8>, u64>, request: Request<'_>) -> Option<(u32, Pending)> {
    let file = |handle: &[u8]| handles.get(handle).copied();
    Some(match request {
        Request::Init | Request::Unknown => return None,
        Request::Open { id, path, mode } => (
            id,
            Pending::Open {
                path: Path::new(path),
                mode,
            },
        ),
        // A handle the server never granted (a directory's, or made up) reads, writes
        // and closes nothing recorded.
        Request::Read { id, handle } => (
            id,
            file(handle).map_or(Pending::Other, |file| Pending::Read { file }),
        ),
        Request::Write { id, handle, len } => (
            id,
            file(handle).map_or(Pending::Other, |file| Pending::Write { file, len }),
        ),
        Request::Close { id, handle } => (
            id,
            file(handle).map_or(Pending::Other, |file| Pending::Close { file }),
        ),
        Request::Fsetstat { id, handle, mode } => (
            id,
            file(handle).map_or(Pending::Other, |file| Pending::Fsetstat { file, mode }),
        ),
        Request::Path {
            id,
            op,
            path,
            to,
            mode,
        } => (
            id,
            Pending::Path(PathOp {
                op,
                path: Path::new(path),
                to: to.map(Path::new),
                mode,
            }),
        ),
        Request::Other { id } => (id, Pending::Other),
    })
}
