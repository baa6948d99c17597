//! The pure half of the audit chain: the canonical serialisation, event hashes, signatures
//! and checkpoints. No I/O, no clock: the controller's writer and the verifier in
//! [`crate::verify`] both build on it, so writer and verifier cannot disagree.
//!
//! An event's `hash` is SHA-256 over a domain string and the canonical JSON of the event
//! without its `hash` and `signature` members (so it covers `sequence`, `prev_hash` and
//! `key_id`); `signature` is Ed25519 by the audit key over a second domain string and that
//! hash. The canonical form is chosen by the event's own `schema` member, which the hash
//! covers: schema 3 (written now) is RFC 8785, the JSON Canonicalization Scheme, so that a
//! verifier in any language can use a JCS library; schema 2 is this crate's earlier form
//! ([`canonical_v2`]), kept so that chains written before still verify. Schema 3 events are
//! I-JSON (RFC 7493): [`Signer::seal`] writes integers that a double cannot hold exactly as
//! decimal strings, since JCS, like JavaScript, reads every number as a double.

use std::collections::HashMap;
use std::fmt::Write as _;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use portcullis_crypto::digest::Sha256;
use portcullis_crypto::ed25519::{self, SigningKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The version of the event schema this code writes (docs/audit.md).
pub const SCHEMA: u64 = 3;
/// The predecessor hash of the first chained event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// The `type` of a checkpoint line in a sink or an export.
pub const CHECKPOINT_TYPE: &str = "audit_checkpoint";

/// The domain string of schema 3 event hashes, before the JCS bytes.
pub const EVENT_DOMAIN: &str = "portcullis-audit-event/3\n";
/// The domain string of schema 2 event hashes, before [`canonical_v2`]'s bytes.
const EVENT_DOMAIN_V2: &str = "portcullis-audit-event/2\n";
// The signature and checkpoint messages hold no JSON: they are the same under schemas 2
// and 3, and keep the domain strings they were introduced with.
const SIGNATURE_DOMAIN: &str = "portcullis-audit-signature/2\n";
const CHECKPOINT_DOMAIN: &str = "portcullis-audit-checkpoint/2\n";

/// The largest integer magnitude a double holds exactly (2^53 - 1, I-JSON's limit).
const MAX_EXACT_INTEGER: u64 = (1 << 53) - 1;

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("the audit key {0} is not a usable Ed25519 PKCS#8 key")]
    BadKey(String),
    #[error("it has no numeric `schema`, so its canonical form is unknown")]
    NoSchema,
    #[error(
        "its schema {0} is not one this version knows (2 or 3): verify it with a newer portcullis"
    )]
    UnknownSchema(u64),
    #[error(
        "`{path}` is the integer {value}, which JCS cannot hold exactly (beyond 2^53 - 1): \
         a schema 3 writer puts such numbers in strings"
    )]
    InexactInteger { path: String, value: String },
    #[error("it cannot be written as JCS: {0}")]
    Jcs(String),
}

/// `value` in RFC 8785 canonical form (JCS), the hash input of schema 3 events. Integers
/// beyond what a double holds exactly are refused, as Python's `rfc8785` refuses them:
/// rounding them would hash another value than the one stored.
pub fn canonical(value: &Value) -> Result<Vec<u8>, ChainError> {
    if let Some((path, value)) = first_inexact_integer(value, "") {
        return Err(ChainError::InexactInteger { path, value });
    }
    serde_json_canonicalizer::to_vec(value).map_err(|e| ChainError::Jcs(e.to_string()))
}

fn is_exact(number: &serde_json::Number) -> bool {
    match (number.as_u64(), number.as_i64()) {
        (Some(n), _) => n <= MAX_EXACT_INTEGER,
        (None, Some(n)) => n.unsigned_abs() <= MAX_EXACT_INTEGER,
        // A double already.
        (None, None) => true,
    }
}

