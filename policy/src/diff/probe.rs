//! One role's decisions under one policy: a copy of the policy in which a probe identity is
//! a member of that role alone, its MFA requirement set aside (compared as a term instead).

use serde::{Deserialize, Serialize};

use super::{Change, ChangeKind, Verdict};
use crate::evaluate::{evaluate_zones, ZonedRequest};
use crate::model::GroupMatch;
use crate::policy::{Policy, RoleId};
use crate::proxmox_access::ProxmoxGrant;
use crate::request::{Constraints, Decision, Identity, Outcome};
use crate::roles::GroupIndex;

/// The group that makes the probe identity a member of the probed role, and of nothing else.
const PROBE_GROUP: &str = "portcullis-diff-probe";

/// What an allowed session gets: the decision's constraints, the granting role's MFA
/// requirement in words, whether the role is held only through an approved request, and the
/// Proxmox identity of a `proxmox-api` session. Logins are rendered for a user named
/// `USER` (subject `SUBJECT`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terms {
    pub constraints: Constraints,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa: Option<String>,
    pub on_request: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxmox: Option<ProxmoxGrant>,
}

/// A role probed under one policy; `None` inside when the policy has no such role.
pub(super) struct Probe<'a> {
    original: &'a Policy,
    probed: Option<Probed>,
}

struct Probed {
    id: RoleId,
    policy: Policy,
    identity: Identity,
    mfa: Option<String>,
    on_request: bool,
}

