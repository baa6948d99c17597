//! What a caller may reach now (`GET /v1/inventory`, `portcullis inventory --ansible`): each
//! connectable target asked of the policy as authorize-session would ask it. Pure: the
//! policy, the user, the targets, the caller's address and the time are passed in.
//!
//! A target is listed when it is available (no template or stopped guest), has a zone, has
//! an address that is an `IP:PORT` (a name would have to be resolved, and authorisation
//! resolves it again anyway), and the policy allows the caller's session to it from
//! `source`. The listing promises nothing: authorize-session decides again, with the facts
//! of that moment.

use std::net::{IpAddr, SocketAddr};

use portcullis_policy::{Outcome, Policy};
use portcullis_proto::catalog::InventoryHost;

use crate::sessions::plan::is_unroutable;
use crate::store::targets::TargetRecord;
use crate::store::users::UserRecord;

/// The hosts of `targets` that `user`, calling from `source`, may open a session to at `now`.
pub(crate) fn reachable(
    policy: &Policy,
    user: &UserRecord,
    targets: &[TargetRecord],
    source: IpAddr,
    now: u64,
) -> Vec<InventoryHost> {
    targets
        .iter()
        .filter(|t| t.available)
        .filter_map(|t| {
            let zone = t.zone.clone()?;
            let endpoint: SocketAddr = t.address.parse().ok()?;
            if is_unroutable(endpoint.ip()) {
                return None;
            }
            let request = crate::authz::session_request(source, user, t, endpoint);
            let decision = portcullis_policy::evaluate(policy, &request, now);
            (decision.outcome == Outcome::Allow).then(|| host(t, zone))
        })
        .collect()
}

fn host(t: &TargetRecord, zone: String) -> InventoryHost {
    InventoryHost {
        name: t.name.clone(),
        zone,
        service: t.service.clone(),
        address: t.address.clone(),
        tags: t.tags.clone(),
        pool: t.pool.clone(),
        vmid: t.vmid,
        source: super::target_source(t),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.
mod tests {
    use super::*;

    fn user(groups: &[&str]) -> UserRecord {
        UserRecord {
            id: "u1".into(),
            issuer: "https://idp".into(),
            subject: "ada".into(),
            username: "ada".into(),
            email: None,
            name: None,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            amr: vec!["mfa".into()],
            acr: None,
            auth_time: Some(1),
            updated_at: 1,
        }
    }

    fn target(name: &str, address: &str, zone: Option<&str>) -> TargetRecord {
        TargetRecord {
            id: format!("tgt_{name}"),
            name: name.into(),
            address: address.into(),
            zone: zone.map(str::to_owned),
            service: Some("ssh".into()),
            vmid: Some(100),
            tags: vec!["web".into()],
            pool: Some("prod".into()),
            max_session_secs: 3600,
            connection_limit: 0,
            ssh_host_keys: vec![],
            ssh_host_cas: vec![],
            vault_ssh_mount: None,
            vault_ssh_role: None,
            vault_secrets: vec![],
            source: None,
            source_key: None,
            available: true,
            discovered: None,
            proxmox_cluster: None,
            created_at: 1,
            updated_at: 1,
        }
    }

    fn names(hosts: &[InventoryHost]) -> Vec<&str> {
        hosts.iter().map(|h| h.name.as_str()).collect()
    }

    #[test]
    fn only_targets_the_policy_lets_the_caller_reach_now_are_listed() {
        let policy = Policy::parse(crate::catalog::TEST_POLICY).unwrap();
        let stopped = TargetRecord {
            available: false,
            ..target("stopped", "192.0.2.9:22", Some("LAB"))
        };
        let targets = [
            target("web", "192.0.2.5:22", Some("LAB")),
            stopped,
            target("unzoned", "192.0.2.6:22", None),
            target("by-name", "web.lab:22", Some("LAB")),
            target("office", "198.51.100.5:22", Some("OFFICE")),
            // Its declared zone disagrees with its address: authorisation would refuse it.
            target("liar", "198.51.100.6:22", Some("LAB")),
            target("nowhere", "0.0.0.0:22", Some("LAB")),
        ];
        let source: IpAddr = "127.0.0.1".parse().unwrap();
        let hosts = reachable(&policy, &user(&["ops"]), &targets, source, 10);
        assert_eq!(names(&hosts), ["web"]);
        let web = &hosts[0];
        assert_eq!(web.zone, "LAB");
        assert_eq!(web.address, "192.0.2.5:22");
        assert_eq!(web.tags, ["web"]);
        assert_eq!(web.pool.as_deref(), Some("prod"));
        assert_eq!(web.vmid, Some(100));
        // Someone without the role reaches nothing; nor does ops from outside LOCAL.
        assert!(reachable(&policy, &user(&["guests"]), &targets, source, 10).is_empty());
        let outside: IpAddr = "203.0.113.1".parse().unwrap();
        assert!(reachable(&policy, &user(&["ops"]), &targets, outside, 10).is_empty());
    }
}
