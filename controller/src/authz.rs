//! Identity, permissions and session requests: the bridge between stored rows and the pure
//! policy crate.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use portcullis_policy::{Identity, Permission, Policy, Request, TargetFacts};

use crate::store::targets::TargetRecord;
use crate::store::users::UserRecord;

/// The policy's question for a brokered session of `user` from `source` to `target`, whose
/// address resolved to `endpoint` (asked at authorisation and again at every policy reload).
pub(crate) fn session_request(
    source: IpAddr,
    user: &UserRecord,
    target: &TargetRecord,
    endpoint: SocketAddr,
) -> Request {
    Request {
        source,
        target: TargetFacts {
            ip: endpoint.ip(),
            port: endpoint.port(),
            vmid: target.vmid,
            tags: target.tags.clone(),
            pool: target.pool.clone(),
            declared_zone: target.zone.clone(),
            service: target.service.clone(),
        },
        identity: identity(user),
        via_broker: true,
    }
}

/// The policy's question for a forward a gateway session of `user` from `source` asked for
/// (`ssh -L`) to `endpoint`, the address the controller resolved: a destination that is no
/// registered target, so the address alone places it (its zone by CIDR, its service by port).
pub(crate) fn forward_request(source: IpAddr, user: &UserRecord, endpoint: SocketAddr) -> Request {
    Request {
        source,
        target: TargetFacts {
            ip: endpoint.ip(),
            port: endpoint.port(),
            vmid: None,
            tags: Vec::new(),
            pool: None,
            declared_zone: None,
            service: None,
        },
        identity: identity(user),
        via_broker: true,
    }
}

/// The policy's view of a stored user.
pub(crate) fn identity(user: &UserRecord) -> Identity {
    Identity {
        subject: user.subject.clone(),
        preferred_username: Some(user.username.clone()),
        email: user.email.clone(),
        groups: user.groups.clone(),
        amr: user.amr.clone(),
        acr: user.acr.clone(),
        auth_time: user.auth_time.and_then(|t| u64::try_from(t).ok()),
        granted_roles: Vec::new(),
    }
}

/// The controller permissions a user holds under `policy`; none without a policy.
pub(crate) fn permissions(policy: Option<&Policy>, user: &UserRecord) -> BTreeSet<Permission> {
    match policy {
        Some(policy) => portcullis_policy::permissions(policy, &identity(user)),
        None => BTreeSet::new(),
    }
}
