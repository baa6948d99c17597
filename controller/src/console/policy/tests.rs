//! The policy page through the router: the grid's cells for a three-zone policy, the
//! roles, the explain form's answers, and who may read it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use axum::http::StatusCode;
use serde_json::json;

use crate::console::harness::Client;

/// LOCAL → LOCAL allows echo, LOCAL → WORK is broker-only for ssh and echo, WORK → LOCAL
/// denies; everything else is undeclared (a deny).
pub(crate) const POLICY: &str = r#"
[settings]
broker_zone = "LOCAL"

[[zone]]
name = "LOCAL"
cidrs = ["127.0.0.0/8"]

[[zone]]
name = "WORK"
cidrs = ["10.40.0.0/16"]

[[zone]]
name = "DMZ"
cidrs = ["10.50.0.0/16"]

[[service]]
name = "echo"
ports = "any"

[[service]]
name = "ssh"
ports = [22]

[[cell]]
from = "LOCAL"
to = "LOCAL"
access = "allow"
services = ["echo"]

[[cell]]
from = "LOCAL"
to = "WORK"
access = "broker-only"
services = ["ssh", "echo"]
note = "sessions only"

[[cell]]
from = "WORK"
to = "LOCAL"
access = "deny"

[[role]]
name = "admin"
description = "runs the place"
groups = ["admins"]
permissions = ["targets:admin", "workers:admin", "audit:read"]

[[role.grant]]
zones = ["*"]
services = ["*"]

[[role]]
name = "reviewer"
groups = ["reviewers"]
permissions = ["audit:read"]

[[role]]
name = "user"
groups = ["users"]

[[role.grant]]
zones = ["LOCAL"]
services = ["echo"]
"#;

#[tokio::test]
async fn the_grid_has_every_zone_pair_with_its_access_and_services_and_the_roles() {
    let c = Client::start(POLICY).await;
    let reviewer = c.logged_in("rita", &["reviewers"]).await;
    let got = c.get("/console/policy", &reviewer).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    let body = &got.body;
    assert_eq!(body.matches("<td class=\"cell ").count(), 9, "{body}");
    for cell in [
        "<td class=\"cell allow\" data-label=\"LOCAL → LOCAL\" title=\"LOCAL → LOCAL: allow: echo\">\
         <span class=\"access allow\">allow</span> <span class=\"services\">echo</span></td>",
        "<td class=\"cell broker-only\" data-label=\"LOCAL → WORK\" \
         title=\"LOCAL → WORK: broker-only: echo, ssh — sessions only\">\
         <span class=\"access broker-only\">broker-only</span> \
         <span class=\"services\">echo, ssh</span></td>",
        "<td class=\"cell deny\" data-label=\"WORK → LOCAL\" title=\"WORK → LOCAL: deny\">\
         <span class=\"access deny\">deny</span></td>",
        "<td class=\"cell deny\" data-label=\"DMZ → DMZ\" title=\"DMZ → DMZ: deny\">\
         <span class=\"access deny\">deny</span></td>",
    ] {
        assert!(body.contains(cell), "no {cell} in {body}");
    }
    // Rows in file order, each headed by its source zone.
    let rows: Vec<usize> = ["LOCAL", "WORK", "DMZ"]
        .iter()
        .map(|z| body.find(&format!("<th scope=\"row\">{z}</th>")).unwrap())
        .collect();
    assert!(rows.windows(2).all(|w| w[0] < w[1]), "{rows:?}");
    // The roles with their groups, grants and permissions.
    assert!(body.contains("<strong>admin</strong><br><span class=\"hint\">runs the place</span>"));
    assert!(body.contains("every zone: every service"), "{body}");
    assert!(body.contains("<li>LOCAL: echo</li>"), "{body}");
    assert!(
        body.contains("targets:admin, workers:admin, audit:read"),
        "{body}"
    );
}

#[tokio::test]
async fn explain_answers_for_a_user_and_a_target_as_policy_explain_does() {
    let c = Client::start(POLICY).await;
    let reviewer = c.logged_in("rita", &["reviewers"]).await;
    let api = &c.f.api;
    let admin = api.login("root", &["admins"]).await;
    let (status, body) = api
        .create_target(
            &admin,
            json!({"name": "web", "address": "127.0.0.1:7", "zone": "LOCAL", "service": "echo"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // `uma` has logged in once (the policy reads the groups of her login).
    api.login("uma", &["users"]).await;

    let allowed = c
        .get(
            "/console/policy?user=uma&from=127.0.0.1&target=web",
            &reviewer,
        )
        .await;
    assert_eq!(allowed.status, StatusCode::OK, "{}", allowed.body);
    assert!(
        allowed
            .body
            .contains("<span class=\"access allow\">Allowed</span>"),
        "{}",
        allowed.body
    );
    // The CLI's words, line for line.
    assert!(
        allowed.body.contains("prints it\">ALLOW: "),
        "{}",
        allowed.body
    );
    assert!(allowed
        .body
        .contains("  from LOCAL to LOCAL, service echo\n"));
    assert!(allowed.body.contains("  checked: "));
    // The form keeps the question.
    assert!(allowed
        .body
        .contains("name=\"user\" required placeholder=\"ada\" value=\"uma\""));

    // From the WORK zone the matrix denies.
    let denied = c
        .get(
            "/console/policy?user=uma&from=10.40.0.9&target=web",
            &reviewer,
        )
        .await;
    assert_eq!(denied.status, StatusCode::OK);
    assert!(
        denied
            .body
            .contains("<span class=\"access deny\">Denied</span>"),
        "{}",
        denied.body
    );
    assert!(denied.body.contains("prints it\">DENY: "));

    // A question naming nothing known is answered on the form, its field marked.
    for (query, field, words) in [
        (
            "user=nobody&from=127.0.0.1&target=web",
            "user",
            "no user named",
        ),
        (
            "user=uma&from=here&target=web",
            "from",
            "is not an IP address",
        ),
        (
            "user=uma&from=127.0.0.1&target=nope",
            "target",
            "no target is named",
        ),
    ] {
        let got = c.get(&format!("/console/policy?{query}"), &reviewer).await;
        assert_eq!(got.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert!(got.body.contains(words), "{query}: {}", got.body);
        let marked = format!("name=\"{field}\" required");
        let at = got.body.find(&marked).unwrap();
        let input_end = at + got.body[at..].find('>').unwrap();
        assert!(
            got.body[at..input_end].contains("aria-invalid=\"true\""),
            "{query}: {}",
            &got.body[at..input_end]
        );
    }
}

#[tokio::test]
async fn without_audit_read_or_policy_reload_the_page_is_refused_and_audited() {
    let c = Client::start(POLICY).await;
    let user = c.logged_in("uma", &["users"]).await;
    let (got, events) = c.events(c.get("/console/policy", &user)).await;
    assert_eq!(got.status, StatusCode::FORBIDDEN, "{}", got.body);
    assert_eq!(events, ["permission_denied"]);
    assert!(got.body.contains("audit:read"), "{}", got.body);
    assert!(
        !got.body.contains("class=\"cell"),
        "the grid leaked: {}",
        got.body
    );
    let event = c.last_event().await;
    assert_eq!(event["actor"]["user"], "uma", "{event}");

    // Its explain answers nothing either.
    let (got, events) = c
        .events(c.get("/console/policy?user=uma&from=127.0.0.1&target=web", &user))
        .await;
    assert_eq!(got.status, StatusCode::FORBIDDEN);
    assert_eq!(events, ["permission_denied"]);
}
