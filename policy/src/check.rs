//! `policy check`: every error and warning of a policy file, with its line.

use crate::diagnostic::CheckReport;

/// Checks a policy file without keeping the result. Errors make the file unusable (unknown
/// zones or services, overlapping VMID ranges, CIDRs in two zones, a role granting what the
/// matrix forbids, bad templates); warnings point at rules that never match and zones with
/// no address selector.
pub fn check(text: &str) -> CheckReport {
    crate::compile::compile(text).1
}
