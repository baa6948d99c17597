//! SSH certificates issued per session, and their revocation when a session ends early.

use sqlx::{AnyConnection, Row as _};

use super::Write;
use super::{revoke_live, Result, Revocable, StoreError};

pub(crate) async fn insert(
    w: Write<'_>,
    serial: u64,
    session_id: &str,
    ca_key_id: &str,
    valid_before: i64,
) -> Result<()> {
    let conn = w.conn();
    sqlx::query(
        "INSERT INTO ssh_certificates (serial, session_id, ca_key_id, key_id, valid_before) VALUES ($1, $2, $3, $2, $4)",
    )
    .bind(serial.to_string())
    .bind(session_id)
    .bind(ca_key_id)
    .bind(valid_before)
    .execute(conn)
    .await?;
    Ok(())
}

/// Revokes a session's certificates that are still valid; returns their serials.
pub(crate) async fn revoke_session(w: Write<'_>, session_id: &str, now: i64) -> Result<Vec<u64>> {
    let certificates = Revocable {
        table: "ssh_certificates",
        owner: "session_id",
        expires: "valid_before",
        returning: "serial",
    };
    let serials = revoke_live(w, &certificates, session_id, now).await?;
    serials
        .into_iter()
        .map(|text| {
            text.parse()
                .map_err(|_| StoreError::Corrupt(format!("ssh_certificates.serial {text:?}")))
        })
        .collect()
}

/// A revoked, not yet expired certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Revoked {
    pub serial: u64,
    pub ca_key_id: String,
    pub key_id: String,
}

/// Revoked certificates still inside their validity (expired ones need no revocation).
pub(crate) async fn revoked(conn: &mut AnyConnection, now: i64) -> Result<Vec<Revoked>> {
    let rows = sqlx::query(
        "SELECT serial, ca_key_id, key_id FROM ssh_certificates WHERE revoked_at IS NOT NULL AND valid_before > $1 ORDER BY serial",
    )
    .bind(now)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            let text: String = r.try_get("serial")?;
            Ok(Revoked {
                serial: text.parse().map_err(|_| {
                    StoreError::Corrupt(format!("ssh_certificates.serial {text:?}"))
                })?,
                ca_key_id: r.try_get("ca_key_id")?,
                key_id: r.try_get("key_id")?,
            })
        })
        .collect()
}