/// The path (`details.serial`, `list[2]`) and value of the first integer that a double
/// cannot hold exactly.
fn first_inexact_integer(value: &Value, path: &str) -> Option<(String, String)> {
    match value {
        Value::Number(n) if !is_exact(n) => Some((path.to_owned(), n.to_string())),
        Value::Object(map) => map.iter().find_map(|(key, v)| {
            let inner = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            first_inexact_integer(v, &inner)
        }),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| first_inexact_integer(v, &format!("{path}[{i}]"))),
        _ => None,
    }
}

/// Makes `value` I-JSON: integers that a double cannot hold exactly (random 64-bit SSH
/// certificate serials) become decimal strings.
fn stringify_inexact_integers(value: &mut Value) {
    match value {
        Value::Number(n) if !is_exact(n) => *value = Value::String(n.to_string()),
        Value::Object(map) => map.values_mut().for_each(stringify_inexact_integers),
        Value::Array(items) => items.iter_mut().for_each(stringify_inexact_integers),
        _ => {}
    }
}

/// Schema 2's canonical form, kept to verify events written before schema 3: object
/// members sorted by key in UTF-8 byte order, no whitespace, strings and numbers as
/// serde_json writes them (`10.0`, `-0.0`, integers of any size).
pub fn canonical_v2(value: &Value) -> String {
    let mut out = String::new();
    write_canonical_v2(value, &mut out);
    out
}

fn write_canonical_v2(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_canonical_v2(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical_v2(item, out);
            }
            out.push(']');
        }
        // Scalars: serde_json's own rendering is already unique for a given value.
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

/// The hash an event must carry: over everything but `hash` and `signature`, in the
/// canonical form of the event's `schema`.
pub fn event_hash(event: &Map<String, Value>) -> Result<String, ChainError> {
    let mut covered = event.clone();
    covered.remove("hash");
    covered.remove("signature");
    let schema = covered
        .get("schema")
        .and_then(Value::as_u64)
        .ok_or(ChainError::NoSchema)?;
    let covered = Value::Object(covered);
    let (domain, bytes) = match schema {
        2 => (EVENT_DOMAIN_V2, canonical_v2(&covered).into_bytes()),
        3 => (EVENT_DOMAIN, canonical(&covered)?),
        other => return Err(ChainError::UnknownSchema(other)),
    };
    let digest = Sha256::new()
        .chain(domain.as_bytes())
        .chain(&bytes)
        .finish();
    Ok(hex::encode(digest))
}

fn signature_message(hash: &str) -> Vec<u8> {
    format!("{SIGNATURE_DOMAIN}{hash}").into_bytes()
}

/// The audit signing key: the active `audit` key of the keyset, parsed once.
pub struct Signer {
    key_id: String,
    pair: SigningKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Signer {
    pub fn from_pkcs8(key_id: &str, pkcs8: &[u8]) -> Result<Signer, ChainError> {
        let pair =
            SigningKey::from_pkcs8(pkcs8).map_err(|_| ChainError::BadKey(key_id.to_owned()))?;
        Ok(Signer {
            key_id: key_id.to_owned(),
            pair,
        })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key()
    }

    /// Completes an event that already holds its `schema`, `sequence` and `prev_hash`: sets
    /// `key_id`, `hash` and `signature`, and returns the hash. A schema 3 event is made
    /// I-JSON first (integers a double cannot hold become strings). Fails only for a schema
    /// this version cannot write.
    pub fn seal(&self, event: &mut Map<String, Value>) -> Result<String, ChainError> {
        if event.get("schema").and_then(Value::as_u64) == Some(SCHEMA) {
            event.values_mut().for_each(stringify_inexact_integers);
        }
        event.insert("key_id".into(), Value::String(self.key_id.clone()));
        let hash = event_hash(event)?;
        let signature = self.pair.sign(&signature_message(&hash));
        event.insert("hash".into(), Value::String(hash.clone()));
        event.insert(
            "signature".into(),
            Value::String(STANDARD.encode(signature.as_ref())),
        );
        Ok(hash)
    }

    /// A signed statement that the chain's event `sequence` has hash `hash`.
    pub fn checkpoint(&self, sequence: u64, hash: &str, time: &str) -> Checkpoint {
        let mut checkpoint = Checkpoint {
            kind: CHECKPOINT_TYPE.into(),
            schema: SCHEMA,
            sequence,
            hash: hash.to_owned(),
            time: time.to_owned(),
            key_id: self.key_id.clone(),
            signature: String::new(),
        };
        let signature = self.pair.sign(&checkpoint.message());
        checkpoint.signature = STANDARD.encode(signature.as_ref());
        checkpoint
    }
}

/// A signed (sequence, head hash) pair, shipped to every sink so that cutting off the newest
/// events of the store is detected against the sink's copy. `schema` is the event schema of
/// the writer; the signed message holds no JSON and is the same under schemas 2 and 3, so
/// checkpoints of either verify alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    #[serde(rename = "type")]
    pub kind: String,
    pub schema: u64,
    pub sequence: u64,
    pub hash: String,
    pub time: String,
    pub key_id: String,
    pub signature: String,
}

