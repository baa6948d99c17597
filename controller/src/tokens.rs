//! API tokens: one is issued for a user in one transaction with the audit event that records
//! it. Logins (OIDC, the dev login) record `login_succeeded`; the offline break-glass command
//! `portcullis controller issue-token` records `token_issued` with the local operator as the
//! actor. Only the token's hash is stored: the secret is returned once.

use std::time::Duration;

use crate::audit::{event, Actor, AuditEvent, AuditedTx, Event};
use crate::clock;
use crate::ids::{new_id, new_secret, secret_hash, IdKind};
use crate::keys::{KeyError, Keyset};
use crate::store::tokens::{self, LoginAttributes, TokenRecord};
use crate::store::users::{self, UserRecord};
use crate::store::{Store, StoreError};

/// The issuer of identities created with `portcullis controller issue-token`.
pub(crate) const LOCAL_ISSUER: &str = "portcullis-local";

/// Why a break-glass token was not issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("{0:?} is not a {1} name: use 1-64 letters, digits, `-`, `_`, `.` or `@`")]
    InvalidName(String, &'static str),
    #[error("a break-glass token may live at most {} days; ask for a shorter --ttl", MAX_LOCAL_LIFETIME.as_secs() / 86_400)]
    TooLong,
    #[error(transparent)]
    Keys(#[from] KeyError),
}

/// The longest life of a break-glass token.
pub(crate) const MAX_LOCAL_LIFETIME: Duration = Duration::from_secs(366 * 86_400);

/// A token just issued.
pub struct Issued {
    /// The bearer secret: shown once, never stored.
    pub secret: String,
    pub token_id: String,
    /// Unix seconds.
    pub expires_at: u64,
    /// The stored user (its id is the existing one when the identity was known).
    pub user: UserRecord,
}

/// The facts of a token its audit event records.
pub(crate) struct TokenFacts<'a> {
    pub token_id: &'a str,
    pub expires_at: u64,
}

/// Stores (or refreshes) `user` and issues a token valid for `lifetime`, committed with the
/// event `event` builds from the stored user and the token.
pub(crate) async fn issue(
    store: &Store,
    keys: &Keyset,
    lifetime: Duration,
    user: &UserRecord,
    event: impl FnOnce(&UserRecord, &TokenFacts<'_>) -> AuditEvent,
) -> Result<Issued, KeyError> {
    let tx = AuditedTx::begin(store, keys).await?;
    issue_in(tx, keys, lifetime, user, event).await
}

/// [`issue`] in `tx`, which may hold changes and events of its own (a local login's new
/// password or TOTP enrolment): they commit with the token, or nothing does.
pub(crate) async fn issue_in(
    mut tx: AuditedTx,
    keys: &Keyset,
    lifetime: Duration,
    user: &UserRecord,
    event: impl FnOnce(&UserRecord, &TokenFacts<'_>) -> AuditEvent,
) -> Result<Issued, KeyError> {
    let now = keys.clock().unix_secs();
    let issued = insert(&mut tx, now, lifetime, user).await?;
    let facts = TokenFacts {
        token_id: &issued.token_id,
        expires_at: issued.expires_at,
    };
    tx.commit(event(&issued.user, &facts)).await?;
    Ok(issued)
}

/// Stores (or refreshes) `user` and inserts a token valid for `lifetime` from `now` into
/// `tx`, for a caller that writes more in the same transaction (a service account binds the
/// token to its key) and commits it with the login's event.
pub(crate) async fn insert(
    tx: &mut AuditedTx,
    now: u64,
    lifetime: Duration,
    user: &UserRecord,
) -> Result<Issued, StoreError> {
    let secret = new_secret();
    let expires_at = now + lifetime.as_secs();
    let user = users::upsert(tx.write(), user).await?;
    let token_id = new_id(IdKind::Token);
    tokens::insert(
        tx.write(),
        &TokenRecord {
            id: token_id.clone(),
            user_id: user.id.clone(),
            token_hash: secret_hash(&secret),
            created_at: clock::to_i64(now),
            expires_at: clock::to_i64(expires_at),
            login: Some(LoginAttributes::of(&user)),
        },
    )
    .await?;
    Ok(Issued {
        secret,
        token_id,
        expires_at,
        user,
    })
}

/// The event of a login (OIDC, a local user's, or the dev login) from `source`: the user is the actor.
pub(crate) fn login_succeeded(
    user: &UserRecord,
    token: &TokenFacts<'_>,
    source: &str,
) -> AuditEvent {
    AuditEvent::new(
        Actor {
            user_id: Some(user.id.clone()),
            username: Some(user.username.clone()),
            groups: user.groups.clone(),
            source: Some(source.to_owned()),
        },
        Event::LoginSucceeded {
            details: event::TokenGranted {
                issuer: user.issuer.clone(),
                token_id: token.token_id.to_owned(),
                expires_at: token.expires_at,
            },
        },
    )
}

/// Who asked for a break-glass token: the local account that ran the command.
#[derive(Debug, Clone)]
pub struct Operator {
    /// E.g. `uid=0`.
    pub account: String,
}

/// The break-glass path: a token for `username` with `groups` and `amr`, issued by someone
/// with the controller's config and master key (root on the controller), recorded as
/// `token_issued` with the operator as the actor and the user in the details.
pub async fn issue_local(
    store: &Store,
    keys: &Keyset,
    lifetime: Duration,
    username: &str,
    groups: Vec<String>,
    amr: Vec<String>,
    operator: &Operator,
) -> Result<Issued, IssueError> {
    if lifetime > MAX_LOCAL_LIFETIME {
        return Err(IssueError::TooLong);
    }
    if !valid_username(username) {
        return Err(IssueError::InvalidName(username.to_owned(), "user"));
    }
    if let Some(bad) = groups.iter().find(|g| !valid_username(g)) {
        return Err(IssueError::InvalidName(bad.clone(), "group"));
    }
    if let Some(bad) = amr.iter().find(|m| !valid_username(m)) {
        return Err(IssueError::InvalidName(
            bad.clone(),
            "authentication method",
        ));
    }
    let now = clock::to_i64(keys.clock().unix_secs());
    let user = UserRecord {
        id: new_id(IdKind::User),
        issuer: LOCAL_ISSUER.into(),
        subject: username.to_owned(),
        username: username.to_owned(),
        email: None,
        name: None,
        groups,
        amr,
        acr: None,
        auth_time: Some(now),
        updated_at: now,
    };
    issue(store, keys, lifetime, &user, |user, token| {
        AuditEvent::new(
            Actor::local(&operator.account),
            Event::TokenIssued {
                details: event::TokenIssued {
                    user: user.username.clone(),
                    user_id: user.id.clone(),
                    issuer: user.issuer.clone(),
                    groups: user.groups.clone(),
                    amr: user.amr.clone(),
                    token_id: token.token_id.to_owned(),
                    expires_at: token.expires_at,
                },
            },
        )
    })
    .await
    .map_err(IssueError::from)
}

/// The names the dev login and the break-glass command accept for users and groups.
pub(crate) fn valid_username(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::valid_username;

    #[test]
    fn names_are_plain() {
        assert!(valid_username("alice@example.org"));
        assert!(!valid_username(""));
        assert!(!valid_username("a b"));
        assert!(!valid_username("evil\u{1b}[31m"));
        assert!(!valid_username(&"a".repeat(65)));
    }
}
