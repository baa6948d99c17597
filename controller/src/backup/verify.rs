//! What a restore proves about a store before it is put in place: its schema is one this
//! binary knows, the unsealed master key opens every sealed private key in it, and its
//! audit chain verifies end to end and reaches the manifest's head. The same walk as
//! `portcullis audit verify` (the `portcullis-audit` verifier over the stored bodies and
//! their index columns), on a connection instead of the API.

use std::path::Path;

use portcullis_audit::chain::{KeyRing, PublicKeyInfo};
use portcullis_audit::verify::{Head, Summary, Verifier};
use sqlx::any::AnyConnectOptions;
use sqlx::{AnyConnection, ConnectOptions as _, Connection as _};

use super::BackupError;
use crate::keys::{self, MasterKey, Purpose};
use crate::store::{self, audit as rows, keys as key_rows, Dialect};

/// Events read per query.
const PAGE: u32 = 5000;

/// A SQLite snapshot opened read-only and immutable: nothing is written beside it (no
/// journal, no `-wal` or `-shm` file), so a backup's directory stays as it is.
pub(crate) async fn open_snapshot(path: &Path) -> Result<AnyConnection, BackupError> {
    sqlx::any::install_default_drivers();
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .immutable(true);
    let any = AnyConnectOptions::from_url(&opts.to_url_lossy())?;
    Ok(AnyConnection::connect_with(&any).await?)
}

/// The schema version and audit head of the store on `conn`.
pub(crate) async fn state(conn: &mut AnyConnection) -> Result<(i64, Head), BackupError> {
    let schema = store::applied_schema(conn).await?;
    let head = rows::head(conn).await?;
    Ok((
        schema,
        Head {
            sequence: head.sequence,
            hash: head.hash,
        },
    ))
}

/// Refuses a store migrated by a newer binary.
pub(crate) fn schema_known(applied: i64, dialect: Dialect) -> Result<(), BackupError> {
    let known = store::known_schema(dialect);
    if applied > known {
        return Err(store::StoreError::SchemaNewer { applied, known }.into());
    }
    Ok(())
}

/// Opens every sealed private key on `conn` with `master`; returns how many.
pub(crate) async fn master_opens_keys(
    conn: &mut AnyConnection,
    master: &MasterKey,
) -> Result<usize, BackupError> {
    let rows = key_rows::list(conn).await?;
    for row in rows.iter().filter(|r| !r.sealed_private.is_empty()) {
        let purpose = Purpose::parse(&row.purpose).ok_or_else(|| {
            BackupError::Tampered(format!("key {} has an unknown purpose", row.id))
        })?;
        master
            .open(&keys::context(&row.id, purpose), &row.sealed_private)
            .map_err(|_| {
                BackupError::Refused(format!(
                    "the master key in the backup does not open key {} of the store: the \
                     sealed key and the store are from different controllers. Nothing was \
                     written",
                    row.id
                ))
            })?;
    }
    Ok(rows.len())
}

/// Walks the whole chain on `conn` with the store's audit public keys: it must verify, reach
/// the store's own head and `expect`, and (with `exact`) end there.
pub(crate) async fn chain(
    conn: &mut AnyConnection,
    expect: &Head,
    exact: bool,
) -> Result<Summary, BackupError> {
    let keys: Vec<PublicKeyInfo> = key_rows::list(conn)
        .await?
        .into_iter()
        .filter(|k| k.purpose == Purpose::Audit.as_str())
        .map(|k| PublicKeyInfo::ed25519(&k.id, &k.public_key, Some(&k.state)))
        .collect();
    let store_head = rows::head(conn).await?;
    let store_head = Head {
        sequence: store_head.sequence,
        hash: store_head.hash,
    };
    let mut verifier = Verifier::new(KeyRing::new(&keys), Some(expect.clone()));
    let mut after = 0;
    loop {
        let page = rows::after_stored(conn, after, PAGE).await?;
        for e in &page {
            verifier
                .push_stored(&body(e.columns.seq, &e.body), &e.columns)
                .map_err(|f| BackupError::Chain(f.to_string()))?;
        }
        match page.last() {
            Some(last) if page.len() == PAGE as usize => after = last.columns.seq,
            _ => break,
        }
    }
    let summary = verifier
        .finish(Some(&store_head))
        .map_err(|f| BackupError::Chain(f.to_string()))?;
    if exact && summary.head.as_ref() != Some(expect) && expect.sequence != 0 {
        return Err(BackupError::Chain(format!(
            "it ends at {} but the manifest names the head {expect}",
            summary
                .head
                .as_ref()
                .map_or_else(|| "the beginning".to_owned(), Head::to_string)
        )));
    }
    Ok(summary)
}

/// A stored body as the verifier reads it (as the API's export gives it): events from
/// before the chain get their sequence; a body that is not JSON is passed on for the
/// verifier to name.
fn body(seq: u64, text: &str) -> serde_json::Value {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(mut event) => {
            if let Some(map) = event.as_object_mut() {
                map.entry("sequence").or_insert(seq.into());
            }
            event
        }
        Err(_) => serde_json::json!({"sequence": seq, "unparsable_body": text}),
    }
}