impl Checkpoint {
    fn message(&self) -> Vec<u8> {
        format!(
            "{CHECKPOINT_DOMAIN}{}\n{}\n{}\n{}",
            self.sequence, self.hash, self.time, self.key_id
        )
        .into_bytes()
    }

    /// Checks the signature against `keys`.
    pub fn verify(&self, keys: &KeyRing) -> bool {
        keys.verify(&self.key_id, &self.message(), &self.signature)
    }
}

/// An audit public key as exports and `GET /v1/audit/export` publish it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyInfo {
    pub id: String,
    pub algorithm: String,
    /// The raw 32-byte Ed25519 key, standard base64.
    pub public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

impl PublicKeyInfo {
    pub fn ed25519(id: &str, raw: &[u8], state: Option<&str>) -> PublicKeyInfo {
        PublicKeyInfo {
            id: id.to_owned(),
            algorithm: "ed25519".into(),
            public_key: STANDARD.encode(raw),
            state: state.map(str::to_owned),
        }
    }

    /// Parses one `--public-key` value: `KEY_ID:BASE64` lines as `portcullis audit keys`
    /// prints them (`KEY_ID:BASE64  # active`), one or several, pasted whole. What follows a
    /// `#` is a comment; blank lines are skipped.
    pub fn parse_flag_lines(text: &str) -> Result<Vec<PublicKeyInfo>, String> {
        let keys = text
            .lines()
            .map(|line| line.split_once('#').map_or(line, |(key, _)| key).trim())
            .filter(|line| !line.is_empty())
            .map(PublicKeyInfo::parse_flag)
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(format!("{text:?} holds no KEY_ID:BASE64"));
        }
        Ok(keys)
    }

    /// Parses `KEY_ID:BASE64`, one key (see [`PublicKeyInfo::parse_flag_lines`]).
    pub fn parse_flag(text: &str) -> Result<PublicKeyInfo, String> {
        let (id, key) = text
            .trim()
            .split_once(':')
            .ok_or_else(|| format!("{text:?} is not KEY_ID:BASE64"))?;
        let raw = STANDARD
            .decode(key.trim())
            .map_err(|e| format!("the key of {id} is not base64: {e}"))?;
        if raw.len() != 32 {
            return Err(format!("the key of {id} is not 32 bytes of Ed25519"));
        }
        Ok(PublicKeyInfo::ed25519(id, &raw, None))
    }
}

/// The public keys a verifier accepts, by key id.
#[derive(Debug, Clone, Default)]
pub struct KeyRing(HashMap<String, Vec<u8>>);

