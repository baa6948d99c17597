//! Fixed-window rate-limit counters, shared by every controller through the store.

use sqlx::{AnyConnection, Row as _};

use super::Result;

/// Counts one attempt in `bucket` for the window of `window_secs` containing `now`, and
/// returns whether the attempt is within `limit`.
pub(crate) async fn hit(
    conn: &mut AnyConnection,
    bucket: &str,
    now: i64,
    window_secs: i64,
    limit: u32,
) -> Result<bool> {
    let window_start = now - now.rem_euclid(window_secs.max(1));
    let row = sqlx::query(
        "INSERT INTO rate_limits (bucket, window_start, count) VALUES ($1, $2, 1) \
         ON CONFLICT (bucket) DO UPDATE SET \
           count = CASE WHEN rate_limits.window_start = $2 THEN rate_limits.count + 1 ELSE 1 END, \
           window_start = $2 \
         RETURNING count",
    )
    .bind(bucket)
    .bind(window_start)
    .fetch_one(conn)
    .await?;
    let count: i64 = row.try_get("count")?;
    Ok(count <= i64::from(limit))
}
