//! Local users' authentication: argon2id passwords ([`password`]), TOTP ([`totp`]),
//! single-use recovery codes ([`recovery`]), the brute-force back-off ([`backoff`]), the
//! `[auth.local]` section ([`config`]), the rules of a login step ([`login`]) and the TOTP
//! enrolment ticket ([`enrolment`]). The login endpoint (`api/local_login.rs`) and the
//! offline `controller users` commands (`local_users.rs`) call these and do the I/O.
//!
//! Invariants:
//! - Pure: no I/O but the system's random generator (through portcullis-crypto), and no
//!   clock: every rule that depends on time takes `now` (Unix seconds) from its caller.
//! - No secret (password, TOTP secret or code, recovery code) has a `Debug` that shows it,
//!   nor a `Serialize`; each is exposed only where it is used.
//! - Every comparison of a secret with a stored value is constant-time.

pub(crate) mod backoff;
pub(crate) mod config;
pub(crate) mod enrolment;
pub(crate) mod login;
pub(crate) mod password;
pub(crate) mod recovery;
pub(crate) mod totp;
