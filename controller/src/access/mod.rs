//! Just-in-time access (issue 25; docs/access.md): requests for a requestable role of the
//! policy, their approvals, and runs.
//!
//! `requests` creates and decides requests (each change one audited, conditional update),
//! `ending` ends one with its run and then the sessions under it, `run` the runs `portcullis run` drives,
//! `covering` which approved request opens a session that the standing roles do not (and a
//! run's proof), `sweep` expiry and lost runs, `notify` the best-effort webhook, `view` the
//! API's form, `policy_edge` the questions asked of `portcullis_policy::access`, `config`
//! the `[access]` section, `error` [`error::AccessError`]. The HTTP edge is `api/requests`.

pub(crate) mod config;
pub(crate) mod covering;
pub(crate) mod ending;
pub(crate) mod error;
pub(crate) mod notify;
pub(crate) mod policy_edge;
pub(crate) mod requests;
pub(crate) mod run;
pub(crate) mod sweep;
pub(crate) mod view;
