//! The token and ACL sequences on a fake that keeps tokens and ACL entries as Proxmox does
//! and records every call.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Mutex;

use serde_json::{json, Value};

use super::*;
use crate::secret::ExposeSecret as _;

#[derive(Default)]
struct Fake {
    tokens: Mutex<BTreeSet<String>>,
    /// (path, role, token id)
    acl: Mutex<Vec<(String, String, String)>>,
    calls: Mutex<Vec<String>>,
    /// Every call fails as an unreachable server.
    down: bool,
    /// `PUT acl delete=1` answers but keeps the entry (a broken server).
    sticky_acl: bool,
}

fn api_error(status: u16, message: &str) -> ProxmoxError {
    ProxmoxError::Api {
        url: "https://pve.test:8006/".into(),
        method: "X",
        path: "p".into(),
        status,
        message: message.into(),
    }
}

impl AccessApi for Fake {
    async fn call(
        &self,
        method: Method,
        segments: &[&str],
        form: &[(&str, &str)],
    ) -> Result<Value, ProxmoxError> {
        let shown: Vec<String> = form.iter().map(|(k, v)| format!("{k}={v}")).collect();
        self.calls.lock().unwrap().push(format!(
            "{} {} {}",
            method.as_str(),
            segments.join("/"),
            shown.join("&")
        ));
        if self.down {
            return Err(ProxmoxError::Unreachable("connection refused".into()));
        }
        let field = |k: &str| form.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        match (method, segments) {
            (Method::Post, ["access", "users", user, "token", name]) => {
                let id = format!("{user}!{name}");
                if !self.tokens.lock().unwrap().insert(id.clone()) {
                    return Err(api_error(400, "Token already exists."));
                }
                Ok(
                    json!({"full-tokenid": id, "info": {"privsep": 1}, "value": "5f0c6bd2-5b3e-4f1e-9c6a-00000000000a"}),
                )
            }
            (Method::Delete, ["access", "users", user, "token", name]) => {
                if self
                    .tokens
                    .lock()
                    .unwrap()
                    .remove(&format!("{user}!{name}"))
                {
                    Ok(Value::Null)
                } else {
                    Err(api_error(
                        500,
                        &format!("no such token '{name}' for user '{user}'"),
                    ))
                }
            }
            (Method::Put, ["access", "acl"]) => {
                let (path, roles, token) = (
                    field("path").unwrap().to_owned(),
                    field("roles").unwrap(),
                    field("tokens").unwrap().to_owned(),
                );
                let (user, name) = token.split_once('!').unwrap();
                if !self.tokens.lock().unwrap().contains(&token) {
                    return Err(api_error(
                        500,
                        &format!("no such token '{name}' for user '{user}'"),
                    ));
                }
                let mut acl = self.acl.lock().unwrap();
                for role in roles.split(',') {
                    let entry = (path.clone(), role.to_owned(), token.clone());
                    if field("delete") == Some("1") {
                        if !self.sticky_acl {
                            acl.retain(|e| *e != entry);
                        }
                    } else if !acl.contains(&entry) {
                        acl.push(entry);
                    }
                }
                Ok(Value::Null)
            }
            (Method::Get, ["access", "acl"]) => {
                let acl = self.acl.lock().unwrap();
                let mut list: Vec<Value> = acl
                    .iter()
                    .map(|(path, role, ugid)| {
                        json!({"path": path, "roleid": role, "type": "token", "ugid": ugid, "propagate": 1})
                    })
                    .collect();
                list.push(json!({"path": "/", "roleid": "Administrator", "type": "user", "ugid": "root@pam", "propagate": 1}));
                Ok(Value::Array(list))
            }
            _ => Err(api_error(501, "Method not implemented")),
        }
    }
}

const ROLES: &[&str] = &["PVEVMAdmin", "PVEDatastoreUser"];

fn roles() -> Vec<String> {
    ROLES.iter().map(|r| (*r).to_owned()).collect()
}

fn paths() -> Vec<String> {
    vec!["/vms/100".into(), "/pool/tf".into()]
}

