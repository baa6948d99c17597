//! Wire types shared by the Portcullis controller, worker and CLI.
//!
//! Nothing here does I/O or needs a runtime (the accept loop and the retry schedule the
//! daemons share live in `portcullis-net`). Each module holds one wire surface, or a rule the
//! listeners of several share:
//! - [`access`]: just-in-time access requests, approvals and automation runs (`/v1/requests`).
//! - [`api`]: the controller's HTTPS JSON API (`/v1`).
//! - [`assertion`]: the signed, short-lived assertion a service account exchanges for an API
//!   token.
//! - [`clock`]: where time comes from (the system's clocks, or a test's hand-advanced one).
//! - [`duration`]: durations as the controller's and the worker's config files write them.
//! - [`gateway`]: what the worker's SSH gateway asks the controller for (its host
//!   certificate, a session's upstream credential, a vetted forward) and reports (refused
//!   channels).
//! - [`grant`]: the signed session grant a client presents to a worker.
//! - [`link`]: the framed cluster link between controllers and workers, and the sans-I/O peer
//!   (request ids, requests in flight, deadlines, heartbeats) both ends drive.
//! - [`proxy`]: the handshake a client speaks to a worker's proxy listener.
//! - [`recording`]: session recordings: chained chunks, their events, asciicast, verification.
//! - [`handshakes`]: the count of connections still in their handshake, capped per listener.
//! - [`keys`]: fingerprints and public-key encodings every side computes the same way.
//! - [`step_up`]: step-up authentication bound to one session request.
//! - [`text`]: outside text made safe for logs and terminals (escaping control characters).
//! - [`users`]: local users' logins and administration, and service accounts.
#![forbid(unsafe_code)]

pub mod access;
pub mod api;
pub mod assertion;
pub mod catalog;
pub mod clock;
pub mod duration;
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod grant;
pub mod handshakes;
pub mod keys;
pub mod link;
pub mod proxy;
pub mod pve;
pub mod recording;
pub mod step_up;
pub mod text;
pub mod users;

/// The protocol version spoken on the cluster link and the proxy listener.
pub const PROTOCOL_VERSION: u32 = 1;
