//! The session lifecycle (`store::sessions::SessionState`): `minting` while Vault credentials
//! are minted, `pending` when authorised, `active` once its first connection is admitted,
//! `terminated` with a reason (`portcullis_proto::link::EndReason`). Every change is a
//! conditional update in the store plus its audit event in one transaction; workers are told
//! afterwards.

pub mod authorize;
pub mod credentials;
pub mod lifecycle;
pub(crate) mod limits;
pub mod live_workers;
pub mod sweeper;
