//! What `catalog sync` and `catalog list` print, drawn from the API's answers. Pure: no I/O.
//!
//! Names, keys, reasons and errors come from Proxmox (a guest's name is whatever its owner
//! typed) and from the controller: each is escaped (`portcullis_proto::text`) before it is
//! printed, so none can drive the reader's terminal.

use portcullis_proto::api::Target;
use portcullis_proto::catalog::{
    CatalogChange, CatalogStatus, ClusterStatus, ClusterSync, SyncReport,
};
use portcullis_proto::text::escape;

use crate::cli::output::{self, Table};

/// Whether every cluster of the report synced (`ok`); a `failed` or `busy` one did not.
pub(super) fn all_synced(report: &SyncReport) -> bool {
    report.clusters.iter().all(|c| c.outcome == "ok")
}

/// The diff of a sync, cluster by cluster, then whether anything was changed.
pub(super) fn sync_report(report: &SyncReport) -> String {
    let mut out = String::new();
    if report.clusters.is_empty() {
        out.push_str("No Proxmox cluster is configured ([[catalog.proxmox]], docs/proxmox.md).\n");
    }
    for cluster in &report.clusters {
        out.push_str(&cluster_sync(cluster, report.dry_run));
    }
    if report.dry_run {
        out.push_str("\nDry run: nothing was changed. Run without --dry-run to apply.\n");
    }
    out
}

fn cluster_sync(sync: &ClusterSync, dry_run: bool) -> String {
    let name = escape(&sync.cluster);
    match sync.outcome.as_str() {
        "ok" => {}
        "failed" => {
            return format!(
                "Cluster {name}: the sync failed: {}\n  \
                 The last good catalog stays in use (`portcullis catalog list` shows it as stale).\n",
                escape(sync.error.as_deref().unwrap_or("no reason given"))
            );
        }
        "busy" => {
            return format!(
                "Cluster {name}: another controller is syncing it now; nothing was done here. \
                 Try again in a moment.\n"
            );
        }
        other => {
            return format!(
                "Cluster {name}: not synced ({}){}\n",
                escape(other),
                sync.error
                    .as_deref()
                    .map(|e| format!(": {}", escape(e)))
                    .unwrap_or_default()
            );
        }
    }
    let mut out = format!(
        "Cluster {name}{}: {} guests, {} nodes\n",
        sync.url
            .as_deref()
            .map(|u| format!(" ({})", escape(u)))
            .unwrap_or_default(),
        sync.guests,
        sync.nodes
    );
    for change in &sync.changes {
        out.push_str("  ");
        out.push_str(&change_line(change));
        out.push('\n');
    }
    let count = |kind: &str| sync.changes.iter().filter(|c| c.kind == kind).count();
    let verb = if dry_run { "would be " } else { "" };
    out.push_str(&format!(
        "  {} {verb}added, {} {verb}changed, {} {verb}removed, {} refused, {} unchanged",
        count("added"),
        count("changed"),
        count("removed"),
        count("refused"),
        sync.unchanged
    ));
    if sync.sessions_ended > 0 {
        let s = if sync.sessions_ended == 1 { "" } else { "s" };
        out.push_str(&format!("; {} live session{s} ended", sync.sessions_ended));
    }
    out.push('\n');
    for note in &sync.notes {
        out.push_str(&format!("  note: {}\n", escape(note)));
    }
    out
}

