//! A stored request as the API shows it ([`AccessRequest`]): its approvals and run, with
//! user names.

use portcullis_proto::access::{AccessRequest, Approval, Run};
use sqlx::AnyConnection;

use crate::clock::to_u64;
use crate::store::access_requests::{self as rows, AccessRecord};
use crate::store::{users, StoreError};

/// The API's view of `record`, read with its approvals, names and sessions.
pub(crate) async fn to_api(
    conn: &mut AnyConnection,
    record: &AccessRecord,
) -> Result<AccessRequest, StoreError> {
    let username = name_of(conn, &record.user_id).await?;
    let mut approvals = Vec::new();
    for a in rows::approvals(conn, &record.id).await? {
        approvals.push(Approval {
            username: name_of(conn, &a.user_id).await?,
            user_id: a.user_id,
            at: to_u64(a.at),
            reason: a.reason,
        });
    }
    let run = match &record.run {
        None => None,
        Some(run) => Some(Run {
            command: run.command.clone(),
            started_at: run.started_at.map(to_u64),
            finished_at: run.finished_at.map(to_u64),
            exit_status: run.exit_status.and_then(|s| i32::try_from(s).ok()),
            outcome: run.outcome.clone(),
            sessions: rows::sessions(conn, &record.id).await?,
        }),
    };
    let decided_by = match &record.decided_by {
        Some(id) => Some(name_of(conn, id).await?),
        None => None,
    };
    Ok(AccessRequest {
        id: record.id.clone(),
        user_id: record.user_id.clone(),
        username,
        role: record.role.clone(),
        targets: record.targets.clone(),
        zone: record.zone.clone(),
        state: record.state,
        reason: record.reason.clone(),
        break_glass: record.break_glass,
        duration_secs: to_u64(record.duration_secs),
        created_at: to_u64(record.created_at),
        approved_at: record.approved_at.map(to_u64),
        expires_at: to_u64(record.expires_at),
        approvals_needed: u32::try_from(record.approvals_needed).unwrap_or(0),
        approvals,
        decided_by,
        decision_reason: record.decision_reason.clone(),
        run,
    })
}

/// A user's name, or the id itself when the user is gone (or it is `system`).
async fn name_of(conn: &mut AnyConnection, user_id: &str) -> Result<String, StoreError> {
    Ok(users::get(conn, user_id)
        .await?
        .map_or_else(|| user_id.to_owned(), |u| u.username))
}
