//! One chunk of a recording and its canonical encoding.
//!
//! The encoding is a small length-prefixed binary, all integers big-endian, so that a chunk
//! has exactly one byte form and its hash ([`Chunk::hash`], SHA-256 of those bytes) is well
//! defined:
//!
//! ```text
//! magic      4 bytes  "PCR1"
//! kind       u8       0 = asciicast lines, 1 = structured event lines
//! final      u8       0 = more chunks follow, 1 = last chunk, followed by:
//!   bytes    u64        the total body bytes of every chunk of the recording, this one included
//!   events   u64        the total lines of every chunk of the recording, this one included
//! id length  u8       1..=64, then the recording id (ASCII letters, digits, `_`, `-`)
//! seq        u64      0 for the first chunk, then +1
//! prev hash  32 bytes SHA-256 of the previous chunk's encoding; zeros for seq 0
//! channel    u32      the SSH channel the body belongs to
//! body len   u32      then the body: UTF-8, newline-terminated JSON lines
//! ```
//!
//! A whole encoded chunk is at most [`MAX_CHUNK_LEN`] bytes; longer ones are refused on encode
//! and on decode, before the body is read.

use portcullis_crypto::digest::{sha256, SHA256_LEN};

/// The largest encoded chunk: 256 KiB.
pub const MAX_CHUNK_LEN: usize = 256 * 1024;

const MAGIC: &[u8; 4] = b"PCR1";
const MAX_ID_LEN: usize = 64;
/// The largest header: magic, kind, final and its totals, the longest id, seq, hash,
/// channel and body length.
pub(super) const MAX_HEADER_LEN: usize = 4 + 1 + 1 + 16 + 1 + MAX_ID_LEN + 8 + SHA256_LEN + 4 + 4;
/// The largest body any chunk may carry, whatever its header.
pub(super) const MAX_BODY_LEN: usize = MAX_CHUNK_LEN - MAX_HEADER_LEN;

/// What went wrong encoding or decoding a chunk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("the chunk is {len} bytes, more than the {MAX_CHUNK_LEN} a chunk may hold; cut the body into smaller chunks")]
    TooLong { len: usize },
    #[error("the chunk ends early, at byte {at}; it was truncated in storage or transit")]
    Truncated { at: usize },
    #[error("the chunk does not start with the recording magic; it is not a recording chunk")]
    BadMagic,
    #[error("the chunk's {field} byte is {value}, which no version of the format writes")]
    BadValue { field: &'static str, value: u8 },
    #[error("the recording id is not 1 to 64 ASCII letters, digits, '_' or '-'")]
    BadId,
    #[error("the chunk body is not UTF-8 text")]
    BodyNotText,
    #[error("{extra} bytes follow the chunk body; a chunk holds exactly one body")]
    TrailingBytes { extra: usize },
}

/// A recording's id: 1 to 64 ASCII letters, digits, `_` or `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordingId(String);