/// One line of the diff:
/// `+ web-01  qemu/100  10.40.0.5:22  WORKLOADS`,
/// `~ db-01  address 10.40.0.7:22 -> 10.40.0.9:22, zone A -> B`,
/// `- old-vm  gone`, `! bad-vm  qemu/104  refused: REASON`.
pub(super) fn change_line(change: &CatalogChange) -> String {
    let name = escape(&change.name);
    let dash = |value: Option<&str>| escape(&output::or_dash(value));
    match change.kind.as_str() {
        "added" => format!(
            "+ {name}  {}  {}  {}",
            escape(&change.key),
            dash(change.address.as_deref()),
            dash(change.zone.as_deref())
        ),
        "changed" => {
            let fields: Vec<String> = change
                .fields
                .iter()
                .map(|f| {
                    format!(
                        "{} {} -> {}",
                        escape(&f.field),
                        dash(f.before.as_deref()),
                        dash(f.after.as_deref())
                    )
                })
                .collect();
            format!("~ {name}  {}", fields.join(", "))
        }
        "removed" => format!(
            "- {name}  {}",
            escape(change.reason.as_deref().unwrap_or("gone"))
        ),
        "refused" => format!(
            "! {name}  {}  refused: {}",
            escape(&change.key),
            escape(change.reason.as_deref().unwrap_or("no reason given"))
        ),
        other => format!("? {name}  {}  {}", escape(&change.key), escape(other)),
    }
}

/// `catalog list`: per cluster, its sync state, a table of its targets and its refusals.
pub(super) fn catalog_status(status: &CatalogStatus) -> String {
    if status.clusters.is_empty() {
        return "No Proxmox cluster is configured ([[catalog.proxmox]], docs/proxmox.md).\n"
            .to_owned();
    }
    let parts: Vec<String> = status.clusters.iter().map(cluster_status).collect();
    parts.join("\n")
}

fn cluster_status(cluster: &ClusterStatus) -> String {
    let mut out = format!("Cluster {}\n", escape(&cluster.cluster));
    out.push_str(&output::render_fields(&[
        ("  URLs", cluster.urls.join(", ")),
        ("  Sync interval", output::duration(cluster.interval_secs)),
        ("  Last sync", output::opt_time(cluster.last_attempt_at)),
        ("  Last success", output::opt_time(cluster.last_success_at)),
        (
            "  Discovered",
            format!("{} guests, {} nodes", cluster.guests, cluster.nodes),
        ),
    ]));
    if cluster.stale || cluster.last_error.is_some() {
        out.push_str(&format!(
            "warning: the last sync failed: {}\n\
             warning: the targets below are the last good sync's (stale) until a sync succeeds\n",
            escape(cluster.last_error.as_deref().unwrap_or("no reason given"))
        ));
    }
    out.push('\n');
    let table = Table::of(
        &cluster.targets,
        &[
            ("NAME", |t| t.name.clone()),
            ("KEY", |t| source_field(t, |s| Some(s.key.clone()))),
            ("NODE", |t| source_field(t, |s| s.node.clone())),
            ("ADDRESS", |t| t.address.clone()),
            ("ZONE", |t| output::or_dash(t.zone.as_deref())),
            ("SERVICE", |t| output::or_dash(t.service.as_deref())),
            ("AVAILABLE", available),
            ("ORIGIN", |t| source_field(t, |s| s.address_origin.clone())),
            ("OVERRIDES", |t| {
                source_field(t, |s| Some(s.overrides.join(",")))
            }),
        ],
    );
    if table.is_empty() {
        out.push_str("No discovered targets.\n");
    } else {
        out.push_str(&table.render());
    }
    if !cluster.refused.is_empty() {
        out.push_str("\nRefused guests (not targets; each refusal is audited):\n");
        let mut refused = Table::new(["KEY", "REASON"]);
        for (key, reason) in &cluster.refused {
            refused.row([key.as_str(), reason.as_str()]);
        }
        out.push_str(&refused.render());
    }
    out
}

/// `yes`, or `no (stopped)` / `no (template)`: why a discovered target cannot be reached.
pub(crate) fn available(target: &Target) -> String {
    if target.available {
        return "yes".to_owned();
    }
    match &target.source {
        Some(source) if !source.status.is_empty() => format!("no ({})", source.status),
        _ => "no".to_owned(),
    }
}

fn source_field(
    target: &Target,
    field: fn(&portcullis_proto::catalog::TargetSource) -> Option<String>,
) -> String {
    output::or_dash(target.source.as_ref().and_then(field).as_deref())
}
