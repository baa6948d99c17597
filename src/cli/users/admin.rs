//! `portcullis users add|list|show|disable|reset`: local users over the API
//! (`/v1/users/local`, docs/auth.md "Administering local users"). Each needs `users:admin`
//! and a login that met MFA. A one-time password the controller generates is printed once,
//! alone on stdout (so a script can capture it), and what to do next on stderr.

use anyhow::Context as _;
use portcullis_proto::text::escaped;
use portcullis_proto::users::{
    AddLocalUser, LocalUserChanged, LocalUserDisabled, LocalUserList, LocalUserView,
    ServiceAccountList, ServiceAccountView,
};
use serde::Serialize;

use super::UsersCommand;
use crate::cli::http::{segment, ApiClient, ApiError};
use crate::cli::output::{self, Table};

pub(super) async fn run(cmd: UsersCommand) -> anyhow::Result<i32> {
    match cmd {
        UsersCommand::Add {
            name,
            groups,
            json,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let body = AddLocalUser {
                username: name.clone(),
                groups,
            };
            let added: LocalUserChanged = api
                .post("/v1/users/local", &body)
                .await
                .with_context(|| format!("cannot add the local user {}", escaped(&name)))?;
            show_changed(&added, "created", "local_user_created", json)?;
        }
        UsersCommand::List { json, client } => {
            let api = ApiClient::from_args(&client)?;
            let local: LocalUserList = api
                .get("/v1/users/local")
                .await
                .context("cannot list the local users")?;
            let services = service_accounts(&api).await?;
            show_list(&local.users, services.as_deref(), json)?;
        }
        UsersCommand::Show { name, json, client } => {
            let api = ApiClient::from_args(&client)?;
            let user: LocalUserView = api
                .get(&format!("/v1/users/local/{}", segment(&name)?))
                .await
                .with_context(|| format!("cannot show the local user {}", escaped(&name)))?;
            if json {
                output::print_json(&user)?;
            } else {
                output::print_fields(&fields(&user))?;
            }
        }
        UsersCommand::Disable { name, json, client } => {
            let api = ApiClient::from_args(&client)?;
            let disabled: LocalUserDisabled = api
                .post(
                    &format!("/v1/users/local/{}/disable", segment(&name)?),
                    &serde_json::json!({}),
                )
                .await
                .with_context(|| format!("cannot disable the local user {}", escaped(&name)))?;
            if json {
                output::print_json(&disabled)?;
            } else {
                output::write_stdout(&format!(
                    "local user {} disabled: it can no longer log in; {} token(s) revoked and its \
                     live sessions ended; recorded as local_user_disabled\n",
                    escaped(&disabled.user.username),
                    disabled.revoked_token_ids.len()
                ))?;
            }
        }
        UsersCommand::Reset { name, json, client } => {
            let api = ApiClient::from_args(&client)?;
            let reset: LocalUserChanged = api
                .post(
                    &format!("/v1/users/local/{}/reset", segment(&name)?),
                    &serde_json::json!({}),
                )
                .await
                .with_context(|| format!("cannot reset the local user {}", escaped(&name)))?;
            show_changed(
                &reset,
                "reset (TOTP and recovery codes cleared)",
                "local_user_reset",
                json,
            )?;
        }
        other => anyhow::bail!("not a local user command: {other:?}"),
    }
    Ok(0)
}

/// The service accounts, when this controller has them: `None` while
/// `GET /v1/users/services` answers 501 (a controller without service accounts yet) or 404.
async fn service_accounts(api: &ApiClient) -> anyhow::Result<Option<Vec<ServiceAccountView>>> {
    match api.get::<ServiceAccountList>("/v1/users/services").await {
        Ok(list) => Ok(Some(list.accounts)),
        Err(err)
            if err
                .downcast_ref::<ApiError>()
                .is_some_and(|e| matches!(e.status, 404 | 501)) =>
        {
            Ok(None)
        }
        Err(err) => Err(err.context("cannot list the service accounts")),
    }
}

