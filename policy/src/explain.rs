//! Helpers for `policy explain`: naming a place by zone, address or VMID, and rendering a
//! decision for people.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::policy::Policy;
use crate::request::{Decision, Outcome};
use crate::ssh::SshMode;
use crate::zones::{locate_addr, locate_vmid};

/// A place named on the command line, resolved to its zone (and microsegment, if known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub zone: String,
    pub microsegment: Option<u32>,
}

/// Resolves `ZONE`, an IP address, or `vmid:N` to a zone.
pub fn locate(policy: &Policy, place: &str) -> Result<Located, String> {
    let place = place.trim();
    if let Some(id) = policy.zone_id(place) {
        return Ok(Located {
            zone: policy.zone_name(id).to_owned(),
            microsegment: None,
        });
    }
    let found = if let Some(vmid) = place.strip_prefix("vmid:") {
        let vmid: u32 = vmid
            .trim()
            .parse()
            .map_err(|_| format!("`{place}`: a VMID is a number, e.g. vmid:4012"))?;
        locate_vmid(policy, vmid).ok_or_else(|| format!("VMID {vmid} is in no zone"))?
    } else if let Ok(ip) = place.parse::<IpAddr>() {
        locate_addr(policy, ip).ok_or_else(|| format!("the address {ip} is in no zone"))?
    } else {
        let zones: Vec<&str> = policy.zone_names().collect();
        return Err(format!(
            "`{place}` is not a zone, an IP address or vmid:N; zones are: {}",
            zones.join(", ")
        ));
    };
    Ok(Located {
        zone: policy.zone_name(found.zone).to_owned(),
        microsegment: found.microsegment,
    })
}

/// A decision in words: the outcome and reason, then the cells and rules that decided.
pub fn render(decision: &Decision) -> String {
    let mut out = String::new();
    let verb = match decision.outcome {
        Outcome::Allow => "ALLOW",
        Outcome::Deny => "DENY",
    };
    let _ = writeln!(out, "{verb}: {}", decision.reason);
    let dash = "-".to_owned();
    let _ = writeln!(
        out,
        "  from {} to {}, service {}",
        decision.source_zone.as_ref().unwrap_or(&dash),
        decision.target_zone.as_ref().unwrap_or(&dash),
        decision.service.as_ref().unwrap_or(&dash),
    );
    for cell in &decision.cells {
        let _ = writeln!(out, "  checked: {cell}");
    }
    if decision.outcome == Outcome::Allow {
        let c = &decision.constraints;
        let secs = c
            .max_session_secs
            .map_or("no limit".to_owned(), |s| format!("{s} s"));
        let conns = c
            .connection_limit
            .map_or("no limit".to_owned(), |n| n.to_string());
        let _ = writeln!(out, "  max session: {secs}; connections: {conns}");
        if !c.logins.is_empty() {
            let _ = writeln!(out, "  logins: {}", c.logins.join(", "));
        }
        let channels = c.ssh.rights.describe();
        let _ = match c.ssh.mode {
            SshMode::Gateway => writeln!(out, "  ssh: gateway mode, channels: {channels}"),
            SshMode::Certificate => writeln!(
                out,
                "  ssh: certificate mode (OpenSSH end to end); in gateway mode, channels: {channels}"
            ),
        };
        let _ = writeln!(out, "  recording: {}", c.recording.describe());
        if let Some(p) = &decision.proxmox {
            let _ = writeln!(
                out,
                "  proxmox: the token is {}@<realm from the controller's config>, with {} on {}",
                p.user,
                p.roles.join(", "),
                p.paths.join(", ")
            );
        } else if decision.service.as_deref() == Some(crate::proxmox_access::PROXMOX_API_SERVICE) {
            let _ = writeln!(
                out,
                "  proxmox: no granting role names a Proxmox identity: a plain tunnel, no token"
            );
        }
    }
    if let Some(step_up) = &decision.step_up {
        let mut wanted = Vec::new();
        if !step_up.amr.is_empty() {
            wanted.push(format!("amr {}", step_up.amr.join("|")));
        }
        if !step_up.acr.is_empty() {
            wanted.push(format!("acr {}", step_up.acr.join("|")));
        }
        let _ = writeln!(
            out,
            "  step-up: a fresh login with {} lets role {} grant it (`portcullis connect` asks \
             for one)",
            wanted.join(" or "),
            step_up.role
        );
    }
    let _ = writeln!(out, "  policy sha256: {}", decision.policy_hash);
    out
}
