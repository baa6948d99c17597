//! The session lifecycle (`store::sessions::SessionState`): `minting` while Vault credentials
//! are minted, `pending` when authorised, `active` once its first connection is admitted,
//! `terminated` with a reason (`portcullis_proto::link::EndReason`). Every change is a
//! conditional update in the store plus its audit event in one transaction; workers are told
//! afterwards.
//!
//! Authorising runs one way: `authorize` reads the facts, the pure `plan` decides, `issue`
//! signs and commits, `mint` asks Vault (`credentials`). Ending runs one way too:
//! `lifecycle::end_session` commits the end, then tells the worker (`crate::notify`) and
//! starts the revocations (`credentials`); neither calls back into `lifecycle`. The callers
//! of `end_session` (the API, the link, the `sweeper` with `idle`, the `credential_job`) sit
//! above it.

pub(crate) mod authorize;
pub(crate) mod credential_job;
pub(crate) mod credentials;
pub(crate) mod error;
pub(crate) mod idle;
pub(crate) mod issue;
#[cfg(test)]
mod layering_tests;
pub(crate) mod lifecycle;
pub(crate) mod limits;
pub(crate) mod live_workers;
pub(crate) mod lost;
pub(crate) mod mint;
pub(crate) mod plan;
pub(crate) mod pve;
pub(crate) mod secrets;
pub(crate) mod sweeper;
