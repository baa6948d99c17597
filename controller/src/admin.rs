//! Operations the `portcullis` command runs on a controller's store itself, outside the API:
//! the seeding of `portcullis dev` (its target and its login). Each one is an audited
//! transaction like the API's. The offline commands' other operations live beside what they
//! change, re-exported here: `init` (`controller init`), `issue_local_token`,
//! `issue_join_token`, the local users' `add_local_user`, `reset_local_user` and
//! `list_local_users` (with `[auth.local]`'s `PasswordRules`); and the keyset's
//! `rotate` and `retire`. A policy reload is the controller's own (SIGHUP, or the API).

pub use crate::enrolment::issue_join_token;
pub use crate::init::{
    init, Delivery as BootstrapDelivery, InitError, InitRequest, Initialised, KeyOrigin,
};
pub use crate::local_users::{
    add as add_local_user, list as list_local_users, read_password_file, reset as reset_local_user,
    Changed as LocalUserChanged, LocalUserError, LocalUserSummary, PasswordRules, PasswordSource,
    LOCAL_USERS_ISSUER,
};
pub use crate::tokens::{issue_local as issue_local_token, IssueError, Issued, Operator};
pub use portcullis_audit::Actor;

use crate::audit::{event, AuditEvent, Event};
use crate::clock;
use crate::ids::{new_id, secret_hash, IdKind};
use crate::keys::KeyError;
use crate::secret::SecretString;
use crate::state::AppState;
use crate::store::targets::{self as rows, TargetRecord};
use crate::store::users::UserRecord;
use crate::store::StoreError;

/// The issuer of the identities `portcullis dev` logs in.
pub const DEV_ISSUER: &str = "portcullis-dev";

/// Creates (or re-points) the `portcullis dev` target `name` at `address`: zone `LOCAL`,
/// service `name`, tagged `dev`. Returns the target's id.
pub async fn seed_dev_target(
    state: &AppState,
    name: &str,
    address: &str,
) -> Result<String, StoreError> {
    let now = clock::to_i64(state.clock.unix_secs());
    let record = TargetRecord {
        id: new_id(IdKind::Target),
        name: name.to_owned(),
        address: address.to_owned(),
        zone: Some("LOCAL".into()),
        service: Some(name.to_owned()),
        vmid: None,
        tags: vec!["dev".into()],
        pool: None,
        max_session_secs: 8 * 3600,
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
        created_at: now,
        updated_at: now,
    };
    Ok(put_target(state, Actor::system(), record).await?.id)
}

/// The identity `portcullis dev` logs in.
#[derive(Debug, Clone)]
pub struct DevIdentity {
    pub user: String,
    pub groups: Vec<String>,
    pub amr: Vec<String>,
}

/// A token for the dev identity: `previous` when it still authenticates that same identity
/// for at least ten more minutes, else a new login (`login_succeeded`, source 127.0.0.1).
pub async fn dev_login(
    state: &AppState,
    who: &DevIdentity,
    previous: Option<&str>,
) -> Result<SecretString, KeyError> {
    let now = clock::to_i64(state.clock.unix_secs());
    if let Some(token) = previous {
        let mut conn = state.store.conn().await?;
        let found = crate::store::tokens::authenticate(&mut conn, &secret_hash(token), now).await?;
        if let Some((user, _, expires_at)) = found {
            if user.username == who.user
                && user.groups == who.groups
                && user.amr == who.amr
                && expires_at > now + 600
            {
                return Ok(SecretString::from(token.to_owned()));
            }
        }
    }
    let user = UserRecord {
        id: new_id(IdKind::User),
        issuer: DEV_ISSUER.into(),
        subject: who.user.clone(),
        username: who.user.clone(),
        email: None,
        name: None,
        groups: who.groups.clone(),
        amr: who.amr.clone(),
        acr: None,
        auth_time: Some(now),
        updated_at: now,
    };
    let issued = crate::tokens::issue(
        &state.store,
        &state.keys,
        state.config.token_lifetime,
        &user,
        |user, token| crate::tokens::login_succeeded(user, token, "127.0.0.1"),
    )
    .await?;
    Ok(SecretString::from(issued.secret))
}

/// Creates the target `record` describes, or re-points the existing target of that name at
/// `record`'s address (changing nothing else), with `target_created` or `target_updated`.
pub(crate) async fn put_target(
    state: &AppState,
    actor: Actor,
    record: TargetRecord,
) -> Result<TargetRecord, StoreError> {
    let mut tx = state.begin_audited().await?;
    let (stored, event) = match rows::find(tx.read(), &record.name).await? {
        Some(existing) => {
            let changed = TargetRecord {
                address: record.address,
                updated_at: record.updated_at,
                ..existing
            };
            rows::update(tx.write(), &changed).await?;
            let event = target_updated(&changed);
            (changed, event)
        }
        None => {
            rows::insert(tx.write(), &record).await?;
            let event = target_created(&record);
            (record, event)
        }
    };
    tx.commit(AuditEvent::new(actor, event).target(&stored.id))
        .await?;
    Ok(stored)
}

/// The event of a new target.
pub(crate) fn target_created(t: &TargetRecord) -> Event {
    Event::TargetCreated { details: named(t) }
}

/// The event of a changed target.
pub(crate) fn target_updated(t: &TargetRecord) -> Event {
    Event::TargetUpdated { details: named(t) }
}

fn named(t: &TargetRecord) -> event::TargetNamed {
    event::TargetNamed {
        name: t.name.clone(),
        address: t.address.clone(),
    }
}
