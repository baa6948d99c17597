//! `/v1/catalog`, `/v1/inventory`, and what the catalog changes in `/v1/targets` and
//! authorize-session, through the router on an in-memory SQLite store. Discovered targets
//! are written as a sync would (`catalog::sync::apply` of a hand-built plan); the sync
//! itself against a fake Proxmox is `tests/catalog.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use super::tests::{client_key, Api};
use crate::audit::Actor;
use crate::catalog::plan::{Change, Plan, Seen};
use crate::catalog::Discovery;
use crate::store::targets::TargetRecord;

/// LOCAL (loopback: the callers and the reachable targets) and LAB, which no cell reaches.
const POLICY: &str = r#"
[settings]
broker_zone = "LOCAL"

[[zone]]
name = "LOCAL"
cidrs = ["127.0.0.0/8"]

[[zone]]
name = "LAB"
cidrs = ["192.0.2.0/24"]

[[service]]
name = "echo"
ports = "any"

[[cell]]
from = "LOCAL"
to = "LOCAL"
access = "allow"
services = ["echo"]

[[role]]
name = "admin"
groups = ["admins"]
permissions = ["targets:admin"]

[[role.grant]]
zones = ["*"]
services = ["*"]

[[role]]
name = "user"
groups = ["users"]

[[role.grant]]
zones = ["LOCAL"]
services = ["echo"]
"#;

/// A cluster whose token file does not exist: every sync of it fails.
const CLUSTER: &str = r#"
[[catalog.proxmox]]
name = "lab"
urls = ["https://127.0.0.1:1"]
token_file = "/nonexistent/portcullis-test/proxmox.token"
ca_file = "/nonexistent/portcullis-test/pve-root-ca.pem"
"#;

async fn start() -> Api {
    Api::start_with(POLICY, CLUSTER, crate::clock::system()).await
}

/// A discovered target of `lab`: `status` as Proxmox reported it; available when running.
fn discovered(vmid: u32, name: &str, address: &str, status: &str) -> TargetRecord {
    let available = status == "running";
    let seen = Seen {
        name: name.into(),
        address: address.into(),
        zone: "LOCAL".into(),
        service: Some("echo".into()),
        vmid: Some(vmid),
        tags: vec!["web".into()],
        pool: None,
        node: Some("pve1".into()),
        guest_type: "qemu".into(),
        status: status.into(),
        address_origin: Some("cloud-init".into()),
        available,
        seen_at: 1,
    };
    TargetRecord {
        id: format!("tgt_test{vmid}"),
        name: name.into(),
        address: address.into(),
        zone: Some("LOCAL".into()),
        service: Some("echo".into()),
        vmid: Some(vmid),
        tags: vec!["web".into()],
        pool: None,
        max_session_secs: 3600,
        connection_limit: 0,
        ssh_host_keys: vec![],
        ssh_host_cas: vec![],
        vault_ssh_mount: None,
        vault_ssh_role: None,
        vault_secrets: vec![],
        source: Some("lab".into()),
        source_key: Some(format!("qemu/{vmid}")),
        available,
        discovered: Some(serde_json::to_string(&seen).unwrap()),
        proxmox_cluster: None,
        created_at: 1,
        updated_at: 1,
    }
}

/// Writes `targets` as a sync of `lab` that found them.
async fn sync_in(api: &Api, targets: &[TargetRecord]) {
    let found = Discovery {
        cluster: "lab".into(),
        url: "https://127.0.0.1:1/".into(),
        nodes: vec![],
        guests: vec![],
        notes: vec![],
    };
    let plan = Plan {
        changes: targets.iter().cloned().map(Change::Add).collect(),
        ..Plan::default()
    };
    let policy = api.state.policy().unwrap();
    crate::catalog::sync::apply(&api.state, &found, &plan, &policy, Actor::system())
        .await
        .unwrap();
}

fn message(body: &Value) -> &str {
    body["message"].as_str().unwrap_or_default()
}

