//! Local users' administration, offline (`portcullis controller users add|reset|list`, run by
//! whoever holds the controller's config and master key) and over the API (`/v1/users/local`,
//! `portcullis users add|list|show|disable|reset`, `api/users.rs`). Each change is one
//! audited transaction: the `users` row (written by `users::upsert`, the one path that
//! creates users), its credentials (`store::local_users`) and its event (`local_user_created`,
//! `local_user_reset`, `local_user_disabled`) commit together, with the operator or the
//! administrator as the actor.
//!
//! A password is either read from a file only its owner can read (offline automation) or
//! generated and returned once, to be replaced at the first login (`must_change_password`);
//! the API only generates. New passwords follow `[auth.local]`: its minimum length and its
//! argon2 parameters ([`PasswordRules`]). No password reaches a log, an audit event or
//! `Debug`; only its argon2id hash is stored.

use std::path::Path;

use sqlx::AnyConnection;

use crate::audit::{event, Actor, AuditEvent, AuditedTx, Event};
use crate::clock;
use crate::config::Config;
use crate::ids::{new_id, new_short_code, IdKind};
use crate::keys::{KeyError, Keyset};
use crate::local_auth::config::LocalAuthConfig;
use crate::local_auth::password::{self, Argon2Params, NewPassword};
use crate::secret::{ExposeSecret as _, SecretString};
use crate::store::local_users::{self as rows, LocalUserRecord};
use crate::store::users::{self, UserRecord};
use crate::store::{tokens, Store, StoreError};
use crate::tokens::valid_username;

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
    #[error("{0}")]
    Hashing(String),
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

/// What a new password must be and how it is hashed: `[auth.local]`'s
/// `min_password_length` and `argon2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordRules {
    min_length: usize,
    argon2: Argon2Params,
}

impl PasswordRules {
    /// The rules of `config`'s `[auth.local]`.
    pub fn of(config: &Config) -> PasswordRules {
        PasswordRules::from(&config.local_auth)
    }
}

impl From<&LocalAuthConfig> for PasswordRules {
    fn from(local: &LocalAuthConfig) -> Self {
        PasswordRules {
            min_length: local.min_password_length,
            argon2: local.argon2,
        }
    }
}

/// A local user, as `list` and `show` show it (no credential, only their state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalUserSummary {
    pub user_id: String,
    pub username: String,
    pub groups: Vec<String>,
    pub totp_enrolled: bool,
    pub must_change_password: bool,
    /// Unused recovery codes.
    pub recovery_codes_left: u32,
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

/// What `disable` did: the user, and the tokens it revoked (its live sessions are the
/// caller's to end: `api::logout::end_user_sessions`).
#[derive(Debug, Clone)]
pub(crate) struct Disabled {
    pub user: LocalUserSummary,
    pub revoked_token_ids: Vec<String>,
}

/// Reads a password from `path`: the file must be readable by its owner only (mode 0600 or
/// stricter). One trailing newline is not part of the password.
pub fn read_password_file(path: &Path) -> Result<SecretString, LocalUserError> {
    let text =
        portcullis_files::read_owner_only(path).map_err(|e| LocalUserError::PasswordFile {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
    Ok(SecretString::from(text))
}

/// Creates the local user `username` in `groups` (`controller users add`, `POST
/// /v1/users/local`), recorded as `local_user_created` with `actor` (the local operator or the
/// administrator) as the actor. The caller checks which groups `actor` may grant.
pub async fn add(
    store: &Store,
    keys: &Keyset,
    rules: PasswordRules,
    username: &str,
    groups: Vec<String>,
    source: PasswordSource,
    actor: Actor,
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
    let (hash, one_time_password) = new_password(source, rules).await?;
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
        actor,
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
        user: summary(&user, &local, 0),
        one_time_password,
    })
}

/// Gives `username` a new password and clears its TOTP and recovery codes (`controller
/// users reset`, `POST /v1/users/local/{name}/reset`), recorded as `local_user_reset` with
/// `actor` as the actor. Works offline whatever the user's state (a disabled user stays
/// disabled).
pub async fn reset(
    store: &Store,
    keys: &Keyset,
    rules: PasswordRules,
    username: &str,
    source: PasswordSource,
    actor: Actor,
) -> Result<Changed, LocalUserError> {
    let password_source = source.audit_name();
    let (hash, one_time_password) = new_password(source, rules).await?;
    let now = clock::to_i64(keys.clock().unix_secs());
    let mut tx = AuditedTx::begin(store, keys).await?;
    let Some(found) = rows::by_name(tx.read(), LOCAL_USERS_ISSUER, username).await? else {
        return Err(LocalUserError::Unknown(username.to_owned()));
    };
    let must_change = one_time_password.is_some();
    rows::reset(tx.write(), &found.user.id, hash.as_phc(), must_change, now).await?;
    tx.commit(AuditEvent::new(
        actor,
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
        user: summary(&found.user, &local, 0),
        one_time_password,
    })
}