#[tokio::test]
async fn a_token_is_created_with_expire_and_privsep_then_granted_on_each_path() {
    let fake = Fake::default();
    let (roles, paths) = (roles(), paths());
    let token = NewToken {
        userid: "pc-alice@pve",
        name: "pc-s1",
        expire: 1_900_000_000,
        comment: "portcullis session s_1 of alice",
        roles: &roles,
        paths: &paths,
    };
    let secret = create(&fake, &token).await.unwrap();
    assert_eq!(
        secret.expose_secret(),
        "5f0c6bd2-5b3e-4f1e-9c6a-00000000000a"
    );
    let calls = fake.calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        vec![
            "POST access/users/pc-alice@pve/token/pc-s1 expire=1900000000&privsep=1&comment=portcullis session s_1 of alice",
            "PUT access/acl path=/vms/100&roles=PVEVMAdmin,PVEDatastoreUser&tokens=pc-alice@pve!pc-s1&propagate=1",
            "PUT access/acl path=/pool/tf&roles=PVEVMAdmin,PVEDatastoreUser&tokens=pc-alice@pve!pc-s1&propagate=1",
        ]
    );
    assert_eq!(fake.acl.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn a_token_that_already_exists_is_replaced() {
    let fake = Fake::default();
    fake.tokens
        .lock()
        .unwrap()
        .insert("pc-alice@pve!pc-s1".into());
    let (roles, paths) = (roles(), paths());
    let token = NewToken {
        userid: "pc-alice@pve",
        name: "pc-s1",
        expire: 1,
        comment: "c",
        roles: &roles,
        paths: &paths,
    };
    create(&fake, &token).await.unwrap();
    let calls = fake.calls.lock().unwrap().clone();
    assert!(calls[0].starts_with("POST"), "{calls:?}");
    assert!(
        calls[1].starts_with("DELETE access/users/pc-alice@pve/token/pc-s1"),
        "{calls:?}"
    );
    assert!(calls[2].starts_with("POST"), "{calls:?}");
}

#[tokio::test]
async fn revoking_deletes_the_token_and_every_acl_entry_naming_it() {
    let fake = Fake::default();
    let (roles, paths) = (roles(), paths());
    let token = NewToken {
        userid: "pc-alice@pve",
        name: "pc-s1",
        expire: 1,
        comment: "c",
        roles: &roles,
        paths: &paths,
    };
    create(&fake, &token).await.unwrap();
    // Another session's entry stays.
    fake.acl.lock().unwrap().push((
        "/vms".into(),
        "PVEAuditor".into(),
        "pc-bob@pve!pc-s2".into(),
    ));
    assert_eq!(
        revoke(&fake, "pc-alice@pve", "pc-s1").await.unwrap(),
        Revoked::Deleted
    );
    assert!(fake.tokens.lock().unwrap().is_empty());
    let acl = fake.acl.lock().unwrap().clone();
    assert_eq!(acl.len(), 1, "{acl:?}");
    assert_eq!(acl[0].2, "pc-bob@pve!pc-s2");
    // Again: nothing there, already gone.
    assert_eq!(
        revoke(&fake, "pc-alice@pve", "pc-s1").await.unwrap(),
        Revoked::AlreadyGone
    );
}

#[tokio::test]
async fn an_acl_entry_left_behind_or_an_outage_is_an_error_to_retry() {
    let fake = Fake {
        sticky_acl: true,
        ..Fake::default()
    };
    fake.acl.lock().unwrap().push((
        "/vms".into(),
        "PVEVMUser".into(),
        "pc-alice@pve!pc-s1".into(),
    ));
    let err = revoke(&fake, "pc-alice@pve", "pc-s1").await.unwrap_err();
    assert!(err.to_string().contains("still there"), "{err}");
    let down = Fake {
        down: true,
        ..Fake::default()
    };
    let err = revoke(&down, "pc-alice@pve", "pc-s1").await.unwrap_err();
    assert!(matches!(err, ProxmoxError::Unreachable(_)), "{err}");
}

#[test]
fn a_create_answer_without_a_plausible_secret_is_refused() {
    assert!(secret_of(&json!({"value": "abc-123"})).is_ok());
    assert!(secret_of(&json!({"info": {}})).is_err());
    assert!(secret_of(&json!({"value": "a b\r\nX: y"})).is_err());
    assert!(secret_of(&json!({"value": ""})).is_err());
}

#[test]
fn only_entries_of_the_token_are_read() {
    let data = json!([
        {"path": "/vms", "roleid": "PVEVMUser", "type": "token", "ugid": "u@pve!pc-1", "propagate": 1},
        {"path": "/vms", "roleid": "PVEVMUser", "type": "user", "ugid": "u@pve!pc-1"},
        {"path": "/vms", "roleid": "PVEVMUser", "type": "token", "ugid": "u@pve!pc-10"},
        {"path": "/x", "type": "token", "ugid": "u@pve!pc-1"},
    ]);
    assert_eq!(
        entries_of(&data, "u@pve!pc-1"),
        vec![AclEntry {
            path: "/vms".into(),
            role: "PVEVMUser".into()
        }]
    );
    assert!(entries_of(&json!({"not": "a list"}), "u@pve!pc-1").is_empty());
}
