//! The targets page through the router: labels escaped, the edit form only for
//! `targets:admin`, an edit audited exactly as the API's PATCH, a refused change shown with
//! what was typed, and a forged POST refused and audited.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use super::edit::EditValues;
use crate::console::harness::{Client, Got};
use crate::console::policy::tests::POLICY;

const SCRIPT: &str = "<script>alert(1)</script>";

/// A client with target `web` (tagged with a script) made by an admin token; its id.
async fn with_target(c: &Client) -> String {
    let api = &c.f.api;
    let admin = api.login("root", &["admins"]).await;
    let (status, body) = api
        .create_target(
            &admin,
            json!({"name": "web", "address": "127.0.0.1:7", "zone": "LOCAL", "service": "echo",
                   "tags": [SCRIPT]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

/// The target as the API shows it.
async fn target(c: &Client, id: &str) -> Value {
    let api = &c.f.api;
    let token = api.login("root", &["admins"]).await;
    let (status, body) = api
        .call(
            Method::GET,
            &format!("/v1/targets/{id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// The form as a browser sends it: every field as shown, with `changed` over them.
fn fields<'a>(
    shown: &'a EditValues,
    csrf: &'a str,
    changed: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut all = vec![
        ("csrf_token", csrf),
        ("name", shown.name.as_str()),
        ("address", shown.address.as_str()),
        ("zone", shown.zone.as_str()),
        ("service", shown.service.as_str()),
        ("vmid", shown.vmid.as_str()),
        ("tags", shown.tags.as_str()),
        ("pool", shown.pool.as_str()),
        ("max_session_secs", shown.max_session_secs.as_str()),
        ("connection_limit", shown.connection_limit.as_str()),
        ("ssh_host_keys", shown.ssh_host_keys.as_str()),
        ("ssh_host_cas", shown.ssh_host_cas.as_str()),
        ("vault_ssh_mount", shown.vault_ssh_mount.as_str()),
        ("vault_ssh_role", shown.vault_ssh_role.as_str()),
        ("vault_secrets", shown.vault_secrets.as_str()),
        ("proxmox_cluster", shown.proxmox_cluster.as_str()),
    ];
    for (name, value) in changed {
        for field in all.iter_mut().filter(|(n, _)| n == name) {
            field.1 = value;
        }
    }
    all
}

async fn shown(c: &Client, id: &str) -> EditValues {
    let t: portcullis_proto::api::Target = serde_json::from_value(target(c, id).await).unwrap();
    EditValues::of(&t)
}

fn assert_no_script(got: &Got) {
    assert!(!got.body.contains("<script"), "{}", got.body);
    assert!(
        got.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        got.body
    );
}

#[tokio::test]
async fn labels_are_escaped_and_only_targets_admin_gets_the_edit_form() {
    let c = Client::start(POLICY).await;
    let id = with_target(&c).await;
    let reviewer = c.logged_in("rita", &["reviewers"]).await;
    let admin = c.logged_in("ada", &["admins"]).await;

    let read = c.get("/console/targets", &reviewer).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    assert_no_script(&read);
    assert!(
        read.body.contains("<code>127.0.0.1:7</code>"),
        "{}",
        read.body
    );
    assert!(
        !read.body.contains("action=\"/console/targets/"),
        "{}",
        read.body
    );

    let edit = c.get("/console/targets", &admin).await;
    assert_eq!(edit.status, StatusCode::OK);
    assert_no_script(&edit);
    assert!(
        edit.body
            .contains(&format!("action=\"/console/targets/{id}\"")),
        "{}",
        edit.body
    );
    // The tag is in the form's field too, escaped.
    assert!(edit
        .body
        .contains("name=\"tags\" value=\"&lt;script&gt;alert(1)&lt;/script&gt;\""));
}

#[tokio::test]
async fn an_edit_is_audited_as_the_api_patch_is_and_shows_through_the_api() {
    let c = Client::start(POLICY).await;
    let id = with_target(&c).await;
    let admin = c.logged_in("ada", &["admins"]).await;
    let csrf = c.get("/console/targets", &admin).await.csrf();
    let shown = shown(&c, &id).await;
    let form = fields(&shown, &csrf, &[("tags", "edited, by-console")]);
    let path = format!("/console/targets/{id}");
    let (got, events) = c.events(c.post(&path, Some(&admin), &form)).await;
    assert_eq!(got.status, StatusCode::SEE_OTHER, "{}", got.body);
    assert_eq!(got.location(), "/console/targets");
    assert_eq!(events, ["target_updated"]);
    let by_console = c.last_event().await;
    assert_eq!(
        target(&c, &id).await["tags"],
        json!(["edited", "by-console"])
    );

    // The API's PATCH of the same change (after undoing it) writes the same event.
    let api = &c.f.api;
    let token = api.login("ada-api", &["admins"]).await;
    for tags in [json!([SCRIPT]), json!(["edited", "by-console"])] {
        let (status, body) = api
            .call(
                Method::PATCH,
                &format!("/v1/targets/{id}"),
                Some(&token),
                Some(json!({ "tags": tags })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let by_api = c.last_event().await;
    for key in ["type", "decision", "target_id", "details"] {
        assert_eq!(
            by_console[key], by_api[key],
            "{key}: {by_console} vs {by_api}"
        );
    }
    assert_eq!(by_console["actor"]["user"], "ada");
    assert_eq!(by_console["type"], "target_updated");
}

#[tokio::test]
async fn a_refused_change_comes_back_with_what_was_typed_and_changes_nothing() {
    let c = Client::start(POLICY).await;
    let id = with_target(&c).await;
    let admin = c.logged_in("ada", &["admins"]).await;
    let csrf = c.get("/console/targets", &admin).await.csrf();
    let shown = shown(&c, &id).await;
    let path = format!("/console/targets/{id}");
    for (changed, field, words) in [
        (("address", "no port here"), "address", "is not HOST:PORT"),
        (
            ("max_session_secs", "8h"),
            "max_session_secs",
            "is not a number",
        ),
        (("zone", "MARS"), "zone", "MARS"),
    ] {
        let form = fields(&shown, &csrf, &[changed, ("pool", "typed-pool")]);
        let (got, events) = c.events(c.post(&path, Some(&admin), &form)).await;
        assert_eq!(
            got.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{changed:?}: {}",
            got.body
        );
        assert_eq!(events, Vec::<String>::new(), "{changed:?}");
        assert!(got.body.contains(words), "{changed:?}: {}", got.body);
        assert!(got.body.contains("<details open>"), "{changed:?}");
        // What was typed is still there, the field at fault marked.
        assert!(
            got.body.contains("name=\"pool\" value=\"typed-pool\""),
            "{changed:?}"
        );
        let at = got.body.find(&format!("name=\"{field}\"")).unwrap();
        let input = &got.body[at..at + got.body[at..].find('>').unwrap()];
        assert!(
            input.contains(&format!("value=\"{}\"", changed.1)),
            "{input}"
        );
        assert!(
            input.contains("aria-invalid=\"true\""),
            "{changed:?}: {input}"
        );
    }
    assert_eq!(target(&c, &id).await["pool"], Value::Null);
}

#[tokio::test]
async fn a_post_without_targets_admin_or_csrf_token_is_refused_and_audited() {
    let c = Client::start(POLICY).await;
    let id = with_target(&c).await;
    let reviewer = c.logged_in("rita", &["reviewers"]).await;
    let admin = c.logged_in("ada", &["admins"]).await;
    let shown = shown(&c, &id).await;
    let path = format!("/console/targets/{id}");

    // A reviewer's own (valid) CSRF token: the permission still refuses.
    let csrf = c.get("/console/sessions", &reviewer).await.csrf();
    let form = fields(&shown, &csrf, &[("tags", "forged")]);
    let (got, events) = c.events(c.post(&path, Some(&reviewer), &form)).await;
    assert_eq!(got.status, StatusCode::FORBIDDEN, "{}", got.body);
    assert_eq!(events, ["permission_denied"]);
    assert!(got.body.contains("targets:admin"), "{}", got.body);

    // An admin's form without the CSRF token.
    let mut form = fields(&shown, "", &[("tags", "forged")]);
    form.retain(|(name, _)| *name != "csrf_token");
    let (got, events) = c.events(c.post(&path, Some(&admin), &form)).await;
    assert_eq!(got.status, StatusCode::FORBIDDEN, "{}", got.body);
    assert_eq!(events, ["permission_denied"]);

    assert_eq!(target(&c, &id).await["tags"], json!([SCRIPT]));
}
