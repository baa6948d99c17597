//! SFTP version 3 on the wire (draft-ietf-secsh-filexfer-02): a [`Reader`] that cuts one
//! direction's byte stream into packets, whatever the splits it arrives in, and the parsers
//! that turn a packet into the few facts the tracker needs ([`Request`], [`Reply`]).
//!
//! A packet is `uint32 length` (of what follows), `byte type`, then the type's fields;
//! every type but `INIT` and `VERSION` starts with a `uint32` request id. The bulk of a
//! transfer is the payload of `WRITE` (client) and `DATA` (server) packets: the reader keeps
//! only their head (up to the payload's length) and passes over the payload without
//! copying it, so memory stays bounded by the largest non-bulk packet.

use portcullis_proto::recording::SftpOp;

/// The longest packet (its `length` field) OpenSSH's sftp-server and sftp client accept
/// (`SFTP_MAX_MSG_LENGTH`); both end the session on a longer one.
pub(super) const MAX_PACKET: u32 = 256 * 1024;

/// The longest handle a server may grant ("MUST NOT be longer than 256 bytes").
pub(super) const MAX_HANDLE: usize = 256;

/// What a bulk packet keeps after its type: request id, handle (with its length), offset
/// and the payload's length: the most a `WRITE` needs before its data.
const BULK_HEAD: usize = 4 + 4 + MAX_HANDLE + 8 + 4;

/// Packet types (section 3 of the draft), the whole table: the tracker names only some.
#[allow(dead_code)]
pub(super) mod fxp {
    pub(crate) const INIT: u8 = 1;
    pub(crate) const VERSION: u8 = 2;
    pub(crate) const OPEN: u8 = 3;
    pub(crate) const CLOSE: u8 = 4;
    pub(crate) const READ: u8 = 5;
    pub(crate) const WRITE: u8 = 6;
    pub(crate) const LSTAT: u8 = 7;
    pub(crate) const FSTAT: u8 = 8;
    pub(crate) const SETSTAT: u8 = 9;
    pub(crate) const FSETSTAT: u8 = 10;
    pub(crate) const OPENDIR: u8 = 11;
    pub(crate) const READDIR: u8 = 12;
    pub(crate) const REMOVE: u8 = 13;
    pub(crate) const MKDIR: u8 = 14;
    pub(crate) const RMDIR: u8 = 15;
    pub(crate) const REALPATH: u8 = 16;
    pub(crate) const STAT: u8 = 17;
    pub(crate) const RENAME: u8 = 18;
    pub(crate) const READLINK: u8 = 19;
    pub(crate) const SYMLINK: u8 = 20;
    pub(crate) const STATUS: u8 = 101;
    pub(crate) const HANDLE: u8 = 102;
    pub(crate) const DATA: u8 = 103;
    pub(crate) const NAME: u8 = 104;
    pub(crate) const ATTRS: u8 = 105;
    pub(crate) const EXTENDED: u8 = 200;
    pub(crate) const EXTENDED_REPLY: u8 = 201;
}

/// Attribute flags (section 5 of the draft).
pub(super) mod attr {
    pub(crate) const SIZE: u32 = 0x1;
    pub(crate) const UIDGID: u32 = 0x2;
    pub(crate) const PERMISSIONS: u32 = 0x4;
    pub(crate) const ACMODTIME: u32 = 0x8;
    pub(crate) const EXTENDED: u32 = 0x8000_0000;
}

/// `SSH_FX_OK`: the only status that means the request was done.
pub(super) const STATUS_OK: u32 = 0;

/// One packet out of the stream.
#[derive(Debug)]
pub(super) struct Packet<'a> {
    pub(super) kind: u8,
    /// The fields after the type; for a bulk packet only its head.
    pub(super) body: &'a [u8],
    /// The length of everything after the type, payload passed over included.
    pub(super) len: usize,
}

/// A packet's `length` field outside `1..=MAX_PACKET`: the stream cannot be followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BadLength(pub(super) u32);

/// Cuts one direction's stream into packets, across calls.
#[derive(Debug)]
pub(super) struct Reader {
    /// The type whose payload is passed over rather than kept (`WRITE` or `DATA`).
    bulk: u8,
    /// The current packet's bytes so far, length field included.
    kept: Vec<u8>,
    /// How many of the current packet's bytes were passed over.
    passed: usize,
    /// The last call returned the packet in `kept`: the next one starts afresh.
    returned: bool,
}