fn names(items: &Value) -> Vec<&str> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn the_catalog_shows_each_cluster_its_targets_and_a_failed_sync_as_stale() {
    let api = start().await;
    let user = api.login("uma", &["users"]).await;
    let admin = api.login("ada", &["admins"]).await;
    // Never synced: listed, not stale, no targets.
    let (status, body) = api
        .call(Method::GET, "/v1/catalog", Some(&user), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let lab = &body["clusters"][0];
    assert_eq!(lab["cluster"], "lab", "{body}");
    assert_eq!(lab["urls"], json!(["https://127.0.0.1:1/"]), "{body}");
    assert_eq!(lab["interval_secs"], 300, "{body}");
    assert_eq!(lab["stale"], false, "{body}");
    assert_eq!(lab["targets"], json!([]), "{body}");

    sync_in(&api, &[discovered(100, "web", "127.0.0.5:7", "running")]).await;
    // The sync fails (no token): the last good catalog stays, marked stale.
    let ((status, report), events) = api
        .audited(api.call(
            Method::POST,
            "/v1/catalog/sync",
            Some(&admin),
            Some(json!({})),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["dry_run"], false, "{report}");
    assert_eq!(report["clusters"][0]["outcome"], "failed", "{report}");
    let error = report["clusters"][0]["error"].as_str().unwrap().to_owned();
    assert_eq!(events, ["catalog_sync_failed"]);
    let (status, body) = api
        .call(Method::GET, "/v1/catalog", Some(&user), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let lab = &body["clusters"][0];
    assert_eq!(lab["stale"], true, "{body}");
    assert_eq!(lab["last_error"], error.as_str(), "{body}");
    assert!(lab["last_success_at"].as_u64().is_some(), "{body}");
    assert_eq!(names(&lab["targets"]), ["web"], "{body}");
    let web = &lab["targets"][0];
    assert_eq!(web["source"]["cluster"], "lab", "{web}");
    assert_eq!(web["source"]["key"], "qemu/100", "{web}");
}

#[tokio::test]
async fn a_sync_needs_targets_admin_names_a_configured_cluster_and_a_dry_run_audits_nothing() {
    let api = start().await;
    let user = api.login("uma", &["users"]).await;
    let admin = api.login("ada", &["admins"]).await;
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/catalog/sync",
            Some(&user),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let ((status, body), events) = api
        .audited(api.call(
            Method::POST,
            "/v1/catalog/sync",
            Some(&admin),
            Some(json!({"cluster": "elsewhere"})),
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(message(&body).contains("elsewhere"), "{body}");
    assert!(message(&body).contains("lab"), "{body}");
    assert!(events.is_empty(), "{events:?}");
    let ((status, body), events) = api
        .audited(api.call(
            Method::POST,
            "/v1/catalog/sync",
            Some(&admin),
            Some(json!({"cluster": "lab", "dry_run": true})),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["dry_run"], true, "{body}");
    assert_eq!(body["clusters"][0]["cluster"], "lab", "{body}");
    assert!(events.is_empty(), "a dry run audits nothing: {events:?}");
    let (status, body) = api
        .call(Method::GET, "/v1/catalog", Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["clusters"][0]["stale"], false,
        "a dry run writes nothing: {body}"
    );
    // An unknown field is refused by name.
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/catalog/sync",
            Some(&admin),
            Some(json!({"dryrun": true})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn a_sync_without_a_configured_cluster_says_what_to_configure() {
    let api = Api::start_with(POLICY, "", crate::clock::system()).await;
    let admin = api.login("ada", &["admins"]).await;
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/catalog/sync",
            Some(&admin),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(message(&body).contains("[[catalog.proxmox]]"), "{body}");
    let (status, body) = api
        .call(Method::GET, "/v1/catalog", Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["clusters"], json!([]), "{body}");
}

#[tokio::test]
async fn the_inventory_lists_what_the_caller_may_reach_now() {
    let api = start().await;
    let admin = api.login("ada", &["admins"]).await;
    let user = api.login("uma", &["users"]).await;
    for target in [
        json!({"name": "here", "address": "127.0.0.1:7", "zone": "LOCAL", "service": "echo"}),
        json!({"name": "lab", "address": "192.0.2.5:22", "zone": "LAB", "service": "echo"}),
        json!({"name": "by-name", "address": "localhost:7", "zone": "LOCAL", "service": "echo"}),
        json!({"name": "unzoned", "address": "127.0.0.2:7"}),
    ] {
        let (status, body) = api.create_target(&admin, target).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    sync_in(
        &api,
        &[
            discovered(100, "web", "127.0.0.5:7", "running"),
            discovered(101, "asleep", "127.0.0.6:7", "stopped"),
        ],
    )
    .await;
    let (status, body) = api
        .call(Method::GET, "/v1/inventory", Some(&user), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(names(&body["hosts"]), ["here", "web"], "{body}");
    let web = &body["hosts"][1];
    assert_eq!(web["zone"], "LOCAL", "{body}");
    assert_eq!(web["tags"], json!(["web"]), "{body}");
    assert_eq!(web["vmid"], 100, "{body}");
    assert_eq!(web["source"]["node"], "pve1", "{body}");
    // The admin's roles reach LAB, but no cell does: the matrix decides first.
    let (status, body) = api
        .call(Method::GET, "/v1/inventory", Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(names(&body["hosts"]), ["here", "web"], "{body}");
    let (status, _) = api.call(Method::GET, "/v1/inventory", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn targets_are_listed_by_source_and_a_discovered_one_is_not_deleted_by_hand() {
    let api = start().await;
    let admin = api.login("ada", &["admins"]).await;
    let (status, body) = api
        .create_target(
            &admin,
            json!({"name": "hand", "address": "127.0.0.1:7", "zone": "LOCAL", "service": "echo"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    sync_in(&api, &[discovered(100, "web", "127.0.0.5:7", "running")]).await;
    for (query, want) in [
        ("", vec!["hand", "web"]),
        ("?source=manual", vec!["hand"]),
        ("?source=proxmox", vec!["web"]),
        ("?source=lab", vec!["web"]),
    ] {
        let (status, body) = api
            .call(
                Method::GET,
                &format!("/v1/targets{query}"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        assert_eq!(names(&body["items"]), want, "{query}: {body}");
    }
    let (status, body) = api
        .call(Method::GET, "/v1/targets?source=nope", Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(message(&body).contains("manual, proxmox, lab"), "{body}");

    let ((status, body), events) = api
        .audited(api.call(Method::DELETE, "/v1/targets/web", Some(&admin), None))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(message(&body).contains("next catalog sync"), "{body}");
    assert!(message(&body).contains("qemu/100"), "{body}");
    assert!(events.is_empty(), "{events:?}");
    let (status, body) = api
        .call(Method::DELETE, "/v1/targets/hand", Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
}

#[tokio::test]
async fn a_stopped_or_template_guest_is_denied_with_what_to_do_and_audited() {
    let api = start().await;
    let user = api.login("uma", &["users"]).await;
    api.live_worker().await;
    sync_in(
        &api,
        &[
            discovered(100, "asleep", "127.0.0.6:7", "stopped"),
            discovered(9000, "golden", "127.0.0.7:7", "template"),
            discovered(101, "web", "127.0.0.5:7", "running"),
        ],
    )
    .await;
    for (name, says) in [
        (
            "asleep",
            "is a stopped guest in Proxmox (qemu/100): start it",
        ),
        ("golden", "is a template in Proxmox (qemu/9000)"),
    ] {
        let ((status, body), events) = api
            .audited(api.call(
                Method::POST,
                &format!("/v1/targets/{name}/authorize-session"),
                Some(&user),
                Some(client_key()),
            ))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{name}: {body}");
        assert!(message(&body).contains(says), "{name}: {body}");
        assert_eq!(events, ["session_denied"], "{name}");
    }
    // The running one is connectable.
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/targets/web/authorize-session",
            Some(&user),
            Some(client_key()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}
