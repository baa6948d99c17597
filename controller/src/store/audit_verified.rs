//! The `audit_verified` row: how far the console's incremental check of the audit chain
//! got (`audit::watermark`). Bookkeeping of a check, not state an auditor asks about.

use sqlx::{AnyConnection, Row as _};

use super::{Result, StoreError, Write};

/// The last event the check verified, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Watermark {
    pub sequence: u64,
    pub hash: String,
    /// Unix seconds.
    pub verified_at: i64,
}

/// The watermark, if a check has verified any event since the last reset.
pub(crate) async fn get(conn: &mut AnyConnection) -> Result<Option<Watermark>> {
    let row = sqlx::query("SELECT seq, hash, verified_at FROM audit_verified WHERE id = 1")
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let seq: i64 = row.try_get("seq")?;
    Ok(Some(Watermark {
        sequence: u64::try_from(seq)
            .map_err(|_| StoreError::Corrupt(format!("audit_verified.seq is {seq}")))?,
        hash: row.try_get("hash")?,
        verified_at: row.try_get("verified_at")?,
    }))
}

/// Moves the watermark to `mark`, only forward: a check that started before another one
/// finished cannot move it back.
pub(crate) async fn advance(conn: &mut AnyConnection, mark: &Watermark) -> Result<()> {
    let seq = i64::try_from(mark.sequence).map_err(|_| {
        StoreError::Corrupt(format!("audit sequence {} is out of range", mark.sequence))
    })?;
    sqlx::query(
        "INSERT INTO audit_verified (id, seq, hash, verified_at) VALUES (1, $1, $2, $3) \
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, \
         verified_at = excluded.verified_at WHERE audit_verified.seq <= excluded.seq",
    )
    .bind(seq)
    .bind(mark.hash.as_str())
    .bind(mark.verified_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Forgets the watermark: the next check starts at the chain's first event.
/// Forgets the watermark, in the audited transaction that records who did it.
pub(crate) async fn reset(w: Write<'_>) -> Result<()> {
    sqlx::query("DELETE FROM audit_verified WHERE id = 1")
        .execute(w.conn())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::store::suite_tests::backends;

    fn mark(sequence: u64, verified_at: i64) -> Watermark {
        Watermark {
            sequence,
            hash: format!("{sequence:064x}"),
            verified_at,
        }
    }

    #[tokio::test]
    async fn the_watermark_only_moves_forward_until_it_is_reset() {
        for b in backends().await {
            let mut conn = b.store.conn().await.unwrap();
            assert_eq!(get(&mut conn).await.unwrap(), None, "{}", b.name);
            advance(&mut conn, &mark(5, 100)).await.unwrap();
            advance(&mut conn, &mark(9, 200)).await.unwrap();
            // A slower check that started earlier does not move it back.
            advance(&mut conn, &mark(7, 300)).await.unwrap();
            assert_eq!(
                get(&mut conn).await.unwrap(),
                Some(mark(9, 200)),
                "{}",
                b.name
            );
            reset(crate::store::suite_tests::w(&mut conn))
                .await
                .unwrap();
            assert_eq!(get(&mut conn).await.unwrap(), None, "{}", b.name);
            advance(&mut conn, &mark(2, 400)).await.unwrap();
            assert_eq!(
                get(&mut conn).await.unwrap(),
                Some(mark(2, 400)),
                "{}",
                b.name
            );
        }
    }
}