impl Reader {
    pub(super) fn new(bulk: u8) -> Reader {
        Reader {
            bulk,
            kept: Vec::new(),
            passed: 0,
            returned: false,
        }
    }

    /// The next complete packet, taking what it needs from the front of `data`; `None` when
    /// `data` ran out first (what it held is kept for the next call).
    pub(super) fn next(&mut self, data: &mut &[u8]) -> Result<Option<Packet<'_>>, BadLength> {
        if self.returned {
            self.kept.clear();
            self.passed = 0;
            self.returned = false;
        }
        if !self.fill(5, data) {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.kept[0], self.kept[1], self.kept[2], self.kept[3]]);
        if len == 0 || len > MAX_PACKET {
            return Err(BadLength(len));
        }
        let kind = self.kept[4];
        let total = 4 + len as usize;
        let keep = if kind == self.bulk {
            total.min(5 + BULK_HEAD)
        } else {
            total
        };
        if !self.fill(keep, data) {
            return Ok(None);
        }
        let pass = (total - keep - self.passed).min(data.len());
        *data = &data[pass..];
        self.passed += pass;
        if keep + self.passed < total {
            return Ok(None);
        }
        self.returned = true;
        Ok(Some(Packet {
            kind,
            body: &self.kept[5..],
            len: total - 5,
        }))
    }

    /// How many bytes of the current packet are held.
    #[cfg(test)]
    pub(super) fn kept(&self) -> usize {
        self.kept.len()
    }

    /// Moves bytes from `data` until `kept` holds `want`; whether it does.
    fn fill(&mut self, want: usize, data: &mut &[u8]) -> bool {
        let take = want.saturating_sub(self.kept.len()).min(data.len());
        self.kept.extend_from_slice(&data[..take]);
        *data = &data[take..];
        self.kept.len() >= want
    }
}

/// A packet whose fields end before their lengths say (or before its type's fields do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Truncated;

/// What the tracker needs from a client's packet.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Request<'a> {
    Init,
    Open {
        id: u32,
        path: &'a [u8],
        mode: Option<u32>,
    },
    Close {
        id: u32,
        handle: &'a [u8],
    },
    Read {
        id: u32,
        handle: &'a [u8],
    },
    Write {
        id: u32,
        handle: &'a [u8],
        len: u64,
    },
    /// An operation on paths that is recorded once the server says it was done: rename
    /// (`posix-rename@openssh.com` too), remove, mkdir, rmdir, setstat
    /// (`lsetstat@openssh.com` too).
    Path {
        id: u32,
        op: SftpOp,
        path: &'a [u8],
        to: Option<&'a [u8]>,
        mode: Option<u32>,
    },
    Fsetstat {
        id: u32,
        handle: &'a [u8],
        mode: Option<u32>,
    },
    /// A request the server answers but that is not recorded (stat, readdir, realpath...).
    Other {
        id: u32,
    },
    /// A type sftp-server does not know: it answers nothing.
    Unknown,
}

/// What the tracker needs from a server's packet.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Reply<'a> {
    Version {
        version: u32,
    },
    Status {
        id: u32,
        code: u32,
    },
    Handle {
        id: u32,
        handle: &'a [u8],
    },
    Data {
        id: u32,
        len: u64,
    },
    /// A reply that carries nothing recorded (name, attrs, extended reply).
    Other {
        id: u32,
    },
    Unknown,
}

