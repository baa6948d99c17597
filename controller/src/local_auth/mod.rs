//! Local users' authentication, the building blocks (first step of local users; nothing calls
//! them yet): argon2id passwords ([`password`]), TOTP ([`totp`]), single-use recovery codes
//! ([`recovery`]), the brute-force back-off ([`backoff`]) and the `[auth.local]` section
//! ([`config`]). The next step stores users, wires the login endpoint and the offline
//! `controller users` commands to these, and audits through the audited path.
//!
//! Invariants:
//! - Pure: no I/O but the system's random generator (through portcullis-crypto), and no
//!   clock: every rule that depends on time takes `now` (Unix seconds) from its caller.
//! - No secret (password, TOTP secret or code, recovery code) has a `Debug` that shows it,
//!   nor a `Serialize`; each is exposed only where it is used.
//! - Every comparison of a secret with a stored value is constant-time.

// The login endpoint and the `controller users` commands (the next step of issue 21) are the
// callers; until they exist, only the unit tests use these modules.
#![allow(dead_code)]

pub(crate) mod backoff;
pub(crate) mod config;
pub(crate) mod password;
pub(crate) mod recovery;
pub(crate) mod totp;
