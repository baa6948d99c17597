//! Sessions' tokens through Proxmox's access API (pve-access-control 9.1), with the
//! token-management client of `[catalog.proxmox.sessions]`:
//!
//! - [`create`]: `POST access/users/{userid}/token/{name}` (`expire`, `privsep=1`, a comment
//!   naming the session); a token left by an earlier attempt ("already exists") is deleted and
//!   created again, so a retried mint never hands out a secret it did not see. Then, for each
//!   path, `PUT access/acl` (`path`, `roles`, `tokens`, `propagate=1`).
//! - [`revoke`]: `GET access/acl` and `PUT access/acl delete=1` for every entry naming the
//!   token, then `DELETE` the token (a missing token or user is already gone), then `GET
//!   access/acl` again: any entry left is an error, retried.
//!
//! The calls go through [`AccessApi`] so that the sequences are tested on a recording fake.
//! The secret only ever leaves here inside a [`SecretString`].

use serde_json::Value;

use super::client::{Client, Method};
use super::ProxmoxError;
use crate::secret::SecretString;

/// One API call; [`Client`] makes it over HTTPS.
pub(crate) trait AccessApi {
    async fn call(
        &self,
        method: Method,
        segments: &[&str],
        form: &[(&str, &str)],
    ) -> Result<Value, ProxmoxError>;
}

impl AccessApi for Client {
    async fn call(
        &self,
        method: Method,
        segments: &[&str],
        form: &[(&str, &str)],
    ) -> Result<Value, ProxmoxError> {
        Client::call(self, method, segments, form).await
    }
}

/// The token a session gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewToken<'a> {
    /// `USER@REALM`.
    pub userid: &'a str,
    /// The part after `!`.
    pub name: &'a str,
    /// Unix seconds: the session's end.
    pub expire: u64,
    pub comment: &'a str,
    pub roles: &'a [String],
    pub paths: &'a [String],
}

impl NewToken<'_> {
    fn token_id(&self) -> String {
        format!("{}!{}", self.userid, self.name)
    }
}

/// Creates the token and grants its roles on its paths; returns its secret.
pub(crate) async fn create(
    api: &impl AccessApi,
    token: &NewToken<'_>,
) -> Result<SecretString, ProxmoxError> {
    let user_path = ["access", "users", token.userid, "token", token.name];
    let expire = token.expire.to_string();
    let form = [
        ("expire", expire.as_str()),
        ("privsep", "1"),
        ("comment", token.comment),
    ];
    let created = match api.call(Method::Post, &user_path, &form).await {
        Err(e) if already_exists(&e) => {
            // Left by an attempt whose answer was lost: its secret is unknown, so replace it.
            tracing::info!(token.id = %token.token_id(), "the session's token already exists; replacing it");
            delete_token(api, token.userid, token.name).await?;
            api.call(Method::Post, &user_path, &form).await?
        }
        other => other?,
    };
    let secret = secret_of(&created).map_err(|message| ProxmoxError::BadAnswer {
        url: String::new(),
        method: "POST",
        path: user_path.join("/"),
        message,
    })?;
    let token_id = token.token_id();
    let roles = token.roles.join(",");
    for path in token.paths {
        let form = [
            ("path", path.as_str()),
            ("roles", roles.as_str()),
            ("tokens", token_id.as_str()),
            ("propagate", "1"),
        ];
        api.call(Method::Put, &["access", "acl"], &form).await?;
    }
    Ok(secret)
}

/// What [`revoke`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Revoked {
    /// The token existed and was deleted.
    Deleted,
    /// There was no token (never made, or deleted before).
    AlreadyGone,
}

impl Revoked {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Revoked::Deleted => "revoked",
            Revoked::AlreadyGone => "already gone",
        }
    }
}

