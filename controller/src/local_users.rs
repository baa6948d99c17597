//! The offline administration of local users (issue 21, docs/auth.md "Local users"):
//! `portcullis controller users add|reset|list`, run by whoever holds the controller's config
//! and master key. Each change is one audited transaction: the `users` row (written by
//! `users::upsert`, the one path that creates users), its credentials (`store::local_users`)
//! and its event (`local_user_created`, `local_user_reset`) commit together.
//!
//! A password is either read from a file only its owner can read (automation) or generated
//! and returned once, to be replaced at the first login (`must_change_password`). No password
//! reaches a log, an audit event or `Debug`; only its argon2id hash is stored.

use std::path::Path;

use crate::audit::{event, Actor, AuditEvent, AuditedTx, Event};
use crate::clock;
use crate::ids::{new_id, new_short_code, IdKind};
use crate::keys::{KeyError, Keyset};
use crate::local_auth::password::{self, Argon2Params, NewPassword, DEFAULT_MIN_PASSWORD_CHARS};
use crate::secret::{ExposeSecret as _, SecretString};
use crate::store::local_users::{self as rows, LocalUserRecord};
use crate::store::users::{self, UserRecord};
use crate::store::{Store, StoreError};
use crate::tokens::{valid_username, Operator};

/// The issuer of local users' identities (and of their tokens' `iss`).
pub const LOCAL_USERS_ISSUER: &str = "local:";

/// Why a local user was not created, reset or listed.
#[derive(Debug, thiserror::Error)]
pub enum LocalUserError {
    #[error("{0:?} is not a {1} name: use 1-64 letters, digits, `-`, `_`, `.` or `@`")]
    InvalidName(String, &'static str),
    #[error("a local user needs at least one group (--groups G[,G]): groups choose its roles")]
    NoGroups,
    #[error("the local user {0:?} exists already: use `portcullis controller users reset {0}` to give it a new password")]
    Exists(String),
    #[error("there is no local user {0:?}: see `portcullis controller users list`")]
    Unknown(String),
    #[error("{0}")]
    Password(String),
    #[error("cannot read the password file {path}: {message}")]
    PasswordFile { path: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyError),
}

/// Where a new password comes from.
pub enum PasswordSource {
    /// Generate one, shown once to the operator, to be replaced at the first login.
    Generate,
    /// The operator's (read with [`read_password_file`]).
    Given(SecretString),
}

impl PasswordSource {
    fn audit_name(&self) -> &'static str {
        match self {
            PasswordSource::Generate => "generated",
            PasswordSource::Given(_) => "file",
        }
    }
}

/// A local user, as `list` shows it (no credential, only their state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalUserSummary {
    pub user_id: String,
    pub username: String,
    pub groups: Vec<String>,
    pub totp_enrolled: bool,
    pub must_change_password: bool,
    /// Unix seconds.
    pub disabled_at: Option<i64>,
    pub created_at: i64,
}

/// What `add` or `reset` did.
pub struct Changed {
    pub user: LocalUserSummary,
    /// The generated password, shown once; `None` when the operator gave one.
    pub one_time_password: Option<SecretString>,
}