impl<'a> Probe<'a> {
    pub(super) fn new(policy: &'a Policy, role: &str) -> Probe<'a> {
        let probed = policy
            .roles
            .iter()
            .position(|r| r.name == role)
            .map(|id| Probed::new(policy, id));
        Probe {
            original: policy,
            probed,
        }
    }

    /// Whether the decision could be an allow: the role exists and grants the service in
    /// the target zone, and both cells (from the source, the broker's leg) admit it. When
    /// this is false the decision is a deny, whatever else it says.
    fn may_allow(&self, src: &str, dst: &str, svc: &str) -> bool {
        let (Some(probed), Some(s), Some(d), Some(&v)) = (
            &self.probed,
            self.original.zone_id(src),
            self.original.zone_id(dst),
            self.original.service_by_name.get(svc),
        ) else {
            return false;
        };
        let p = self.original;
        let grants = p.roles.get(probed.id).is_some_and(|r| {
            r.grants
                .iter()
                .any(|g| g.zones.contains(d) && g.services.contains(v))
        });
        grants && p.cell(s, d).admits(v) && p.cell(p.broker, d).admits(v)
    }

    fn verdict(&self, role: &str, src: &str, dst: &str, svc: &str) -> Verdict {
        let Some(probed) = &self.probed else {
            return Verdict {
                outcome: Outcome::Deny,
                rules: vec![format!("role `{role}`{NOT_IN_POLICY}")],
                terms: None,
            };
        };
        let ask = ZonedRequest {
            source_zone: src,
            source_microsegment: Some(0),
            target_zone: dst,
            target_microsegment: Some(0),
            service: svc,
            port: None,
            identity: &probed.identity,
            via_broker: true,
        };
        let d = evaluate_zones(&probed.policy, &ask, 0);
        let terms = d.is_allowed().then(|| Terms {
            constraints: d.constraints.clone(),
            mfa: probed.mfa.clone(),
            on_request: probed.on_request,
            proxmox: d.proxmox.clone(),
        });
        Verdict {
            outcome: d.outcome,
            rules: rules(d),
            terms,
        }
    }
}

impl Probed {
    fn new(policy: &Policy, id: RoleId) -> Probed {
        let mut copy = policy.clone();
        let mut identity = Identity {
            subject: "SUBJECT".into(),
            preferred_username: Some("USER".into()),
            email: Some("USER@example.invalid".into()),
            ..Identity::default()
        };
        copy.groups = GroupIndex::default();
        let (mut mfa, mut on_request, mut name) = (None, false, String::new());
        if let Some(role) = copy.roles.get_mut(id) {
            mfa = role.constraints.mfa.take().map(|m| m.describe());
            on_request = role.requestable.is_some();
            name.clone_from(&role.name);
        }
        if on_request {
            identity.granted_roles.push(name);
        } else {
            copy.groups.add(id, PROBE_GROUP, GroupMatch::Exact);
            identity.groups.push(PROBE_GROUP.into());
        }
        Probed {
            id,
            policy: copy,
            identity,
            mfa,
            on_request,
        }
    }
}

/// How a verdict names a role its policy lacks.
const NOT_IN_POLICY: &str = " is not in this policy";

/// The decision's cells and role rule, each once (a zone's cell to itself is also the
/// broker's leg); its reason when it names neither.
fn rules(d: Decision) -> Vec<String> {
    let mut rules: Vec<String> = Vec::new();
    for rule in d.cells.into_iter().chain(d.role_rule) {
        if !rules.contains(&rule) {
            rules.push(rule);
        }
    }
    if rules.is_empty() {
        rules.push(d.reason);
    }
    rules
}

/// The change of one decision from `old` to `new`, if its verdict differs.
pub(super) fn compare(
    old: &Probe<'_>,
    new: &Probe<'_>,
    role: &str,
    src: &str,
    dst: &str,
    svc: &str,
) -> Option<Change> {
    compare_at(old, new, role, src, (dst, dst), svc)
}

/// As [`compare`], for a target the old policy places in `dst.0` and the new in `dst.1`.
pub(super) fn compare_at(
    old: &Probe<'_>,
    new: &Probe<'_>,
    role: &str,
    src: &str,
    dst: (&str, &str),
    svc: &str,
) -> Option<Change> {
    if !old.may_allow(src, dst.0, svc) && !new.may_allow(src, dst.1, svc) {
        return None;
    }
    let (a, b) = (
        old.verdict(role, src, dst.0, svc),
        new.verdict(role, src, dst.1, svc),
    );
    let (kind, because) = match (a.outcome, b.outcome) {
        (Outcome::Deny, Outcome::Allow) => (ChangeKind::Allowed, rule_lines(&a, &b)),
        (Outcome::Allow, Outcome::Deny) => (ChangeKind::Denied, rule_lines(&a, &b)),
        (Outcome::Allow, Outcome::Allow) if a.terms != b.terms => {
            let mut lines = term_lines(a.terms.as_ref(), b.terms.as_ref());
            lines.extend(rule_lines(&a, &b));
            (ChangeKind::Changed, lines)
        }
        _ => return None,
    };
    Some(Change {
        role: role.to_owned(),
        source_zone: src.to_owned(),
        target_zone: if dst.1.is_empty() { dst.0 } else { dst.1 }.to_owned(),
        service: svc.to_owned(),
        kind,
        old: a,
        new: b,
        because,
    })
}

/// `- RULE` for each rule only the old decision names, `+ RULE` for each only the new does;
/// for a role only one policy has, that alone is the rule responsible.
fn rule_lines(old: &Verdict, new: &Verdict) -> Vec<String> {
    for (side, sign) in [(old, "-"), (new, "+")] {
        if let Some(missing) = side.rules.iter().find(|r| r.ends_with(NOT_IN_POLICY)) {
            let role = missing.trim_end_matches(NOT_IN_POLICY);
            let what = if sign == "-" { "added" } else { "removed" };
            return vec![format!("{role} {what}")];
        }
    }
    let gone = old.rules.iter().filter(|r| !new.rules.contains(r));
    let came = new.rules.iter().filter(|r| !old.rules.contains(r));
    gone.map(|r| format!("- {r}"))
        .chain(came.map(|r| format!("+ {r}")))
        .collect()
}

/// Each term that differs, as `what: old -> new`.
fn term_lines(old: Option<&Terms>, new: Option<&Terms>) -> Vec<String> {
    let (Some(a), Some(b)) = (old, new) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut line = |what: &str, x: String, y: String| {
        if x != y {
            out.push(format!("{what}: {x} -> {y}"));
        }
    };
    let held = |t: &Terms| {
        if t.on_request {
            "on request"
        } else {
            "standing"
        }
        .to_owned()
    };
    line("held", held(a), held(b));
    let mfa = |t: &Terms| t.mfa.clone().unwrap_or_else(|| "none".into());
    line("mfa", mfa(a), mfa(b));
    let (ca, cb) = (&a.constraints, &b.constraints);
    let limit = |v: Option<u64>| v.map_or_else(|| "none".into(), |s| format!("{s}s"));
    line(
        "max session",
        limit(ca.max_session_secs),
        limit(cb.max_session_secs),
    );
    let count = |v: Option<u32>| v.map_or_else(|| "none".into(), |n| n.to_string());
    line(
        "connection limit",
        count(ca.connection_limit),
        count(cb.connection_limit),
    );
    let logins = |c: &Constraints| format!("[{}]", c.logins.join(", "));
    line("logins", logins(ca), logins(cb));
    line(
        "ssh mode",
        ca.ssh.mode.as_str().into(),
        cb.ssh.mode.as_str().into(),
    );
    let rights = |c: &Constraints| {
        format!(
            "[{}]",
            c.ssh.rights.granted().collect::<Vec<_>>().join(", ")
        )
    };
    line("ssh channels", rights(ca), rights(cb));
    line(
        "recording",
        ca.recording.describe(),
        cb.recording.describe(),
    );
    let proxmox = |t: &Terms| {
        t.proxmox
            .as_ref()
            .map_or_else(|| "none".into(), |p| format!("{p:?}"))
    };
    line("proxmox identity", proxmox(a), proxmox(b));
    out
}