/// Deletes every ACL entry that names the token `userid!name`, then the token, and checks
/// none is left. The entries go first: Proxmox refuses an ACL change naming a token that does
/// not exist (`no such token`), and drops the entries of a deleted token only when it next
/// reads its user config. An error means the caller retries.
pub(crate) async fn revoke(
    api: &impl AccessApi,
    userid: &str,
    name: &str,
) -> Result<Revoked, ProxmoxError> {
    let token_id = format!("{userid}!{name}");
    let acl = api.call(Method::Get, &["access", "acl"], &[]).await?;
    for entry in entries_of(&acl, &token_id) {
        let form = [
            ("path", entry.path.as_str()),
            ("roles", entry.role.as_str()),
            ("tokens", token_id.as_str()),
            ("delete", "1"),
        ];
        match api.call(Method::Put, &["access", "acl"], &form).await {
            Ok(_) => {}
            // The token went meanwhile: Proxmox drops its entries with it.
            Err(e) if no_such_token(&e) => {}
            Err(e) => return Err(e),
        }
    }
    let revoked = delete_token(api, userid, name).await?;
    let acl = api.call(Method::Get, &["access", "acl"], &[]).await?;
    let left = entries_of(&acl, &token_id);
    if !left.is_empty() {
        let paths: Vec<String> = left
            .iter()
            .map(|e| format!("{} ({})", e.path, e.role))
            .collect();
        return Err(ProxmoxError::BadAnswer {
            url: String::new(),
            method: "GET",
            path: "access/acl".into(),
            message: format!(
                "ACL entries of {token_id} are still there after their deletion: {}",
                paths.join(", ")
            ),
        });
    }
    Ok(revoked)
}

async fn delete_token(
    api: &impl AccessApi,
    userid: &str,
    name: &str,
) -> Result<Revoked, ProxmoxError> {
    let path = ["access", "users", userid, "token", name];
    match api.call(Method::Delete, &path, &[]).await {
        Ok(_) => Ok(Revoked::Deleted),
        Err(e) if no_such_token(&e) => Ok(Revoked::AlreadyGone),
        Err(e) => Err(e),
    }
}

/// An ACL entry naming a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AclEntry {
    pub path: String,
    pub role: String,
}

/// The entries of `GET access/acl`'s `data` that grant to `token_id` (`type` `token`, `ugid`
/// the token id). Entries of another shape are skipped.
pub(crate) fn entries_of(data: &Value, token_id: &str) -> Vec<AclEntry> {
    let Some(list) = data.as_array() else {
        return Vec::new();
    };
    list.iter()
        .filter(|e| e.get("type").and_then(Value::as_str) == Some("token"))
        .filter(|e| e.get("ugid").and_then(Value::as_str) == Some(token_id))
        .filter_map(|e| {
            Some(AclEntry {
                path: e.get("path")?.as_str()?.to_owned(),
                role: e.get("roleid")?.as_str()?.to_owned(),
            })
        })
        .collect()
}

/// The secret (`value`) of a token-create answer.
pub(crate) fn secret_of(data: &Value) -> Result<SecretString, String> {
    match data.get("value").and_then(Value::as_str) {
        Some(secret)
            if !secret.is_empty()
                && secret.len() <= 128
                && secret
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
        {
            Ok(SecretString::from(secret.to_owned()))
        }
        Some(_) => Err("the token's `value` is not a secret Proxmox makes (a UUID)".into()),
        None => Err("the answer holds no `value` (the token's secret)".into()),
    }
}

/// Proxmox refused to create a token that exists (`Token already exists.`).
fn already_exists(e: &ProxmoxError) -> bool {
    matches!(e, ProxmoxError::Api { status: 400 | 500, message, .. } if message.contains("already exists"))
}

/// Proxmox has no such token or user: nothing to delete.
fn no_such_token(e: &ProxmoxError) -> bool {
    match e {
        ProxmoxError::Api { status: 404, .. } => true,
        ProxmoxError::Api {
            status: 400 | 500,
            message,
            ..
        } => message.contains("no such token") || message.contains("no such user"),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