/// Disables `username` (`POST /v1/users/local/{name}/disable`): it can no longer log in, and
/// its API tokens are revoked, in one transaction with `local_user_disabled` (`actor` as the
/// actor). Disabling a disabled user keeps its first `disabled_at` and revokes any token left.
pub(crate) async fn disable(
    store: &Store,
    keys: &Keyset,
    username: &str,
    actor: Actor,
) -> Result<Disabled, LocalUserError> {
    let now = clock::to_i64(keys.clock().unix_secs());
    let mut tx = AuditedTx::begin(store, keys).await?;
    let Some(found) = rows::by_name(tx.read(), LOCAL_USERS_ISSUER, username).await? else {
        return Err(LocalUserError::Unknown(username.to_owned()));
    };
    let codes_left = codes_left(tx.read(), &found.user.id).await?;
    let disabled_at = found.local.disabled_at.unwrap_or(now);
    rows::set_disabled(tx.write(), &found.user.id, Some(disabled_at), now).await?;
    let revoked = tokens::revoke_user(tx.write(), &found.user.id, now).await?;
    tx.commit(AuditEvent::new(
        actor,
        Event::LocalUserDisabled {
            details: event::LocalUserDisabled {
                user: event::LocalUserRef {
                    user: found.user.username.clone(),
                    user_id: found.user.id.clone(),
                    issuer: found.user.issuer.clone(),
                },
                token_ids: revoked.clone(),
            },
        },
    ))
    .await?;
    let local = LocalUserRecord {
        disabled_at: Some(disabled_at),
        updated_at: now,
        ..found.local
    };
    Ok(Disabled {
        user: summary(&found.user, &local, codes_left),
        revoked_token_ids: revoked,
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
    let mut out = Vec::with_capacity(found.len());
    for u in found.iter().filter(|u| u.user.issuer == LOCAL_USERS_ISSUER) {
        let left = codes_left(&mut conn, &u.user.id).await?;
        out.push(summary(&u.user, &u.local, left));
    }
    Ok(out)
}

/// The local user `username` (`GET /v1/users/local/{name}`).
pub(crate) async fn show(
    store: &Store,
    username: &str,
) -> Result<LocalUserSummary, LocalUserError> {
    let mut conn = store.conn().await?;
    let Some(found) = rows::by_name(&mut conn, LOCAL_USERS_ISSUER, username).await? else {
        return Err(LocalUserError::Unknown(username.to_owned()));
    };
    let left = codes_left(&mut conn, &found.user.id).await?;
    Ok(summary(&found.user, &found.local, left))
}

/// How many of the user's recovery codes are unused.
async fn codes_left(conn: &mut AnyConnection, user_id: &str) -> Result<u32, StoreError> {
    let codes = rows::recovery_codes(conn, user_id).await?;
    let unused = codes.iter().filter(|c| c.used_at.is_none()).count();
    Ok(u32::try_from(unused).unwrap_or(u32::MAX))
}

fn summary(user: &UserRecord, local: &LocalUserRecord, codes_left: u32) -> LocalUserSummary {
    LocalUserSummary {
        user_id: user.id.clone(),
        username: user.username.clone(),
        groups: user.groups.clone(),
        totp_enrolled: local.totp_secret.is_some(),
        must_change_password: local.must_change_password,
        recovery_codes_left: codes_left,
        disabled_at: local.disabled_at,
        created_at: local.created_at,
    }
}

/// The hash of the new password (checked against and hashed with `rules`, off the async
/// threads: argon2 is slow on purpose) and, if it was generated, the password to show once.
async fn new_password(
    source: PasswordSource,
    rules: PasswordRules,
) -> Result<(password::PasswordHash, Option<SecretString>), LocalUserError> {
    let (given, shown) = match source {
        PasswordSource::Given(p) => (p, None),
        PasswordSource::Generate => {
            let p = generated_password(rules.min_length);
            (SecretString::from(p.expose_secret().to_owned()), Some(p))
        }
    };
    let checked = NewPassword::new(given, rules.min_length)
        .map_err(|e| LocalUserError::Password(e.to_string()))?;
    let hash = tokio::task::spawn_blocking(move || password::hash(&checked, rules.argon2))
        .await
        .map_err(|e| LocalUserError::Hashing(format!("the password hashing task failed: {e}")))?
        .map_err(|e| LocalUserError::Hashing(e.to_string()))?;
    Ok((hash, shown))
}

/// At least 16 characters a person can type (5 bits each), in groups of four
/// (`XXXX-XXXX-XXXX-XXXX`), and at least `min_length` characters.
fn generated_password(min_length: usize) -> SecretString {
    let mut text = format!("{}-{}", new_short_code(), new_short_code());
    while text.chars().count() < min_length {
        text.push('-');
        text.push_str(&new_short_code());
    }
    SecretString::from(text)
}

#[cfg(test)]
mod tests;
