//! `GET /console/workers`: every worker with its state (active, draining, lost, stopped,
//! deleted, as `workers list` says it), its last heartbeat and its live sessions. Needs
//! `workers:admin`, as `GET /v1/workers` does (a 403 audited as `permission_denied`
//! otherwise).

#[cfg(test)]
mod tests;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use portcullis_policy::Permission;

use super::error::ConsoleError;
use super::html::Html;
use super::pages::{layout, page_response, Nav};
use super::session::ConsoleUser;
use crate::clock;
use crate::sessions::lost::listed_state;
use crate::state::AppState;
use crate::store::sessions as session_rows;
use crate::store::workers::{self as rows, WorkerRecord};

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/console/workers", get(list))
}

/// One worker as the page shows it.
pub(crate) struct Row {
    pub worker: WorkerRecord,
    /// `listed_state`'s word.
    pub state: &'static str,
    pub live_sessions: i64,
}

async fn list(State(state): State<AppState>, user: ConsoleUser) -> Result<Response, ConsoleError> {
    let principal = &user.principal;
    principal.require(Permission::WorkersAdmin)?;
    let now = clock::to_i64(state.clock.unix_secs());
    let lost_after = clock::to_i64(state.config.worker_lost_after.as_secs());
    let (workers, live) = {
        let mut conn = state.store.conn().await?;
        let workers = rows::list(&mut conn).await?;
        let live = session_rows::live_per_worker(&mut conn, now).await?;
        (workers, live)
    };
    let table: Vec<Row> = workers
        .into_iter()
        .map(|worker| Row {
            state: listed_state(&worker, now, lost_after),
            live_sessions: live
                .iter()
                .find(|(id, _)| *id == worker.id)
                .map_or(0, |(_, n)| *n),
            worker,
        })
        .collect();
    let nav = Nav {
        username: &principal.user.username,
        csrf_token: &user.csrf_token,
    };
    Ok(page_response(StatusCode::OK, render(&nav, &table, now)))
}

fn when(secs: i64) -> String {
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(clock::to_u64(secs)),
    )
    .to_string()
}

/// The page, pure.
pub(crate) fn render(nav: &Nav<'_>, rows: &[Row], now: i64) -> Html {
    layout("Workers", Some(nav), |h| {
        h.raw("<h1>Workers</h1>");
        if rows.is_empty() {
            h.raw(
                "<p>No workers have enrolled. Issue a join token with <code>portcullis \
                 workers join-token</code> and start a worker with it.</p>",
            );
            return;
        }
        h.raw(
            "<div class=\"table\"><table><thead><tr><th>Name</th><th>Proxy address</th>\
             <th>State</th><th>Last heartbeat</th><th>Live sessions</th>\
             <th>Certificate expires</th><th>Key fingerprint</th></tr></thead><tbody>",
        );
        for row in rows {
            let w = &row.worker;
            h.raw("<tr><td data-label=\"Name\"><strong>")
                .text(&w.name)
                .raw("</strong></td><td data-label=\"Proxy address\"><code>")
                .text(&w.proxy_addr)
                .raw("</code></td><td data-label=\"State\"><span class=\"state ")
                .text(row.state)
                .raw("\">")
                .text(row.state)
                .raw("</span></td><td data-label=\"Last heartbeat\">");
            match w.last_seen_at {
                Some(seen) => {
                    h.text(&when(seen)).raw(" <span class=\"hint\">(");
                    h.number(clock::to_u64(now.saturating_sub(seen)))
                        .raw(" s ago)</span>");
                }
                None => {
                    h.raw("never");
                }
            }
            h.raw("</td><td data-label=\"Live sessions\">")
                .number(clock::to_u64(row.live_sessions))
                .raw("</td><td data-label=\"Certificate expires\">")
                .text(&when(w.cert_expires_at))
                .raw("</td><td data-label=\"Key fingerprint\"><code class=\"fingerprint\">")
                .text(&w.key_fingerprint)
                .raw("</code></td></tr>");
        }
        h.raw("</tbody></table></div>");
    })
}
