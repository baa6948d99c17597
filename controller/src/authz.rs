//! Identity and permissions: the bridge between stored users and the pure policy crate.

use std::collections::BTreeSet;

use portcullis_policy::{Identity, Permission, Policy};

use crate::store::users::UserRecord;

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
    }
}

/// The controller permissions a user holds under `policy`; none without a policy.
pub(crate) fn permissions(policy: Option<&Policy>, user: &UserRecord) -> BTreeSet<Permission> {
    match policy {
        Some(policy) => portcullis_policy::permissions(policy, &identity(user)),
        None => BTreeSet::new(),
    }
}
