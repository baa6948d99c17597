//! The fake's users, API tokens and ACL, in the shapes of pve-access-control 9.1 (the
//! project's Proxmox notes): what the controller mints a session's token with, and what the
//! worker's requests are checked against.
//!
//! - `POST /access/users/{userid}/token/{tokenid}` (`expire`, `privsep`, `comment`) answers
//!   `{"full-tokenid", "info": {expire, privsep, comment}, "value": <UUID secret>}`; a second
//!   one is refused 400 `Token already exists.`; an unknown user 500 `no such user ('u@r')`.
//! - `GET .../token/{tokenid}` answers the info, `GET .../token` the list
//!   (`[{tokenid, expire, privsep, comment}]`), `DELETE .../token/{tokenid}` removes it (and,
//!   as Proxmox does, the token's ACL entries, unless [`Access::delete_keeps_acls`] is set);
//!   an unknown token is 500 `no such token 'ID' for user 'u@r'`.
//! - `GET /access/acl` answers `[{path, type: user|token|group, ugid, roleid, propagate}]`;
//!   `PUT /access/acl` (`path`, `roles`, `users` | `tokens` | `groups`, `propagate` default 1,
//!   `delete`) adds or removes one entry per (ugid, role).
//! - A minted token authenticates as `PVEAPIToken=USER@REALM!ID=SECRET` until it is
//!   deleted or its `expire` (epoch seconds, 0 = never) has passed; then 401 as any other
//!   unknown token. A privilege-separated token may act on `/vms/{vmid}` only where the ACL
//!   grants the token a path covering it (this fake does not evaluate roles' privileges), and
//!   never writes under `/access/` (a token holds no `User.Modify` here).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::Answer;

/// The token-management credential the fake accepts by default (the controller's
/// `[catalog.proxmox.sessions] token_file`): a user with `User.Modify` on the realm and
/// `Permissions.Modify` on the session paths.
pub(crate) const MANAGEMENT_TOKEN: &str =
    "portcullis-sessions@pve!manage=0b6a3f9e-8d2c-4f71-a5e0-7c4d2b9f1e36";

/// The service user the e2e policy maps sessions to (`svc-terraform`, realm `pve`).
pub(crate) const SERVICE_USER: &str = "svc-terraform@pve";

/// One minted token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Minted {
    pub secret: String,
    /// Epoch seconds; 0 = never.
    pub expire: u64,
    pub privsep: bool,
    pub comment: String,
}

/// Who an entry grants to, as `GET /access/acl` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum UgidKind {
    User,
    Group,
    Token,
}

impl UgidKind {
    fn word(self) -> &'static str {
        match self {
            UgidKind::User => "user",
            UgidKind::Group => "group",
            UgidKind::Token => "token",
        }
    }
}

/// One ACL entry: `path`, who (`ugid`, of `kind`), one role, whether it propagates.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct AclEntry {
    pub path: String,
    pub kind: UgidKind,
    pub ugid: String,
    pub roleid: String,
    pub propagate: bool,
}

/// Who a request authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    /// The catalog's discovery token ([`super::TOKEN`]): reads only.
    Discovery,
    /// A token-management credential: creates and deletes tokens, sets ACLs.
    Manager(String),
    /// A token minted through the API (full token id).
    Minted(String),
}

impl Caller {
    /// The full token id it authenticated with.
    pub(crate) fn token_id(&self, discovery: &str) -> String {
        match self {
            Caller::Discovery => split_token(discovery).map_or_else(String::new, |(id, _)| id),
            Caller::Manager(id) | Caller::Minted(id) => id.clone(),
        }
    }
}

/// Users, tokens and the ACL.
#[derive(Debug, Clone)]
pub(crate) struct Access {
    /// Users that exist (`user@realm`).
    pub users: BTreeSet<String>,
    /// Whole management tokens (`USER@REALM!ID=SECRET`) accepted as managers.
    pub managers: BTreeSet<String>,
    /// Minted tokens by full token id (`user@realm!id`).
    pub tokens: BTreeMap<String, Minted>,
    pub acl: BTreeSet<AclEntry>,
    /// When set, deleting a token leaves its ACL entries in place (Proxmox removes them):
    /// shows that the controller removes them itself.
    pub delete_keeps_acls: bool,
}

impl Default for Access {
    fn default() -> Access {
        Access {
            users: [
                SERVICE_USER.to_owned(),
                "portcullis-sessions@pve".to_owned(),
            ]
            .into_iter()
            .collect(),
            managers: [MANAGEMENT_TOKEN.to_owned()].into_iter().collect(),
            tokens: BTreeMap::new(),
            acl: BTreeSet::new(),
            delete_keeps_acls: false,
        }
    }
}