/// The one-time password alone on stdout, what to do with it on stderr (`--json`: the
/// answer as it is, password included).
fn show_changed(
    changed: &LocalUserChanged,
    what: &str,
    event: &str,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        return output::print_json(changed);
    }
    let name = escaped(&changed.user.username);
    output::write_stdout(&format!("{}\n", changed.one_time_password))?;
    eprintln!(
        "local user {name} {what} (groups: {}); recorded as {event}.\n\
         The one-time password above is shown once: give it to {name} over a safe channel. \
         They log in with\n  portcullis login --password --user {name}\n\
         then set their own password and enrol TOTP.",
        escaped(&changed.user.groups.join(",")),
    );
    Ok(())
}

/// `users list --json`: the local users, and the service accounts when the controller has
/// them.
#[derive(Serialize)]
struct Listed<'a> {
    users: &'a [LocalUserView],
    #[serde(skip_serializing_if = "Option::is_none")]
    service_accounts: Option<&'a [ServiceAccountView]>,
}

fn show_list(
    users: &[LocalUserView],
    services: Option<&[ServiceAccountView]>,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        return output::print_json(&Listed {
            users,
            service_accounts: services,
        });
    }
    let mut table = Table::new(["NAME", "KIND", "GROUPS", "TOTP", "STATE", "CREATED"]);
    for u in users {
        table.row([
            u.username.clone(),
            "local".into(),
            u.groups.join(","),
            yes_no(u.totp_enrolled).into(),
            state(u).into(),
            output::time(u.created_at),
        ]);
    }
    for s in services.unwrap_or_default() {
        table.row([
            s.name.clone(),
            "service".into(),
            s.groups.join(","),
            "-".into(),
            if s.key_revoked_at.is_some() {
                "key revoked"
            } else {
                "active"
            }
            .into(),
            output::time(s.created_at),
        ]);
    }
    table.print_or("No local users.")
}

fn fields(u: &LocalUserView) -> Vec<(&'static str, String)> {
    vec![
        ("Name", u.username.clone()),
        ("Id", u.id.clone()),
        ("Groups", u.groups.join(",")),
        ("State", state(u).into()),
        ("TOTP enrolled", yes_no(u.totp_enrolled).into()),
        (
            "Must change password",
            yes_no(u.must_change_password).into(),
        ),
        ("Recovery codes left", u.recovery_codes_left.to_string()),
        ("Disabled at", output::opt_time(u.disabled_at)),
        ("Created", output::time(u.created_at)),
    ]
}

/// `disabled`, `enrolling` (its password is one-time: it has not logged in since it was
/// added or reset) or `active`.
fn state(u: &LocalUserView) -> &'static str {
    if u.disabled_at.is_some() {
        "disabled"
    } else if u.must_change_password {
        "enrolling"
    } else {
        "active"
    }
}

fn yes_no(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "no"
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn user(name: &str, disabled: bool, must_change: bool) -> LocalUserView {
        LocalUserView {
            id: format!("u_{name}"),
            username: name.into(),
            groups: vec!["ops".into(), "admins".into()],
            totp_enrolled: !must_change,
            must_change_password: must_change,
            recovery_codes_left: 10,
            disabled_at: disabled.then_some(1_700_000_100),
            created_at: 1_700_000_000,
        }
    }

    #[test]
    fn a_users_state_says_disabled_before_enrolling() {
        assert_eq!(state(&user("a", true, true)), "disabled");
        assert_eq!(state(&user("a", false, true)), "enrolling");
        assert_eq!(state(&user("a", false, false)), "active");
    }

    #[test]
    fn show_lists_every_field_but_no_credential() {
        let shown = output::render_fields(&fields(&user("bob", true, false)));
        assert!(shown.contains("Groups:"), "{shown}");
        assert!(shown.contains("ops,admins"), "{shown}");
        assert!(shown.contains("Disabled at:"), "{shown}");
        assert!(shown.contains("2023-11-14T22:15:00Z"), "{shown}");
        assert!(shown.contains("Recovery codes left:   10"), "{shown}");
    }

    #[test]
    fn the_json_list_leaves_service_accounts_out_when_the_controller_has_none() {
        let users = [user("bob", false, false)];
        let without = serde_json::to_value(Listed {
            users: &users,
            service_accounts: None,
        })
        .unwrap();
        assert_eq!(without["users"][0]["username"], "bob");
        assert!(without.get("service_accounts").is_none(), "{without}");
    }
}
