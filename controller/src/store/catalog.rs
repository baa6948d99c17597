//! `catalog_clusters`: where each configured Proxmox cluster's sync stands (docs/proxmox.md).
//! A failed sync writes only its row here ([`record_failure`]); a good one replaces the row
//! whole ([`record_success`]). Both are audited by the sync (`catalog_sync_failed`,
//! `catalog_synced`) in the transaction that writes them.

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use super::{Result, StoreError, Write};

/// One cluster's row.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ClusterRecord {
    pub cluster: String,
    /// Unix seconds of the last sync, good or failed.
    pub last_attempt_at: Option<i64>,
    /// Unix seconds of the last good sync.
    pub last_success_at: Option<i64>,
    /// The last failure's words; none after a good sync.
    pub last_error: Option<String>,
    /// The API URL that answered the last good sync.
    pub last_url: Option<String>,
    pub guests: i64,
    pub nodes: i64,
    /// The refusals the last good sync left (source key → reason): audited once each.
    pub refused: BTreeMap<String, String>,
}

const COLUMNS: &str =
    "cluster, last_attempt_at, last_success_at, last_error, last_url, guests, nodes, refused";

fn from_row(row: &AnyRow) -> Result<ClusterRecord> {
    let refused: String = row.try_get("refused")?;
    Ok(ClusterRecord {
        cluster: row.try_get("cluster")?,
        last_attempt_at: row.try_get("last_attempt_at")?,
        last_success_at: row.try_get("last_success_at")?,
        last_error: row.try_get("last_error")?,
        last_url: row.try_get("last_url")?,
        guests: row.try_get("guests")?,
        nodes: row.try_get("nodes")?,
        refused: serde_json::from_str(&refused)
            .map_err(|e| StoreError::Corrupt(format!("catalog_clusters.refused: {e}")))?,
    })
}

/// The row of `cluster`, if it was ever synced.
pub(crate) async fn get(conn: &mut AnyConnection, cluster: &str) -> Result<Option<ClusterRecord>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM catalog_clusters WHERE cluster = $1"
    ))
    .bind(cluster)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// A failed sync at `now`: the attempt and its error; what the last good sync left (its
/// time, counts and refusals) stays.
pub(crate) async fn record_failure(
    w: Write<'_>,
    cluster: &str,
    now: i64,
    error: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO catalog_clusters (cluster, last_attempt_at, last_error) VALUES ($1, $2, $3) \
         ON CONFLICT (cluster) DO UPDATE SET last_attempt_at = $2, last_error = $3",
    )
    .bind(cluster)
    .bind(now)
    .bind(error)
    .execute(w.conn())
    .await?;
    Ok(())
}

/// A good sync: the whole row (its `last_error` is cleared whatever `c` holds).
pub(crate) async fn record_success(w: Write<'_>, c: &ClusterRecord) -> Result<()> {
    let refused = serde_json::to_string(&c.refused)
        .map_err(|e| StoreError::Query(format!("catalog_clusters.refused: {e}")))?;
    sqlx::query(
        "INSERT INTO catalog_clusters (cluster, last_attempt_at, last_success_at, last_error, \
         last_url, guests, nodes, refused) VALUES ($1, $2, $3, NULL, $4, $5, $6, $7) \
         ON CONFLICT (cluster) DO UPDATE SET last_attempt_at = $2, last_success_at = $3, \
         last_error = NULL, last_url = $4, guests = $5, nodes = $6, refused = $7",
    )
    .bind(&c.cluster)
    .bind(c.last_attempt_at)
    .bind(c.last_success_at)
    .bind(&c.last_url)
    .bind(c.guests)
    .bind(c.nodes)
    .bind(refused)
    .execute(w.conn())
    .await?;
    Ok(())
}