/// `USER@REALM!ID=SECRET` → (`USER@REALM!ID`, `SECRET`): the secret is after the last `=`.
pub(crate) fn split_token(whole: &str) -> Option<(String, String)> {
    let (id, secret) = whole.rsplit_once('=')?;
    if !id.contains('!') || secret.is_empty() {
        return None;
    }
    Some((id.to_owned(), secret.to_owned()))
}

/// The value of an `Authorization` header after `PVEAPIToken=` (or `PVEAPIToken `, which
/// pve-http-server also takes).
pub(crate) fn token_of_header(header: &str) -> Option<&str> {
    header
        .strip_prefix("PVEAPIToken=")
        .or_else(|| header.strip_prefix("PVEAPIToken "))
}

/// Whether a token id part (after `!`) has Proxmox's `pve-tokenid` shape.
fn valid_token_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.len() >= 2
        && name.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Proxmox's ACL path normalisation: one leading `/`, no empty segment, no trailing `/`.
pub(crate) fn normalize_path(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return None;
    }
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.iter().any(|p| *p == "." || *p == "..") {
        return None;
    }
    Some(format!("/{}", parts.join("/")))
}

/// Whether ACL entry path `granted` covers `wanted` (itself, or below it when it propagates).
fn covers(granted: &str, propagate: bool, wanted: &str) -> bool {
    granted == wanted
        || (propagate
            && (granted == "/"
                || wanted
                    .strip_prefix(granted)
                    .is_some_and(|rest| rest.starts_with('/'))))
}

