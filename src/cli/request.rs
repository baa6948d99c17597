//! `portcullis request`: just-in-time access (docs/cli.md, "Access requests"). Ask for a requestable role of
//! the policy for some targets or a zone and a while; approvers approve or deny; the
//! requester, an approver or an administrator revokes. The controller decides everything:
//! this module only asks (`/v1/requests`) and shows.
//!
//! `api` holds the calls (shared with `portcullis run`), `render` the tables and fields.

pub(crate) mod api;
pub(crate) mod render;

use anyhow::Context as _;
use portcullis_proto::access::{CreateAccessRequest, RequestState};

use super::http::{ApiClient, ClientArgs};
use super::output;

#[derive(clap::Subcommand, Debug)]
pub(crate) enum RequestCommand {
    /// Ask for a requestable role, for some targets or a zone, for a while.
    ///
    /// The request waits for the approvals the role asks for (never your own); once approved,
    /// sessions to the targets (or the zone) open as the role grants until it expires. With
    /// --break-glass (only where the role allows it, with a reason) it is approved at once,
    /// for the role's short break-glass maximum, with an alert to the approvers, and its
    /// sessions are recorded where they can be.
    ///
    /// `portcullis dev`'s requestable `echo-oncall` needs an approver from `admins` other
    /// than you (its break-glass approves itself); in a deployment, your policy's
    /// requestable roles.
    ///
    /// Examples:
    ///   portcullis request create --role echo-oncall --targets echo --for 30m --reason "debug echo"
    ///   portcullis request create --role echo-oncall --targets echo --for 5m --break-glass \
    ///       --reason "try break-glass" --json | jq -r .state
    ///
    /// In a deployment:
    ///   portcullis request create --role web-oncall --targets web-01,web-02 --for 2h \
    ///       --reason "INC-1234" --wait
    ///   portcullis request create --role web-oncall --zone WORKLOADS --for 1h --reason "patching"
    ///   portcullis request create --role web-oncall --targets web-01 --for 30m --break-glass \
    ///       --reason "INC-1235: site down, no approver reachable"
    #[command(verbatim_doc_comment)]
    Create(CreateArgs),
    /// List the requests you may see: yours, those you may approve (or all, with
    /// audit:read). Open ones (pending and approved) unless --state or --all says otherwise.
    ///
    /// Examples:
    ///   portcullis request list
    ///   portcullis request list --all --json
    ///
    /// In a deployment:
    ///   portcullis request list --state pending        # what waits for you to approve
    ///   portcullis request list --all --json | jq -r '.[] | select(.break_glass) | .id'
    #[command(verbatim_doc_comment)]
    List {
        /// Only requests in this state: pending, approved, denied, revoked, expired.
        #[arg(long, conflicts_with = "all")]
        state: Option<RequestState>,
        /// Requests in every state, ended ones too.
        #[arg(long)]
        all: bool,
        /// Print a JSON array of the requests instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one request: its scope, state, window, approvals and run.
    ///
    /// Examples:
    ///   portcullis request create --role echo-oncall --targets echo --for 10m --reason "look" --json > req.json
    ///   portcullis request show "$(jq -r .id req.json)"
    ///   portcullis request show "$(jq -r .id req.json)" --json | jq -r .state
    ///
    /// In a deployment:
    ///   portcullis request show ar_0123...
    #[command(verbatim_doc_comment)]
    Show {
        /// The request id (ar_...).
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Approve a pending request (an approver of its role, logged in with MFA recently;
    /// never the requester).
    ///
    /// A refusal that says "log in again" means your login is older than the controller
    /// allows for approving, or had no second factor: run `portcullis login`, then approve.
    ///
    /// In a deployment:
    ///   portcullis request approve ar_0123...
    ///   portcullis request approve ar_0123... --reason "INC-1234 confirmed"
    #[command(verbatim_doc_comment)]
    Approve(DecideArgs),
    /// Deny a pending request (an approver of its role, as for approve).
    ///
    /// In a deployment:
    ///   portcullis request deny ar_0123... --reason "use the staging copy"
    #[command(verbatim_doc_comment)]
    Deny(DecideArgs),
    /// End a request now, pending or approved: its live sessions end at once (the
    /// requester, an approver of its role, or sessions:cancel-any).
    ///
    /// Examples:
    ///   portcullis request create --role echo-oncall --targets echo --for 10m --reason "look" --json > req.json
    ///   portcullis request revoke "$(jq -r .id req.json)" --reason "done early"
    ///
    /// In a deployment:
    ///   portcullis request revoke ar_0123... --reason "done early" --json
    #[command(verbatim_doc_comment)]
    Revoke(DecideArgs),
}

#[derive(clap::Args, Debug)]
pub(crate) struct CreateArgs {
    /// The role: one with `[role.requestable]` in the policy.
    #[arg(long)]
    pub role: String,
    /// The targets (names or ids), separated by commas.
    #[arg(
        long,
        value_delimiter = ',',
        required_unless_present = "zone",
        conflicts_with = "zone",
        value_name = "A,B"
    )]
    pub targets: Vec<String>,
    /// A target zone instead: every target of the zone the role grants.
    #[arg(long, value_name = "ZONE")]
    pub zone: Option<String>,
    /// How long the access lasts once approved: 90s, 30m, 2h (at most the role's maximum).
    #[arg(long = "for", value_name = "DURATION", value_parser = output::parse_duration_secs)]
    pub duration: u64,
    /// Why (required when the role says so, and for --break-glass; 1-500 characters).
    #[arg(long)]
    pub reason: Option<String>,
    /// Approve it yourself, now, as the role's break-glass allows (alerts the approvers).
    #[arg(long, requires = "reason")]
    pub break_glass: bool,
    /// Wait until it is approved, denied or expired (exit 0 only when approved).
    #[arg(long)]
    pub wait: bool,
    /// Print the request as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(clap::Args, Debug)]
pub(crate) struct DecideArgs {
    /// The request id (ar_...).
    pub id: String,
    /// Why (kept with the decision in the audit log).
    #[arg(long)]
    pub reason: Option<String>,
    /// Print the request as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub(crate) async fn run(cmd: RequestCommand) -> anyhow::Result<i32> {
    match cmd {
        RequestCommand::Create(args) => create(args).await,
        RequestCommand::List {
            state,
            all,
            json,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let requests = api::list(&api, state).await?;
            let shown: Vec<_> = requests
                .into_iter()
                .filter(|r| render::listed(r.state, state, all))
                .collect();
            if json {
                output::print_json(&shown)?;
            } else {
                let empty = if all || state.is_some() {
                    "No requests."
                } else {
                    "No open requests (--all shows ended ones too)."
                };
                render::table(&shown).print_or(empty)?;
            }
            Ok(0)
        }
        RequestCommand::Show { id, json, client } => {
            let api = ApiClient::from_args(&client)?;
            let request = api::get(&api, &id).await?;
            if json {
                output::print_json(&request)?;
            } else {
                output::write_stdout(&render::fields(&request))?;
            }
            Ok(0)
        }
        RequestCommand::Approve(args) => decide(args, api::Decision::Approve).await,
        RequestCommand::Deny(args) => decide(args, api::Decision::Deny).await,
        RequestCommand::Revoke(args) => decide(args, api::Decision::Revoke).await,
    }
}

async fn create(args: CreateArgs) -> anyhow::Result<i32> {
    let api = ApiClient::from_args(&args.client)?;
    let body = CreateAccessRequest {
        role: args.role,
        targets: args.targets,
        zone: args.zone,
        duration_secs: args.duration,
        reason: args.reason,
        break_glass: args.break_glass,
        run_command: None,
    };
    let mut request = api::create(&api, &body).await?;
    if args.wait && request.state == RequestState::Pending {
        eprintln!(
            "{} Ctrl-C stops waiting (the request stays).",
            render::waiting(&request)
        );
        request = api::wait_decided(&api, &request.id, |_| {}).await?;
    }
    if args.json {
        output::print_json(&request)?;
    } else {
        output::write_stdout(&render::fields(&request))?;
        if !args.wait && request.state == RequestState::Pending {
            eprintln!("{}", render::waiting(&request));
        }
    }
    Ok(match request.state {
        RequestState::Approved => 0,
        RequestState::Pending if !args.wait => 0,
        _ => i32::from(super::exit::REFUSED),
    })
}

async fn decide(args: DecideArgs, decision: api::Decision) -> anyhow::Result<i32> {
    let api = ApiClient::from_args(&args.client)?;
    let request = api::decide(&api, &args.id, decision, args.reason)
        .await
        .with_context(|| format!("cannot {} request {}", decision.verb(), args.id))?;
    if args.json {
        output::print_json(&request)?;
    } else {
        output::write_stdout(&render::fields(&request))?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests;