/// Reads a password from `path`: the file must be readable by its owner only (mode 0600 or
/// stricter). One trailing newline is not part of the password.
pub fn read_password_file(path: &Path) -> Result<SecretString, LocalUserError> {
    use std::os::unix::fs::PermissionsExt as _;
    let failed = |message: String| LocalUserError::PasswordFile {
        path: path.display().to_string(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| failed(e.to_string()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(failed(format!(
            "its mode is {mode:o}, readable by others: `chmod 600` it"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
    let password = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    Ok(SecretString::from(password.to_owned()))
}

/// Creates the local user `username` in `groups` (`controller users add`), recorded as
/// `local_user_created` with the operator as the actor.
pub async fn add(
    store: &Store,
    keys: &Keyset,
    username: &str,
    groups: Vec<String>,
    source: PasswordSource,
    operator: &Operator,
) -> Result<Changed, LocalUserError> {
    if !valid_username(username) {
        return Err(LocalUserError::InvalidName(username.to_owned(), "user"));
    }
    if groups.is_empty() {
        return Err(LocalUserError::NoGroups);
    }
    if let Some(bad) = groups.iter().find(|g| !valid_username(g)) {
        return Err(LocalUserError::InvalidName(bad.clone(), "group"));
    }
    let password_source = source.audit_name();
    let (hash, one_time_password) = new_password(source)?;
    let now = clock::to_i64(keys.clock().unix_secs());
    let mut tx = AuditedTx::begin(store, keys).await?;
    if !users::by_subject(tx.read(), username, Some(LOCAL_USERS_ISSUER))
        .await?
        .is_empty()
    {
        return Err(LocalUserError::Exists(username.to_owned()));
    }
    let user = users::upsert(
        tx.write(),
        &UserRecord {
            id: new_id(IdKind::User),
            issuer: LOCAL_USERS_ISSUER.into(),
            subject: username.to_owned(),
            username: username.to_owned(),
            email: None,
            name: None,
            groups,
            amr: vec![],
            acr: None,
            auth_time: None,
            updated_at: now,
        },
    )
    .await?;
    let local = LocalUserRecord {
        user_id: user.id.clone(),
        password_hash: hash.as_phc().to_owned(),
        must_change_password: one_time_password.is_some(),
        password_expires_at: None,
        totp_secret: None,
        totp_last_step: None,
        disabled_at: None,
        created_at: now,
        updated_at: now,
    };
    rows::insert(tx.write(), &local).await?;
    tx.commit(AuditEvent::new(
        Actor::local(&operator.account),
        Event::LocalUserCreated {
            details: event::LocalUserCreated {
                user: user.username.clone(),
                user_id: user.id.clone(),
                issuer: user.issuer.clone(),
                groups: user.groups.clone(),
                password_source: password_source.into(),
            },
        },
    ))
    .await?;
    Ok(Changed {
        user: summary(&user, &local),
        one_time_password,
    })
}

/// Gives `username` a new password and clears its TOTP and recovery codes (`controller
/// users reset`), recorded as `local_user_reset`. Works offline whatever the user's state.
pub async fn reset(
    store: &Store,
    keys: &Keyset,
    username: &str,
    source: PasswordSource,
    operator: &Operator,
) -> Result<Changed, LocalUserError> {
    let password_source = source.audit_name();
    let (hash, one_time_password) = new_password(source)?;
    let now = clock::to_i64(keys.clock().unix_secs());
    let mut tx = AuditedTx::begin(store, keys).await?;
    let Some(found) = rows::by_name(tx.read(), LOCAL_USERS_ISSUER, username).await? else {
        return Err(LocalUserError::Unknown(username.to_owned()));
    };
    let must_change = one_time_password.is_some();
    rows::reset(tx.write(), &found.user.id, hash.as_phc(), must_change, now).await?;
    tx.commit(AuditEvent::new(
        Actor::local(&operator.account),
        Event::LocalUserReset {
            details: event::LocalUserReset {
                user: found.user.username.clone(),
                user_id: found.user.id.clone(),
                issuer: found.user.issuer.clone(),
                password_source: password_source.into(),
                totp_cleared: found.local.totp_secret.is_some(),
            },
        },
    ))
    .await?;
    let local = LocalUserRecord {
        password_hash: hash.as_phc().to_owned(),
        must_change_password: must_change,
        totp_secret: None,
        totp_last_step: None,
        updated_at: now,
        ..found.local
    };
    Ok(Changed {
        user: summary(&found.user, &local),
        one_time_password,
    })
}

/// The associated data a user's TOTP secret is sealed with (`Keyset::seal_secret`): a sealed
/// secret copied to another user's row does not open.
pub(crate) fn totp_seal_context(user_id: &str) -> String {
    format!("local_users.totp_secret/{user_id}")
}

/// Every local user, by name.
pub async fn list(store: &Store) -> Result<Vec<LocalUserSummary>, LocalUserError> {
    let mut conn = store.conn().await?;
    let found = rows::list(&mut conn).await?;
    Ok(found
        .iter()
        .filter(|u| u.user.issuer == LOCAL_USERS_ISSUER)
        .map(|u| summary(&u.user, &u.local))
        .collect())
}

fn summary(user: &UserRecord, local: &LocalUserRecord) -> LocalUserSummary {
    LocalUserSummary {
        user_id: user.id.clone(),
        username: user.username.clone(),
        groups: user.groups.clone(),
        totp_enrolled: local.totp_secret.is_some(),
        must_change_password: local.must_change_password,
        disabled_at: local.disabled_at,
        created_at: local.created_at,
    }
}

/// The hash of the new password and, if it was generated, the password to show once.
///
/// The next step takes the argon2 parameters and the minimum length from `[auth.local]`;
/// until the config carries that section, the defaults apply.
fn new_password(
    source: PasswordSource,
) -> Result<(password::PasswordHash, Option<SecretString>), LocalUserError> {
    let (given, shown) = match source {
        PasswordSource::Given(p) => (p, None),
        PasswordSource::Generate => {
            let p = generated_password();
            (SecretString::from(p.expose_secret().to_owned()), Some(p))
        }
    };
    let checked = NewPassword::new(given, DEFAULT_MIN_PASSWORD_CHARS)
        .map_err(|e| LocalUserError::Password(e.to_string()))?;
    let hash = password::hash(&checked, Argon2Params::default())
        .map_err(|e| LocalUserError::Password(e.to_string()))?;
    Ok((hash, shown))
}

/// 16 characters a person can type (80 bits), as `XXXX-XXXX-XXXX-XXXX`.
fn generated_password() -> SecretString {
    SecretString::from(format!("{}-{}", new_short_code(), new_short_code()))
}

#[cfg(test)]
mod tests;
