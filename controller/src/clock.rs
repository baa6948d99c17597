//! Where the controller's time comes from: the one [`Clock`] it was started with
//! ([`crate::Options::clock`], the system's by default), held by the [`crate::state::AppState`]
//! and the [`crate::keys::Keyset`] (so the offline admin commands read it too), and handed to
//! pure code as a value (`portcullis_policy::evaluate(.., now)`, `AuthorizeRate::hit(.., now)`).
//! Also the conversions between the API's unsigned times and the store's signed integers.

use std::sync::Arc;

pub(crate) use portcullis_proto::clock::{Clock, SystemClock};

/// The clock the parts of one controller share.
pub type SharedClock = Arc<dyn Clock>;

/// The system's clock, shared.
pub(crate) fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// Converts store integers (i64) to API times (u64), clamping negatives to 0.
pub(crate) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Converts API times to store integers, saturating.
pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
