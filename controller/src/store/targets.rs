//! Targets: the hosts and services sessions reach.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use super::Write;
use super::{from_json_list, to_json_list, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TargetRecord {
    pub id: String,
    pub name: String,
    pub address: String,
    pub zone: Option<String>,
    pub service: Option<String>,
    pub vmid: Option<u32>,
    pub tags: Vec<String>,
    pub pool: Option<String>,
    pub max_session_secs: i64,
    pub connection_limit: i64,
    /// Pinned SSH host keys (OpenSSH public key lines).
    pub ssh_host_keys: Vec<String>,
    /// SSH host CAs (OpenSSH public key lines) whose host certificates are trusted.
    pub ssh_host_cas: Vec<String>,
    /// The Vault SSH mount and role for this target's certificates (else the configured ones).
    pub vault_ssh_mount: Option<String>,
    pub vault_ssh_role: Option<String>,
    /// Further Vault paths read with the session's token (e.g. `database/creds/readonly`).
    pub vault_secrets: Vec<String>,
    /// The `[[catalog.proxmox]]` that discovered it; none for a hand-made target.
    pub source: Option<String>,
    /// The guest or node in that cluster (`qemu/100`, `node/pve1`, `qemu/100#rdp`).
    pub source_key: Option<String>,
    /// `false` for a discovered template or stopped guest: listed, never connectable.
    pub available: bool,
    /// JSON: what the last sync saw (see `catalog::sync`); none for a hand-made target.
    pub discovered: Option<String>,
    /// The `[[catalog.proxmox]]` whose `sessions` table mints a Proxmox API token for each
    /// session to this target (an *injecting* target, issue 20); none: a plain tunnel.
    pub proxmox_cluster: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The columns in bind order: [`bind_fields`] binds all but the last, `created_at`, which
/// only an insert writes.
const COLUMNS: &str = "id, name, address, zone, service, vmid, tags, pool, max_session_secs, \
                       connection_limit, ssh_host_keys, ssh_host_cas, vault_ssh_mount, \
                       vault_ssh_role, vault_secrets, source, source_key, available, \
                       discovered, proxmox_cluster, updated_at, created_at";

type Query<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Binds `$1` to `$21`: every column of [`COLUMNS`] but `created_at`, in its order.
fn bind_fields<'q>(query: Query<'q>, t: &'q TargetRecord) -> Query<'q> {
    query
        .bind(&t.id)
        .bind(&t.name)
        .bind(&t.address)
        .bind(&t.zone)
        .bind(&t.service)
        .bind(t.vmid.map(i64::from))
        .bind(to_json_list(&t.tags))
        .bind(&t.pool)
        .bind(t.max_session_secs)
        .bind(t.connection_limit)
        .bind(to_json_list(&t.ssh_host_keys))
        .bind(to_json_list(&t.ssh_host_cas))
        .bind(&t.vault_ssh_mount)
        .bind(&t.vault_ssh_role)
        .bind(to_json_list(&t.vault_secrets))
        .bind(&t.source)
        .bind(&t.source_key)
        .bind(i64::from(t.available))
        .bind(&t.discovered)
        .bind(&t.proxmox_cluster)
        .bind(t.updated_at)
}

fn from_row(row: &AnyRow) -> Result<TargetRecord> {
    let vmid: Option<i64> = row.try_get("vmid")?;
    Ok(TargetRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        address: row.try_get("address")?,
        zone: row.try_get("zone")?,
        service: row.try_get("service")?,
        vmid: vmid.and_then(|v| u32::try_from(v).ok()),
        tags: from_json_list(&row.try_get::<String, _>("tags")?, "targets.tags")?,
        pool: row.try_get("pool")?,
        max_session_secs: row.try_get("max_session_secs")?,
        connection_limit: row.try_get("connection_limit")?,
        ssh_host_keys: from_json_list(
            &row.try_get::<String, _>("ssh_host_keys")?,
            "targets.ssh_host_keys",
        )?,
        ssh_host_cas: from_json_list(
            &row.try_get::<String, _>("ssh_host_cas")?,
            "targets.ssh_host_cas",
        )?,
        vault_ssh_mount: row.try_get("vault_ssh_mount")?,
        vault_ssh_role: row.try_get("vault_ssh_role")?,
        vault_secrets: from_json_list(
            &row.try_get::<String, _>("vault_secrets")?,
            "targets.vault_secrets",
        )?,
        source: row.try_get("source")?,
        source_key: row.try_get("source_key")?,
        available: row.try_get::<i64, _>("available")? != 0,
        discovered: row.try_get("discovered")?,
        proxmox_cluster: row.try_get("proxmox_cluster")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(crate) async fn insert(w: Write<'_>, t: &TargetRecord) -> Result<()> {
    let conn = w.conn();
    let sql = format!(
        "INSERT INTO targets ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)"
    );
    bind_fields(sqlx::query(&sql), t)
        .bind(t.created_at)
        .execute(conn)
        .await?;
    Ok(())
}

pub(crate) async fn update(w: Write<'_>, t: &TargetRecord) -> Result<bool> {
    let conn = w.conn();
    let query = sqlx::query(
        "UPDATE targets SET name = $2, address = $3, zone = $4, service = $5, vmid = $6, tags = $7, \
         pool = $8, max_session_secs = $9, connection_limit = $10, ssh_host_keys = $11, \
         ssh_host_cas = $12, vault_ssh_mount = $13, vault_ssh_role = $14, vault_secrets = $15, \
         source = $16, source_key = $17, available = $18, discovered = $19, proxmox_cluster = $20, updated_at = $21 \
         WHERE id = $1",
    );
    let done = bind_fields(query, t).execute(conn).await?;
    Ok(done.rows_affected() == 1)
}

/// Finds a target by id or, failing that, by name.
pub(crate) async fn find(
    conn: &mut AnyConnection,
    id_or_name: &str,
) -> Result<Option<TargetRecord>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM targets WHERE id = $1 OR name = $1 ORDER BY (id = $1) DESC LIMIT 1"
    ))
    .bind(id_or_name)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

pub(crate) async fn list(conn: &mut AnyConnection) -> Result<Vec<TargetRecord>> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM targets ORDER BY name"))
        .fetch_all(conn)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Which targets by where they came from (`GET /v1/targets?source=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceFilter<'a> {
    /// Made by hand (`source` is NULL).
    Manual,
    /// Discovered from any cluster.
    Discovered,
    /// Discovered from this `[[catalog.proxmox]]`.
    Cluster(&'a str),
}

/// The targets `filter` selects, by name.
pub(crate) async fn list_by_source(
    conn: &mut AnyConnection,
    filter: SourceFilter<'_>,
) -> Result<Vec<TargetRecord>> {
    let (condition, cluster) = match filter {
        SourceFilter::Manual => ("source IS NULL", None),
        SourceFilter::Discovered => ("source IS NOT NULL", None),
        SourceFilter::Cluster(name) => ("source = $1", Some(name)),
    };
    let sql = format!("SELECT {COLUMNS} FROM targets WHERE {condition} ORDER BY name");
    let mut query = sqlx::query(&sql);
    if let Some(name) = cluster {
        query = query.bind(name);
    }
    let rows = query.fetch_all(conn).await?;
    rows.iter().map(from_row).collect()
}

pub(crate) async fn delete(w: Write<'_>, id: &str) -> Result<bool> {
    let conn = w.conn();
    let done = sqlx::query("DELETE FROM targets WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}
