//! `portcullis catalog`: the targets discovered from Proxmox clusters (docs/proxmox.md).
//!
//! `catalog sync` asks the controller to sync now (or, `--dry-run`, only to say what a sync
//! would change) and prints the diff per cluster; `catalog list` prints each cluster's last
//! sync and its discovered targets. What is printed is drawn by the pure functions of
//! [`render`] from the API's answers, so it is tested without a controller.

mod render;
#[cfg(test)]
mod tests;

pub(crate) use render::available;

use anyhow::Context as _;
use portcullis_proto::catalog::{CatalogStatus, SyncReport, SyncRequest};

use super::exit;
use super::http::{ApiClient, ClientArgs};
use super::output;

#[derive(clap::Subcommand, Debug)]
pub(crate) enum CatalogCommand {
    /// Sync the discovered targets with the Proxmox clusters now (needs `targets:admin`),
    /// and print what changed.
    #[command(after_help = SYNC_HELP)]
    Sync(SyncArgs),
    /// Show each cluster's last sync, its discovered targets and the guests it refused.
    #[command(after_help = LIST_HELP)]
    List(ListArgs),
}

const SYNC_HELP: &str = "\
In a deployment (with a [[catalog.proxmox]] cluster; `portcullis dev` has none):
  portcullis catalog sync --dry-run          # what a sync would change; changes nothing
  portcullis catalog sync                    # sync every configured cluster now
  portcullis catalog sync --cluster homelab --json

One line per change, per cluster:
  + web-01  qemu/100  10.40.0.5:22  WORKLOADS      added: name, key, address, zone
  ~ db-01  address 10.40.0.7:22 -> 10.40.0.9:22    changed: each field, before -> after
  - old-vm  gone                                  removed (gone, or refused)
  ! bad-vm  qemu/104  refused: REASON             not a target (audited); never remapped
then the counts, and notes (an agent not running, an address skipped...).

A cluster whose sync failed keeps its last good catalog (`catalog list` shows it as stale).
The controller also syncs on its own every `interval` (docs/proxmox.md).

Exit status: 0 when every cluster synced; 12 when any failed or was being synced by another
controller (busy); the others' results stand. Other failures as for every command (--help).";

const LIST_HELP: &str = "\
Examples:
  portcullis catalog list              # with `portcullis dev`: no cluster is configured
  portcullis catalog list --json

In a deployment:
  portcullis catalog list --cluster homelab
  portcullis catalog list --json | jq '.clusters[].targets[].name'

AVAILABLE is `no` for a template or a stopped guest: listed, never connectable. ORIGIN says
where the address came from; `guest-agent` and `lxc-interfaces` addresses were reported by
the guest itself and place it only in zones with `guest_reported_addresses = true`.
OVERRIDES are fields an admin changed that the sync keeps.
A cluster whose last sync failed is flagged stale, with the error: its targets are the last
good sync's. `--json` has the same as `stale` and `last_error` per cluster.";

#[derive(clap::Args, Debug)]
pub(crate) struct SyncArgs {
    /// Only discover and compute the changes; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Only this cluster (its `[[catalog.proxmox]]` name); by default every one.
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
    /// Print the API's SyncReport as JSON instead of the diff.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ListArgs {
    /// Only this cluster.
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
    /// Print the API's CatalogStatus as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub(crate) async fn run(cmd: CatalogCommand) -> anyhow::Result<i32> {
    match cmd {
        CatalogCommand::Sync(args) => sync(args).await,
        CatalogCommand::List(args) => list(args).await,
    }
}

async fn sync(args: SyncArgs) -> anyhow::Result<i32> {
    let api = ApiClient::from_args(&args.client)?;
    let request = SyncRequest {
        cluster: args.cluster.clone(),
        dry_run: args.dry_run,
    };
    let report: SyncReport = api
        .post("/v1/catalog/sync", &request)
        .await
        .with_context(|| match &args.cluster {
            Some(name) => format!("cannot sync cluster {name}"),
            None => "cannot sync the catalog".to_owned(),
        })?;
    if args.json {
        output::print_json(&report)?;
    } else {
        output::write_stdout(&render::sync_report(&report))?;
    }
    Ok(if render::all_synced(&report) {
        0
    } else {
        i32::from(exit::NOT_SYNCED)
    })
}

async fn list(args: ListArgs) -> anyhow::Result<i32> {
    let api = ApiClient::from_args(&args.client)?;
    let mut status: CatalogStatus = api
        .get("/v1/catalog")
        .await
        .context("cannot read the catalog")?;
    if let Some(name) = &args.cluster {
        status.clusters.retain(|c| &c.cluster == name);
        if status.clusters.is_empty() {
            eprintln!(
                "error: no cluster {} is configured: `portcullis catalog list` shows the ones that are",
                portcullis_proto::text::escaped(name)
            );
            return Ok(i32::from(exit::NOT_FOUND));
        }
    }
    if args.json {
        output::print_json(&status)?;
    } else {
        output::write_stdout(&render::catalog_status(&status))?;
    }
    Ok(0)
}