/// Reads a client's packet.
pub(super) fn request<'a>(packet: &Packet<'a>) -> Result<Request<'a>, Truncated> {
    let mut f = Fields(packet.body);
    let kind = packet.kind;
    if kind == fxp::INIT {
        f.u32()?;
        return Ok(Request::Init);
    }
    if !(fxp::OPEN..=fxp::SYMLINK).contains(&kind) && kind != fxp::EXTENDED {
        return Ok(Request::Unknown);
    }
    let id = f.u32()?;
    let path_op = |op, path, to, mode| Request::Path {
        id,
        op,
        path,
        to,
        mode,
    };
    Ok(match kind {
        fxp::OPEN => {
            let path = f.string()?;
            f.u32()?;
            let mode = f.attrs()?;
            Request::Open { id, path, mode }
        }
        fxp::CLOSE => Request::Close {
            id,
            handle: f.string()?,
        },
        fxp::READ => {
            let handle = f.string()?;
            f.u64()?;
            f.u32()?;
            Request::Read { id, handle }
        }
        fxp::WRITE => {
            // The payload was passed over: its length is checked against the packet's.
            let handle_len = f.u32()? as usize;
            if handle_len > MAX_HANDLE {
                // No server granted it: the write fails, and nothing of it is recorded.
                return Ok(Request::Other { id });
            }
            let handle = f.take(handle_len)?;
            f.u64()?;
            let len = f.u32()?;
            let head = packet.body.len() - f.0.len();
            if len as usize > packet.len - head {
                return Err(Truncated);
            }
            Request::Write {
                id,
                handle,
                len: u64::from(len),
            }
        }
        fxp::SETSTAT => {
            let path = f.string()?;
            path_op(SftpOp::Setstat, path, None, f.attrs()?)
        }
        fxp::FSETSTAT => {
            let handle = f.string()?;
            let mode = f.attrs()?;
            Request::Fsetstat { id, handle, mode }
        }
        fxp::REMOVE => path_op(SftpOp::Remove, f.string()?, None, None),
        fxp::MKDIR => {
            let path = f.string()?;
            path_op(SftpOp::Mkdir, path, None, f.attrs()?)
        }
        fxp::RMDIR => path_op(SftpOp::Rmdir, f.string()?, None, None),
        fxp::RENAME => {
            let from = f.string()?;
            path_op(SftpOp::Rename, from, Some(f.string()?), None)
        }
        fxp::EXTENDED => match f.string()? {
            b"posix-rename@openssh.com" => {
                let from = f.string()?;
                path_op(SftpOp::Rename, from, Some(f.string()?), None)
            }
            b"lsetstat@openssh.com" => {
                let path = f.string()?;
                path_op(SftpOp::Setstat, path, None, f.attrs()?)
            }
            _ => Request::Other { id },
        },
        // LSTAT, FSTAT, OPENDIR, READDIR, REALPATH, STAT, READLINK, SYMLINK: each has at
        // least one string; sftp-server ends the session when it is missing.
        _ => {
            f.string()?;
            Request::Other { id }
        }
    })
}

/// Reads a server's packet.
pub(super) fn reply<'a>(packet: &Packet<'a>) -> Result<Reply<'a>, Truncated> {
    let mut f = Fields(packet.body);
    Ok(match packet.kind {
        fxp::VERSION => Reply::Version { version: f.u32()? },
        fxp::STATUS => {
            let id = f.u32()?;
            // The message and language tag that follow are optional before version 3 and
            // not needed here.
            Reply::Status { id, code: f.u32()? }
        }
        fxp::HANDLE => {
            let id = f.u32()?;
            let handle = f.string()?;
            if handle.len() > MAX_HANDLE {
                return Err(Truncated);
            }
            Reply::Handle { id, handle }
        }
        fxp::DATA => {
            let id = f.u32()?;
            let len = f.u32()?;
            if len as usize > packet.len - 8 {
                return Err(Truncated);
            }
            Reply::Data {
                id,
                len: u64::from(len),
            }
        }
        fxp::NAME | fxp::ATTRS | fxp::EXTENDED_REPLY => Reply::Other { id: f.u32()? },
        _ => Reply::Unknown,
    })
}

/// A cursor over a packet's fields.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Truncated> {
        if n > self.0.len() {
            return Err(Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, Truncated> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, Truncated> {
        Ok(u64::from(self.u32()?) << 32 | u64::from(self.u32()?))
    }

    fn string(&mut self) -> Result<&'a [u8], Truncated> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    /// An `ATTRS` structure; its permissions, when it carries them.
    fn attrs(&mut self) -> Result<Option<u32>, Truncated> {
        let flags = self.u32()?;
        if flags & attr::SIZE != 0 {
            self.u64()?;
        }
        if flags & attr::UIDGID != 0 {
            self.u64()?;
        }
        let mode = if flags & attr::PERMISSIONS != 0 {
            Some(self.u32()?)
        } else {
            None
        };
        if flags & attr::ACMODTIME != 0 {
            self.u64()?;
        }
        if flags & attr::EXTENDED != 0 {
            // Each pair takes at least 8 bytes: a huge count runs out of packet quickly.
            for _ in 0..self.u32()? {
                self.string()?;
                self.string()?;
            }
        }
        Ok(mode)
    }
}
