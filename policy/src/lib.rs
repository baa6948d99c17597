//! The Portcullis policy engine: the zone firewall matrix, the roles that map identity
//! provider groups to what a person may reach, and the decision for each session.
//!
//! # Architecture invariants
//! - Pure: no I/O, no async, no clock. The caller passes the file's text and the time.
//! - Total: [`evaluate`] answers every input, and anything not granted is denied.
//! - Zones come from addresses: the source zone from the client's address, the target
//!   zone from the target's resolved address, checked against its other selectors.
//! - A role never widens the matrix: roles are consulted only after both matrix cells admit.
//! - A Proxmox identity never widens a decision: it is attached to an allowed `proxmox-api`
//!   session, or turns it into a deny (several identities, or a subject that names no valid
//!   Proxmox user). Roles able to grant or change Proxmox access are refused at parse time.
//!
//! See `docs/policy.md` for the file format and the semantics.
#![forbid(unsafe_code)]

pub mod access;
mod check;
mod compile;
mod diagnostic;
pub mod diff;
mod evaluate;
pub mod explain;
pub mod export;
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzzing;
mod model;
mod permission;
mod policy;
mod proxmox_access;
pub mod recording;
mod request;
mod roles;
pub mod ssh;
mod zones;

pub use access::{
    admit_request, may_approve, Admission, ApprovalRefusal, ApproveAsk, BreakGlass, RequestAsk,
    RequestRefusal, Requestable, Scope,
};
pub use check::check;
pub use diagnostic::{CheckReport, Diagnostic, PolicyError};
pub use diff::{diff, simulate, Comparison, PolicyDiff, Reach};
pub use evaluate::{evaluate, evaluate_zones, permissions, ZonedRequest};
pub use model::{Access, GroupMatch, Protocol, Trust};
pub use permission::{Permission, UnknownPermission};
pub use policy::Policy;
pub use proxmox_access::{
    ProxmoxGrant, FORBIDDEN_PRIVILEGES, MAX_USER_NAME_LEN, PROXMOX_API_SERVICE,
};
pub use recording::{Fallback, Recording};
pub use request::{
    Constraints, Decision, Identity, Outcome, Request, StepUp, TargetFacts, SERVICE_ACCOUNT_AMR,
};
pub use ssh::{SshAccess, SshMode, SshRights};
pub use zones::{zone_of_addr, zone_of_target, ZoneError};
