//! `portcullis policy simulate`: what a user could reach under a policy, by target zone and
//! service, from each source zone: offline for given groups, or over the API for a user the
//! controller knows (the groups of their last login).

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use portcullis_policy::diff::Simulation;
use portcullis_policy::{Identity, Outcome};
use portcullis_proto::clock::{Clock as _, SystemClock};
use portcullis_proto::text::escaped;

use super::{load, read};
use crate::cli::http::{ApiClient, ClientArgs};
use crate::cli::output;

#[derive(Debug, clap::Args)]
pub(crate) struct SimulateArgs {
    /// The policy file [with --user: default, the controller's loaded policy].
    #[arg(long, env = "PORTCULLIS_POLICY")]
    pub policy: Option<PathBuf>,
    /// A user the controller knows: simulated with the groups, amr and acr of their last
    /// login (over the API; needs `policy:reload`).
    #[arg(long, conflicts_with_all = ["groups", "amr", "acr", "auth_age"])]
    pub user: Option<String>,
    /// Offline: the user's identity-provider groups, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub groups: Vec<String>,
    /// Offline: authentication methods (OIDC `amr`), comma-separated, e.g. `pwd,mfa`.
    #[arg(long, value_delimiter = ',')]
    pub amr: Vec<String>,
    /// Offline: authentication context class (OIDC `acr`).
    #[arg(long)]
    pub acr: Option<String>,
    /// Offline: how long ago the user authenticated, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub auth_age: u64,
    /// List the denials the network matrix makes too (by default only those of the roles).
    #[arg(long)]
    pub all: bool,
    /// Print every (target zone, service, source zone) as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Runs the simulation; 0 when the user reaches something, 1 when nothing.
pub(crate) async fn run(args: &SimulateArgs) -> anyhow::Result<i32> {
    let sim = match &args.user {
        Some(user) => {
            let body = match &args.policy {
                Some(path) => {
                    load(path)?;
                    serde_json::json!({ "policy": read(path)? })
                }
                // No policy: the loaded one.
                None => serde_json::json!({}),
            };
            let api = ApiClient::from_args(&args.client)?;
            let path = format!("/v1/policy/simulate?user={}", query_escape(user));
            api.post::<_, Simulation>(&path, &body)
                .await
                .with_context(|| format!("cannot simulate user {}", escaped(user)))?
        }
        None => {
            let path = args.policy.as_ref().ok_or_else(|| {
                anyhow::anyhow!(
                    "policy simulate needs --policy FILE (or PORTCULLIS_POLICY) without --user"
                )
            })?;
            let policy = load(path)?;
            let now = SystemClock.unix_secs();
            let identity = Identity {
                subject: "user".into(),
                preferred_username: Some("user".into()),
                groups: args.groups.clone(),
                amr: args.amr.clone(),
                acr: args.acr.clone(),
                auth_time: Some(now.saturating_sub(args.auth_age)),
                ..Identity::default()
            };
            Simulation {
                user: String::new(),
                groups: args.groups.clone(),
                amr: args.amr.clone(),
                policy_hash: policy.hash().to_owned(),
                reach: portcullis_policy::simulate(&policy, &identity, now),
            }
        }
    };
    if args.json {
        output::print_json(&sim)?;
    } else {
        output::write_stdout(&render(&sim, args.all))?;
    }
    let reaches = sim.reach.iter().any(|r| r.outcome == Outcome::Allow);
    Ok(if reaches { 0 } else { 1 })
}

fn render(sim: &Simulation, all: bool) -> String {
    let mut out = String::new();
    let who = if sim.user.is_empty() {
        "groups".to_owned()
    } else {
        format!("{}, groups", escaped(&sim.user))
    };
    let _ = writeln!(
        out,
        "{who} [{}], amr [{}], policy {}:",
        escaped(sim.groups.join(", ")),
        escaped(sim.amr.join(", ")),
        sim.policy_hash.get(..12).unwrap_or(&sim.policy_hash)
    );
    let mut any = false;
    for r in &sim.reach {
        let shown = r.outcome == Outcome::Allow || r.matrix_admits || all;
        if !shown {
            continue;
        }
        any = true;
        let route = format!(
            "{} {} from {}",
            escaped(&r.target_zone),
            escaped(&r.service),
            escaped(&r.source_zone)
        );
        if r.outcome == Outcome::Allow {
            let _ = writeln!(out, "  ALLOW {route}: role {}", escaped(r.roles.join(", ")));
        } else {
            let _ = writeln!(out, "  DENY  {route}: {}", escaped(&r.reason));
        }
    }
    if !any {
        out.push_str("  nothing: the matrix admits no session this identity could ask for (--all lists why)\n");
    }
    out
}

/// A user name as a query value: unreserved characters as they are, the rest %-encoded.
fn query_escape(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}
