//! `portcullis status`: which profile (or settings) the CLI uses, whether each controller
//! answers and how fast, the CA trusted, who the token belongs to and when it expires. The
//! exit status is UNREACHABLE (8) when no controller answers, UNAUTHENTICATED (4) when one
//! does but the token is missing, expired or refused, 0 otherwise.

use anyhow::Context as _;
use portcullis_proto::api::UserInfo;
use portcullis_proto::clock::{Clock as _, SystemClock};
use serde::Serialize;

use super::exit;
use super::http::{ApiClient, ApiError, ClientArgs};
use super::output;
use super::profile::fingerprint::Fingerprint;

/// Show the profile in use, each controller's reachability, the CA, the user and the
/// token's expiry.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Exit status: 0 when a controller answers and the token is good, 4 when the token is missing,
expired or refused (run `portcullis login`), 8 when no controller answers.

Examples:
  # After `portcullis dev` and `. STATE/dev.env`:
  portcullis status
  portcullis status --json | jq '.controllers[] | select(.reachable | not)'

In a deployment:
  portcullis status                          # the current profile
  portcullis status --profile staging        # another one
  PORTCULLIS_PROFILE=prod portcullis status --json")]
pub(crate) struct StatusArgs {
    /// Print JSON instead of fields.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// What `status --json` prints.
#[derive(Debug, Serialize)]
struct Status {
    /// The profile's name; `null` when the settings come from flags, environment or the
    /// older files.
    profile: Option<String>,
    profile_file: Option<String>,
    controllers: Vec<Controller>,
    ca_file: String,
    ca_fingerprints: Vec<String>,
    user: Option<String>,
    /// `valid`, `expired`, `refused` (revoked or unknown to the controller), `none` (no
    /// token), or `unknown` (no controller answered).
    token: &'static str,
    token_expires_at: Option<u64>,
}

#[derive(Debug, Serialize)]
struct Controller {
    addr: String,
    reachable: bool,
    latency_ms: Option<u64>,
    error: Option<String>,
}

pub(crate) async fn run(args: StatusArgs) -> anyhow::Result<i32> {
    let settings = args.client.resolve()?;
    let profile = settings.profile.clone();
    let api = ApiClient::new(settings)?;
    let probes = futures_util::future::join_all(api.addrs().iter().map(|a| api.probe(a))).await;
    let controllers: Vec<Controller> = api
        .addrs()
        .iter()
        .zip(probes)
        .map(|(addr, probe)| match probe {
            Ok(took) => Controller {
                addr: addr.clone(),
                reachable: true,
                latency_ms: Some(u64::try_from(took.as_millis()).unwrap_or(u64::MAX)),
                error: None,
            },
            Err(err) => Controller {
                addr: addr.clone(),
                reachable: false,
                latency_ms: None,
                error: Some(format!("{err:#}")),
            },
        })
        .collect();
    let any_reachable = controllers.iter().any(|c| c.reachable);
    let (user, token, token_expires_at) = if !api.has_token() {
        (None, "none", None)
    } else if !any_reachable {
        (None, "unknown", None)
    } else {
        match api.get::<UserInfo>("/v1/whoami").await {
            Ok(info) => {
                let expired = info
                    .token_expires_at
                    .is_some_and(|at| at <= SystemClock.unix_secs());
                let token = if expired { "expired" } else { "valid" };
                (Some(info.username), token, info.token_expires_at)
            }
            Err(err) => match err.downcast_ref::<ApiError>() {
                Some(e) if e.status == 401 => (None, "refused", None),
                _ => return Err(err).context("cannot ask the controller who you are"),
            },
        }
    };
    let ca_fingerprints = std::fs::read(api.ca_path())
        .ok()
        .map(|pem| {
            use rustls_pki_types::pem::PemObject as _;
            rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
                .filter_map(Result::ok)
                .map(|c| Fingerprint::of_der(c.as_ref()).to_string())
                .collect()
        })
        .unwrap_or_default();
    let status = Status {
        profile: profile.as_ref().map(|p| p.name.clone()),
        profile_file: profile.as_ref().map(|p| p.file().display().to_string()),
        controllers,
        ca_file: api.ca_path().display().to_string(),
        ca_fingerprints,
        user,
        token,
        token_expires_at,
    };
    if args.json {
        output::print_json(&status)?;
    } else {
        print_fields(&status)?;
    }
    Ok(i32::from(if !any_reachable {
        exit::UNREACHABLE
    } else if token == "valid" {
        0
    } else {
        exit::UNAUTHENTICATED
    }))
}

fn print_fields(status: &Status) -> anyhow::Result<()> {
    let mut fields = vec![(
        "profile",
        match (&status.profile, &status.profile_file) {
            (Some(name), Some(file)) => format!("{name} ({file})"),
            _ => "none (flags, PORTCULLIS_* or CONFIG/portcullis/{addr,ca.pem,token})".to_owned(),
        },
    )];
    for c in &status.controllers {
        let state = match (&c.latency_ms, &c.error) {
            (Some(ms), _) => format!("reachable ({ms} ms)"),
            (None, Some(err)) => format!("unreachable: {err}"),
            (None, None) => "unreachable".to_owned(),
        };
        fields.push(("controller", format!("{} {state}", c.addr)));
    }
    fields.push((
        "ca",
        format!("{} {}", status.ca_file, status.ca_fingerprints.join(", ")),
    ));
    fields.push(("user", output::or_dash(status.user.as_deref())));
    fields.push((
        "token",
        match status.token {
            "valid" => format!("valid until {}", output::opt_time(status.token_expires_at)),
            "expired" => "expired — run `portcullis login`".to_owned(),
            "refused" => "refused (expired or revoked) — run `portcullis login`".to_owned(),
            "none" => "none — run `portcullis login`".to_owned(),
            other => other.to_owned(),
        },
    ));
    output::print_fields(&fields)
}
