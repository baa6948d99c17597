//! `portcullis policy`: check, explain, export, diff and simulate the zone matrix policy.

mod diff;
mod simulate;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use portcullis_policy::export::{self, ExportOptions};
use portcullis_policy::{explain, Identity, Policy, ZonedRequest};
use portcullis_proto::clock::{Clock as _, SystemClock};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum PolicyCommand {
    /// Check a policy file: every error and warning with its line.
    ///
    /// Exit status 0 when the file is valid (warnings allowed), 1 when it is not.
    ///
    /// Examples:
    ///   portcullis policy check "$PORTCULLIS_POLICY"     # `portcullis dev`'s (dev.env sets it)
    ///
    /// In a deployment:
    ///   portcullis policy check /etc/portcullis/policy.toml
    #[command(verbatim_doc_comment)]
    Check {
        /// The policy file.
        file: PathBuf,
    },
    /// Explain the decision for a user reaching a target: allowed or not, and why.
    ///
    /// Exit status 0 when allowed, 1 when denied.
    ///
    /// Examples:
    ///   # With `portcullis dev`'s policy (dev.env sets PORTCULLIS_POLICY):
    ///   portcullis policy explain --groups users --from 127.0.0.1 --to 127.0.0.1 --service echo
    ///   portcullis policy explain --groups users --from LOCAL --to LOCAL --service echo --json
    ///
    /// In a deployment (config/policy.toml):
    ///   portcullis policy explain --policy config/policy.toml --groups admins --amr mfa --from ON-PREM-ADMIN --to PROXMOX-MGMT --service proxmox-api
    ///   portcullis policy explain --policy config/policy.toml --groups projects --from 10.10.1.10 --to vmid:4012 --service ssh --json
    ///   portcullis policy explain --policy config/policy.toml --from WORKLOADS --to 10.40.0.9 --service app-traffic --via-direct
    #[command(verbatim_doc_comment)]
    Explain(ExplainArgs),
    /// Export the matrix: a Markdown table, an nftables ruleset, or Proxmox VE firewall files.
    ///
    /// Examples:
    ///   # With `portcullis dev`'s policy (dev.env sets PORTCULLIS_POLICY):
    ///   portcullis policy export --format markdown > matrix.md
    ///   portcullis policy export --format nftables --worker-addr 127.0.0.1 > portcullis.nft
    ///   portcullis policy export --format proxmox --worker-addr 127.0.0.1 --out fw/
    ///
    /// In a deployment (config/policy.toml):
    ///   portcullis policy export --policy config/policy.toml --format markdown > docs/matrix.md
    ///   portcullis policy export --policy config/policy.toml --format nftables --worker-addr 10.10.5.10 > portcullis.nft && nft -c -f portcullis.nft
    ///   portcullis policy export --policy config/policy.toml --format proxmox --worker-addr 10.10.5.10 --target 4012:WORKLOADS --out fw/
    #[command(verbatim_doc_comment)]
    Export(ExportArgs),
    /// Compare two policy files: every (role, source zone, target zone, service) decision
    /// that changes, with the rule responsible; with --live, against the controller's loaded
    /// policy, adding the users, targets and live sessions the change would allow, deny or
    /// end, before anything is reloaded.
    ///
    /// Exit status 0 when nothing changes, 1 when something does (like diff(1)); an error
    /// is 2 or more (see `portcullis --help`).
    ///
    /// Examples:
    ///   # With `portcullis dev`'s policy (dev.env sets PORTCULLIS_POLICY):
    ///   portcullis policy diff "$PORTCULLIS_POLICY" "$PORTCULLIS_POLICY"
    ///   cp "$PORTCULLIS_POLICY" my-policy.toml && portcullis policy diff --live my-policy.toml
    ///   portcullis policy diff --live "$PORTCULLIS_POLICY" --json
    ///
    /// In a deployment:
    ///   portcullis policy diff config/policy.toml my-policy.toml
    ///   portcullis policy diff /etc/portcullis/policy.toml new.toml --json | jq '.changes[] | select(.kind == "denied")'
    ///   portcullis policy diff --live new.toml && echo "nothing would change"
    #[command(verbatim_doc_comment)]
    Diff(diff::DiffArgs),
    /// What a user could reach under a policy: per target zone and service, from each source
    /// zone, allowed (by which role) or why not. `--user` asks the controller for the groups
    /// of the user's last login; `--groups` (and `--amr`, `--acr`) simulate offline.
    ///
    /// Exit status 0 when the user reaches something, 1 when nothing; an error is 2 or more.
    ///
    /// Examples:
    ///   # With `portcullis dev` (dev.env sets PORTCULLIS_POLICY; its user is `admin`):
    ///   portcullis policy simulate --groups users
    ///   portcullis policy simulate --user admin
    ///   portcullis policy simulate --user admin --policy "$PORTCULLIS_POLICY" --json
    ///
    /// In a deployment:
    ///   portcullis policy simulate --user alice --policy new.toml
    ///   portcullis policy simulate --policy config/policy.toml --groups admins --amr mfa --all
    #[command(verbatim_doc_comment)]
    Simulate(simulate::SimulateArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct ExplainArgs {
    /// The policy file.
    #[arg(long, env = "PORTCULLIS_POLICY")]
    pub policy: PathBuf,
    /// The user's identity-provider groups, comma-separated (e.g. `admins,/org/ops`).
    #[arg(long, value_delimiter = ',')]
    pub groups: Vec<String>,
    /// Authentication methods (OIDC `amr`), comma-separated, e.g. `pwd,otp`.
    #[arg(long, value_delimiter = ',')]
    pub amr: Vec<String>,
    /// Authentication context class (OIDC `acr`).
    #[arg(long)]
    pub acr: Option<String>,
    /// How long ago the user authenticated, in seconds (OIDC `auth_time`, relative to now).
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub auth_age: u64,
    /// The user's login name, for rendering login templates.
    #[arg(long, default_value = "user")]
    pub username: String,
    /// Where the user connects from: a zone name, an IP address, or `vmid:N`.
    #[arg(long, value_name = "ZONE|IP|vmid:N")]
    pub from: String,
    /// The target: a zone name, an IP address, or `vmid:N` (e.g. `vmid:4012`).
    #[arg(long, value_name = "ZONE|IP|vmid:N")]
    pub to: String,
    /// The service, as named in the policy (e.g. `ssh`, `proxmox-api`).
    #[arg(long)]
    pub service: String,
    /// A port to check against the service's ports (default: any of them).
    #[arg(long)]
    pub port: Option<u16>,
    /// Ask about a direct network flow instead of a Portcullis session.
    #[arg(long)]
    pub via_direct: bool,
    /// Print the decision as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ExportFormat {
    /// Seed-style Markdown tables.
    Markdown,
    /// An nftables ruleset (`nft -f`) for a firewall routing between the zones.
    Nftables,
    /// Proxmox VE `cluster.fw` and `<vmid>.fw` files.
    Proxmox,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ExportArgs {
    /// The policy file.
    #[arg(long, env = "PORTCULLIS_POLICY")]
    pub policy: PathBuf,
    /// The output format.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// A worker's address (repeatable). Broker-only cells admit traffic only from these;
    /// without any, the broker zone's CIDRs stand in for them.
    #[arg(long = "worker-addr", value_name = "IP")]
    pub worker_addrs: Vec<IpAddr>,
    /// A known target as `VMID:ZONE` (repeatable), for its `<vmid>.fw` (proxmox only).
    #[arg(long = "target", value_name = "VMID:ZONE", value_parser = parse_target)]
    pub targets: Vec<(u32, String)>,
    /// Directory for the proxmox files (`cluster.fw`, `<vmid>.fw`); without it they are
    /// printed to stdout, each after a `# file: NAME` line.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

fn parse_target(text: &str) -> Result<(u32, String), String> {
    let (vmid, zone) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}`: write VMID:ZONE, e.g. 4012:WORKLOADS"))?;
    let vmid = vmid
        .trim()
        .parse()
        .map_err(|_| format!("`{vmid}` is not a VMID"))?;
    Ok((vmid, zone.trim().to_owned()))
}

/// Runs a policy command and returns the exit code.
pub(crate) async fn run(cmd: PolicyCommand) -> anyhow::Result<i32> {
    match cmd {
        PolicyCommand::Check { file } => check(&file),
        PolicyCommand::Explain(args) => run_explain(&args),
        PolicyCommand::Export(args) => run_export(&args),
        PolicyCommand::Diff(args) => diff::run(&args).await,
        PolicyCommand::Simulate(args) => simulate::run(&args).await,
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the policy file {}", path.display()))
}

fn load(path: &Path) -> anyhow::Result<Policy> {
    let text = read(path)?;
    Policy::parse(&text).map_err(|err| {
        let lines: Vec<String> = err.diagnostics.iter().map(|d| located(path, d)).collect();
        anyhow::anyhow!(
            "{}\n(run `portcullis policy check {}` for warnings too)",
            lines.join("\n"),
            path.display()
        )
    })
}

fn located(path: &Path, d: &portcullis_policy::Diagnostic) -> String {
    match d.line {
        Some(line) => format!("{}:{line}: error: {}", path.display(), d.message),
        None => format!("{}: error: {}", path.display(), d.message),
    }
}

fn check(path: &Path) -> anyhow::Result<i32> {
    let text = read(path)?;
    let report = portcullis_policy::check(&text);
    for d in &report.errors {
        eprintln!("{}", located(path, d));
    }
    for d in &report.warnings {
        match d.line {
            Some(line) => eprintln!("{}:{line}: warning: {}", path.display(), d.message),
            None => eprintln!("{}: warning: {}", path.display(), d.message),
        }
    }
    if report.is_valid() {
        println!(
            "{}: valid ({} warning(s))",
            path.display(),
            report.warnings.len()
        );
        Ok(0)
    } else {
        eprintln!("{}: {} error(s)", path.display(), report.errors.len());
        Ok(1)
    }
}

fn run_explain(args: &ExplainArgs) -> anyhow::Result<i32> {
    let policy = load(&args.policy)?;
    let now = SystemClock.unix_secs();
    let from = explain::locate(&policy, &args.from).map_err(|e| anyhow::anyhow!("--from: {e}"))?;
    let to = explain::locate(&policy, &args.to).map_err(|e| anyhow::anyhow!("--to: {e}"))?;
    let identity = Identity {
        subject: args.username.clone(),
        preferred_username: Some(args.username.clone()),
        email: None,
        groups: args.groups.clone(),
        amr: args.amr.clone(),
        acr: args.acr.clone(),
        auth_time: Some(now.saturating_sub(args.auth_age)),
        granted_roles: Vec::new(),
    };
    let request = ZonedRequest {
        source_zone: &from.zone,
        source_microsegment: from.microsegment,
        target_zone: &to.zone,
        target_microsegment: to.microsegment,
        service: &args.service,
        port: args.port,
        identity: &identity,
        via_broker: !args.via_direct,
    };
    let decision = portcullis_policy::evaluate_zones(&policy, &request, now);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&decision)?);
    } else {
        print!("{}", explain::render(&decision));
    }
    Ok(if decision.is_allowed() { 0 } else { 1 })
}

fn run_export(args: &ExportArgs) -> anyhow::Result<i32> {
    let policy = load(&args.policy)?;
    let options = ExportOptions {
        worker_addrs: args.worker_addrs.clone(),
        targets: args.targets.clone(),
    };
    match args.format {
        ExportFormat::Markdown => print!("{}", export::markdown(&policy)),
        ExportFormat::Nftables => print!("{}", export::nftables(&policy, &options)),
        ExportFormat::Proxmox => {
            let files = export::proxmox(&policy, &options);
            let mut all = vec![("cluster.fw".to_owned(), files.cluster_fw)];
            all.extend(
                files
                    .vm_fw
                    .into_iter()
                    .map(|(vmid, text)| (format!("{vmid}.fw"), text)),
            );
            match &args.out {
                Some(dir) => {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                    for (name, text) in all {
                        let path = dir.join(&name);
                        std::fs::write(&path, text)
                            .with_context(|| format!("cannot write {}", path.display()))?;
                        println!("wrote {}", path.display());
                    }
                }
                None => {
                    for (name, text) in all {
                        println!("# file: {name}\n{text}");
                    }
                }
            }
        }
    }
    Ok(0)
}
