//! Leased secrets of live sessions (issue 23): the data Vault returned for a session's target's
//! `vault_secrets`, sealed (AES-256-GCM under the master key, the session id as associated
//! data: `sessions::secrets`), written in the transaction that makes the session pending and
//! deleted in the one that ends it. Never stored in the clear.

use sqlx::{AnyConnection, Row as _};

use super::Write;
use super::{from_json_list, to_json_list, Result};

/// A session's sealed secrets. `Debug` shows the paths only.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SealedSecrets {
    pub session_id: String,
    /// The Vault paths, in the target's order: what events may name.
    pub paths: Vec<String>,
    pub sealed: Vec<u8>,
    pub created_at: i64,
}

impl std::fmt::Debug for SealedSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedSecrets")
            .field("session_id", &self.session_id)
            .field("paths", &self.paths)
            .field("sealed", &"<sealed>")
            .finish_non_exhaustive()
    }
}

/// Stores a session's sealed secrets (in the transaction that commits its mint).
pub(crate) async fn insert(w: Write<'_>, row: &SealedSecrets) -> Result<()> {
    sqlx::query(
        "INSERT INTO session_secrets (session_id, paths, sealed, created_at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(&row.session_id)
    .bind(to_json_list(&row.paths))
    .bind(&row.sealed)
    .bind(row.created_at)
    .execute(w.conn())
    .await?;
    Ok(())
}

/// The session's sealed secrets, if it has (still) any.
pub(crate) async fn get(
    conn: &mut AnyConnection,
    session_id: &str,
) -> Result<Option<SealedSecrets>> {
    let row = sqlx::query(
        "SELECT session_id, paths, sealed, created_at FROM session_secrets WHERE session_id = $1",
    )
    .bind(session_id)
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(Some(SealedSecrets {
        session_id: row.try_get("session_id")?,
        paths: from_json_list(&row.try_get::<String, _>("paths")?, "session_secrets.paths")?,
        sealed: row.try_get("sealed")?,
        created_at: row.try_get("created_at")?,
    }))
}

/// Deletes the session's sealed secrets (in the transaction that ends it); whether there were
/// any.
pub(crate) async fn delete(w: Write<'_>, session_id: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM session_secrets WHERE session_id = $1")
        .bind(session_id)
        .execute(w.conn())
        .await?;
    Ok(done.rows_affected() > 0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::suite_tests::{stores, w};
    use super::*;

    #[tokio::test]
    async fn sealed_secrets_round_trip_and_are_deleted_once() {
        for (store, _dir) in stores().await {
            let dialect = store.dialect();
            let mut conn = store.conn().await.unwrap();
            let row = SealedSecrets {
                session_id: "s_1".into(),
                paths: vec!["database/creds/ro".into(), "kv/data/x".into()],
                sealed: vec![0, 1, 2, 255],
                created_at: 100,
            };
            insert(w(&mut conn), &row).await.unwrap();
            assert_eq!(get(&mut conn, "s_1").await.unwrap(), Some(row.clone()));
            assert!(!format!("{row:?}").contains("255"), "{dialect:?}");
            assert_eq!(get(&mut conn, "s_2").await.unwrap(), None);
            // One row per session.
            assert!(insert(w(&mut conn), &row).await.is_err(), "{dialect:?}");
            assert!(delete(w(&mut conn), "s_1").await.unwrap());
            assert!(!delete(w(&mut conn), "s_1").await.unwrap());
            assert_eq!(get(&mut conn, "s_1").await.unwrap(), None, "{dialect:?}");
        }
    }
}
