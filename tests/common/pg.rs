//! A fresh PostgreSQL database per test, in the cluster `scripts/test` started.

use sqlx::Connection as _;

/// The URL of a new, empty database; panics with instructions when no cluster is available.
pub async fn fresh_database() -> String {
    let admin = std::env::var("PORTCULLIS_TEST_PG_URL").unwrap_or_else(|_| {
        panic!("PORTCULLIS_TEST_PG_URL is not set: run the suite with scripts/test, which starts PostgreSQL")
    });
    let name = format!("t_{}", hex_id());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL at {admin}: {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let (base, _) = admin.rsplit_once('/').expect("URL has a database part");
    format!("{base}/{name}")
}

fn hex_id() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{:x}_{}_{}", nanos, std::process::id(), n)
}