/// A list parameter as Proxmox splits it (`pve-roleid-list`, `pve-tokenid-list`): commas,
/// semicolons or whitespace.
fn list(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn flag(value: Option<&str>, default: bool) -> Result<bool, Answer> {
    match value {
        None => Ok(default),
        Some("1") | Some("true") | Some("yes") | Some("on") => Ok(true),
        Some("0") | Some("false") | Some("no") | Some("off") => Ok(false),
        Some(other) => Err(param_error(
            "boolean",
            &format!("type check ('boolean') failed - got '{other}'"),
        )),
    }
}

/// 400 `Parameter verification failed.` with `errors` (error_400_parameter_verification.json's
/// shape); `name` is the parameter.
pub(crate) fn param_error(name: &str, message: &str) -> Answer {
    Answer {
        status: 400,
        reason: Some("Parameter verification failed.".to_owned()),
        body: json!({
            "data": null,
            "errors": { name: message },
            "message": "Parameter verification failed.\n",
        })
        .to_string(),
    }
}

impl Access {
    /// Who `whole` (`USER@REALM!ID=SECRET`) is at `now` (epoch seconds), given the
    /// discovery token; `None`: refused (unknown, deleted, expired, wrong secret).
    pub(crate) fn authenticate(&self, whole: &str, discovery: &str, now: u64) -> Option<Caller> {
        if whole.as_bytes() == discovery.as_bytes() {
            return Some(Caller::Discovery);
        }
        if self.managers.contains(whole) {
            return split_token(whole).map(|(id, _)| Caller::Manager(id));
        }
        let (id, secret) = split_token(whole)?;
        let minted = self.tokens.get(&id)?;
        let live = minted.expire == 0 || minted.expire > now;
        (live && minted.secret.as_bytes() == secret.as_bytes()).then_some(Caller::Minted(id))
    }

    /// `POST /access/users/{userid}/token/{tokenid}` with its form; `secret` is the new
    /// token's value.
    pub(crate) fn create_token(
        &mut self,
        userid: &str,
        name: &str,
        form: &BTreeMap<String, String>,
        secret: String,
    ) -> Answer {
        if !valid_token_name(name) {
            return param_error("tokenid", "invalid format - invalid API token ID");
        }
        let expire = match form.get("expire").map(|e| e.parse::<u64>()) {
            None => 0,
            Some(Ok(e)) => e,
            Some(Err(_)) => {
                return param_error("expire", "type check ('integer') failed");
            }
        };
        let privsep = match flag(form.get("privsep").map(String::as_str), true) {
            Ok(p) => p,
            Err(refused) => return refused,
        };
        if !self.users.contains(userid) {
            return Answer::with_message(500, &format!("no such user ('{userid}')"));
        }
        let full = format!("{userid}!{name}");
        if self.tokens.contains_key(&full) {
            return Answer::with_message(400, "Token already exists.");
        }
        let comment = form.get("comment").cloned().unwrap_or_default();
        self.tokens.insert(
            full.clone(),
            Minted {
                secret: secret.clone(),
                expire,
                privsep,
                comment: comment.clone(),
            },
        );
        Answer::data(json!({
            "full-tokenid": full,
            "info": { "expire": expire, "privsep": u8::from(privsep), "comment": comment },
            "value": secret,
        }))
    }

    fn no_such_token(userid: &str, name: &str) -> Answer {
        Answer::with_message(500, &format!("no such token '{name}' for user '{userid}'"))
    }

    /// `GET /access/users/{userid}/token/{tokenid}`.
    pub(crate) fn read_token(&self, userid: &str, name: &str) -> Answer {
        match self.tokens.get(&format!("{userid}!{name}")) {
            Some(t) => Answer::data(json!({
                "expire": t.expire, "privsep": u8::from(t.privsep), "comment": t.comment,
            })),
            None => Access::no_such_token(userid, name),
        }
    }

    /// `GET /access/users/{userid}/token`.
    pub(crate) fn list_tokens(&self, userid: &str) -> Answer {
        if !self.users.contains(userid) {
            return Answer::with_message(500, &format!("no such user ('{userid}')"));
        }
        let prefix = format!("{userid}!");
        let entries: Vec<Value> = self
            .tokens
            .iter()
            .filter_map(|(id, t)| {
                let name = id.strip_prefix(&prefix)?;
                Some(json!({
                    "tokenid": name, "expire": t.expire,
                    "privsep": u8::from(t.privsep), "comment": t.comment,
                }))
            })
            .collect();
        Answer::data(Value::Array(entries))
    }

    /// `DELETE /access/users/{userid}/token/{tokenid}`.
    pub(crate) fn delete_token(&mut self, userid: &str, name: &str) -> Answer {
        let full = format!("{userid}!{name}");
        if self.tokens.remove(&full).is_none() {
            return Access::no_such_token(userid, name);
        }
        if !self.delete_keeps_acls {
            self.acl
                .retain(|e| !(e.kind == UgidKind::Token && e.ugid == full));
        }
        Answer::data(Value::Null)
    }

    /// `GET /access/acl`.
    pub(crate) fn list_acl(&self) -> Answer {
        Answer::data(Value::Array(
            self.acl
                .iter()
                .map(|e| {
                    json!({
                        "path": e.path, "type": e.kind.word(), "ugid": e.ugid,
                        "roleid": e.roleid, "propagate": u8::from(e.propagate),
                    })
                })
                .collect(),
        ))
    }

    /// `PUT /access/acl` with its form.
    pub(crate) fn put_acl(&mut self, form: &BTreeMap<String, String>) -> Answer {
        let Some(path) = form.get("path") else {
            return param_error("path", "property is missing and it is not optional");
        };
        let Some(path) = normalize_path(path) else {
            return param_error("path", "invalid ACL path");
        };
        let roles = list(form.get("roles").map(String::as_str));
        if roles.is_empty() {
            return param_error("roles", "property is missing and it is not optional");
        }
        let (propagate, delete) = match (
            flag(form.get("propagate").map(String::as_str), true),
            flag(form.get("delete").map(String::as_str), false),
        ) {
            (Ok(p), Ok(d)) => (p, d),
            (Err(refused), _) | (_, Err(refused)) => return refused,
        };
        let mut who = Vec::new();
        for u in list(form.get("users").map(String::as_str)) {
            if !self.users.contains(&u) {
                return Answer::with_message(500, &format!("user '{u}' does not exist"));
            }
            who.push((UgidKind::User, u));
        }
        for g in list(form.get("groups").map(String::as_str)) {
            who.push((UgidKind::Group, g));
        }
        for t in list(form.get("tokens").map(String::as_str)) {
            if !delete && !self.tokens.contains_key(&t) {
                let (user, name) = t.split_once('!').unwrap_or((&t, ""));
                return Access::no_such_token(user, name);
            }
            who.push((UgidKind::Token, t));
        }
        if who.is_empty() {
            return param_error("users", "either 'users', 'groups' or 'tokens' is required");
        }
        for (kind, ugid) in who {
            for roleid in &roles {
                // One entry per (path, ugid, role): a second PUT replaces `propagate`.
                self.acl.retain(|e| {
                    !(e.path == path && e.kind == kind && e.ugid == ugid && &e.roleid == roleid)
                });
                if !delete {
                    self.acl.insert(AclEntry {
                        path: path.clone(),
                        kind,
                        ugid: ugid.clone(),
                        roleid: roleid.clone(),
                        propagate,
                    });
                }
            }
        }
        Answer::data(Value::Null)
    }

    /// The ACL entries of token `full` (`user@realm!id`).
    pub(crate) fn entries_of(&self, full: &str) -> Vec<AclEntry> {
        self.acl
            .iter()
            .filter(|e| e.kind == UgidKind::Token && e.ugid == full)
            .cloned()
            .collect()
    }

    /// Whether minted token `full` may act on ACL path `wanted`: full-privilege tokens act
    /// as their user (who is trusted here); privilege-separated ones need an entry of their
    /// own covering the path.
    pub(crate) fn may(&self, full: &str, wanted: &str) -> bool {
        match self.tokens.get(full) {
            Some(t) if !t.privsep => true,
            Some(_) => self
                .entries_of(full)
                .iter()
                .any(|e| covers(&e.path, e.propagate, wanted)),
            None => false,
        }
    }
}