impl KeyRing {
    /// Keys of other algorithms or with bad base64 are left out (their events then fail as
    /// signed by an unknown key).
    pub fn new(keys: &[PublicKeyInfo]) -> KeyRing {
        KeyRing(
            keys.iter()
                .filter(|k| k.algorithm == "ed25519")
                .filter_map(|k| Some((k.id.clone(), STANDARD.decode(&k.public_key).ok()?)))
                .collect(),
        )
    }

    pub fn contains(&self, key_id: &str) -> bool {
        self.0.contains_key(key_id)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn verify(&self, key_id: &str, message: &[u8], signature_b64: &str) -> bool {
        let (Some(key), Ok(signature)) = (self.0.get(key_id), STANDARD.decode(signature_b64))
        else {
            return false;
        };
        ed25519::verify(key, message, &signature).is_ok()
    }

    /// Whether `signature` is `key_id`'s signature of an event with hash `hash`.
    pub fn verify_event(&self, key_id: &str, hash: &str, signature: &str) -> bool {
        self.verify(key_id, &signature_message(hash), signature)
    }
}

/// The columns stored beside each event's body so that `audit list` can filter with an
/// index (`seq`, `id`, `time`, `type`, `actor`, `username`, `session_id`, `target_id`,
/// `decision`, `hash`). They are not signed themselves: the writer derives them from the
/// sealed body with [`IndexColumns::of`], and the verifier derives them again and compares,
/// so an edited column is found like an edited body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexColumns {
    pub seq: u64,
    pub id: String,
    /// Unix seconds of the body's `time`.
    pub time: i64,
    #[serde(rename = "type")]
    pub kind: String,
    /// The actor's user id, or else its source (`worker:<id>`, an address).
    pub actor: Option<String>,
    pub username: Option<String>,
    pub session_id: Option<String>,
    pub target_id: Option<String>,
    pub decision: Option<String>,
    pub hash: Option<String>,
}

impl IndexColumns {
    /// The columns an event's body implies; what is missing or mistyped is named.
    pub fn of(body: &Map<String, Value>) -> Result<IndexColumns, String> {
        let text = |v: Option<&Value>, name: &str| -> Result<Option<String>, String> {
            match v {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(format!("`{name}` is not a string")),
            }
        };
        let required = |name: &str| -> Result<String, String> {
            text(body.get(name), name)?.ok_or_else(|| format!("no `{name}`"))
        };
        let seq = body
            .get("sequence")
            .and_then(Value::as_u64)
            .ok_or("no `sequence`")?;
        let time = required("time")?;
        let unix = humantime::parse_rfc3339_weak(&time)
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_secs()).ok())
            .ok_or_else(|| format!("`time` {time:?} is not an RFC 3339 time"))?;
        let actor = body.get("actor");
        let actor_field = |name: &str| text(actor.and_then(|a| a.get(name)), name);
        Ok(IndexColumns {
            seq,
            id: required("id")?,
            time: unix,
            kind: required("type")?,
            actor: actor_field("user_id")?.or(actor_field("source")?),
            username: actor_field("user")?,
            session_id: text(body.get("session"), "session")?,
            target_id: text(body.get("target"), "target")?,
            decision: text(body.get("decision"), "decision")?,
            hash: text(body.get("hash"), "hash")?,
        })
    }

    /// The first stored column that differs from `expected` (the body's), by column name.
    pub fn first_difference(&self, expected: &IndexColumns) -> Option<&'static str> {
        [
            ("seq", self.seq == expected.seq),
            ("id", self.id == expected.id),
            ("time", self.time == expected.time),
            ("type", self.kind == expected.kind),
            ("actor", self.actor == expected.actor),
            ("username", self.username == expected.username),
            ("session_id", self.session_id == expected.session_id),
            ("target_id", self.target_id == expected.target_id),
            ("decision", self.decision == expected.decision),
            ("hash", self.hash == expected.hash),
        ]
        .into_iter()
        .find(|(_, same)| !same)
        .map(|(column, _)| column)
    }
}

#[cfg(test)]
#[path = "chain_tests.rs"]
mod tests;