impl RecordingId {
    pub fn new(id: impl Into<String>) -> Result<Self, ChunkError> {
        let id = id.into();
        let valid = (1..=MAX_ID_LEN).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid {
            Ok(RecordingId(id))
        } else {
            Err(ChunkError::BadId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RecordingId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The SHA-256 of a chunk's canonical bytes; shown as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ChunkHash(pub [u8; SHA256_LEN]);

impl ChunkHash {
    /// What the first chunk of every recording records as its previous hash.
    pub const GENESIS: ChunkHash = ChunkHash([0; SHA256_LEN]);

    pub fn to_hex(&self) -> String {
        self.to_string()
    }
}

impl std::fmt::Display for ChunkHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl std::fmt::Debug for ChunkHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChunkHash({self})")
    }
}

/// How a chunk's body lines read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChunkKind {
    /// asciicast v2 lines of a pty channel: its header line in the channel's first such
    /// chunk, then `[t, "o"|"i"|"r", data]` events.
    Asciicast,
    /// Structured events (exec, exit status, sftp, forwards), one JSON object a line.
    Events,
}

/// The totals the last chunk of a recording carries, checked by [`verify`](fn@super::verify).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordingEnd {
    /// The body bytes of every chunk of the recording.
    pub bytes: u64,
    /// The body lines of every chunk of the recording.
    pub events: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkHeader {
    pub recording_id: RecordingId,
    pub seq: u64,
    pub prev_hash: ChunkHash,
    pub channel: u32,
    pub kind: ChunkKind,
    /// Present on the last chunk only.
    pub end: Option<RecordingEnd>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub header: ChunkHeader,
    /// Newline-terminated JSON lines.
    pub body: String,
}

impl Chunk {
    /// The canonical bytes, refused above [`MAX_CHUNK_LEN`].
    pub fn encode(&self) -> Result<Vec<u8>, ChunkError> {
        let h = &self.header;
        let id = h.recording_id.as_str().as_bytes();
        let len = 4 + 2 + if h.end.is_some() { 16 } else { 0 } + 1 + id.len() + 8 + 32 + 8;
        let len = len + self.body.len();
        if len > MAX_CHUNK_LEN {
            return Err(ChunkError::TooLong { len });
        }
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(MAGIC);
        out.push(match h.kind {
            ChunkKind::Asciicast => 0,
            ChunkKind::Events => 1,
        });
        match h.end {
            None => out.push(0),
            Some(end) => {
                out.push(1);
                out.extend_from_slice(&end.bytes.to_be_bytes());
                out.extend_from_slice(&end.events.to_be_bytes());
            }
        }
        // The id is at most 64 bytes (checked by `RecordingId::new`), and the body fits in
        // MAX_CHUNK_LEN, so neither cast truncates.
        out.push(id.len() as u8);
        out.extend_from_slice(id);
        out.extend_from_slice(&h.seq.to_be_bytes());
        out.extend_from_slice(&h.prev_hash.0);
        out.extend_from_slice(&h.channel.to_be_bytes());
        out.extend_from_slice(&(self.body.len() as u32).to_be_bytes());
        out.extend_from_slice(self.body.as_bytes());
        Ok(out)
    }

    /// The SHA-256 of [`Chunk::encode`]: what the next chunk records as its previous hash.
    pub fn hash(&self) -> Result<ChunkHash, ChunkError> {
        Ok(hash(&self.encode()?))
    }

    /// Parses canonical bytes; whatever decodes re-encodes to the same bytes.
    pub fn decode(bytes: &[u8]) -> Result<Chunk, ChunkError> {
        if bytes.len() > MAX_CHUNK_LEN {
            return Err(ChunkError::TooLong { len: bytes.len() });
        }
        let mut r = Reader { bytes, at: 0 };
        if r.take(4)? != MAGIC {
            return Err(ChunkError::BadMagic);
        }
        let kind = match r.u8()? {
            0 => ChunkKind::Asciicast,
            1 => ChunkKind::Events,
            value => {
                return Err(ChunkError::BadValue {
                    field: "kind",
                    value,
                })
            }
        };
        let end = match r.u8()? {
            0 => None,
            1 => Some(RecordingEnd {
                bytes: r.u64()?,
                events: r.u64()?,
            }),
            value => {
                return Err(ChunkError::BadValue {
                    field: "final",
                    value,
                })
            }
        };
        let id_len = usize::from(r.u8()?);
        let id = std::str::from_utf8(r.take(id_len)?).map_err(|_| ChunkError::BadId)?;
        let recording_id = RecordingId::new(id)?;
        let seq = r.u64()?;
        let mut prev = [0u8; SHA256_LEN];
        prev.copy_from_slice(r.take(SHA256_LEN)?);
        let channel = r.u32()?;
        let body_len = r.u32()? as usize;
        let body = std::str::from_utf8(r.take(body_len)?).map_err(|_| ChunkError::BodyNotText)?;
        let extra = bytes.len() - r.at;
        if extra != 0 {
            return Err(ChunkError::TrailingBytes { extra });
        }
        Ok(Chunk {
            header: ChunkHeader {
                recording_id,
                seq,
                prev_hash: ChunkHash(prev),
                channel,
                kind,
                end,
            },
            body: body.to_owned(),
        })
    }
}

/// The hash of canonical chunk bytes, which is what the next chunk chains to.
pub(super) fn hash(encoded: &[u8]) -> ChunkHash {
    ChunkHash(sha256(encoded))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ChunkError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len());
        let end = end.ok_or(ChunkError::Truncated {
            at: self.bytes.len(),
        })?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, ChunkError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, ChunkError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, ChunkError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }
}
