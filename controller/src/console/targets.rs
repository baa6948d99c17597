//! `/console/targets`: every target with its state, and for `targets:admin` an edit form per
//! target whose POST goes through the API's own update (`api::targets::update_as`: the same
//! checks and the same `target_updated` event as `PATCH /v1/targets/{id}`). A form that the
//! update refuses comes back with what was typed and the reason; a POST without
//! `targets:admin` is a 403 audited as `permission_denied`.

mod edit;
mod page;
#[cfg(test)]
mod tests;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use portcullis_policy::Permission;
use portcullis_proto::api::Target;

use super::error::ConsoleError;
use super::handlers::{checked_post, form};
use super::pages::{page_response, Nav};
use super::session::ConsoleUser;
use crate::api::extract::PeerAddr;
use crate::api::targets::{to_api, update_as};
use crate::state::AppState;
use crate::store::targets as rows;
use edit::{EditValues, FieldError};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/targets", get(list))
        .route("/console/targets/{id}", post(update))
}

async fn all(state: &AppState) -> Result<Vec<Target>, ConsoleError> {
    let mut conn = state.store.conn().await?;
    Ok(rows::list(&mut conn).await?.iter().map(to_api).collect())
}

/// `GET /console/targets`: every target (any logged-in user, as `GET /v1/targets`).
async fn list(State(state): State<AppState>, user: ConsoleUser) -> Result<Response, ConsoleError> {
    let targets = all(&state).await?;
    let view = page::View {
        nav: Nav {
            username: &user.principal.user.username,
            csrf_token: &user.csrf_token,
        },
        targets: &targets,
        editable: user.principal.has(Permission::TargetsAdmin),
        failed: None,
    };
    Ok(page_response(StatusCode::OK, page::render(&view)))
}

/// `POST /console/targets/{id}`: the edit form.
async fn update(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    user: Result<ConsoleUser, ConsoleError>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ConsoleError> {
    let fields = form(&body);
    let user = checked_post(&state, &headers, peer, user, &fields)?;
    let principal = &user.principal;
    principal.require(Permission::TargetsAdmin)?;
    let current = {
        let mut conn = state.store.conn().await?;
        rows::find(&mut conn, &id).await?
    };
    let Some(current) = current else {
        return Err(ConsoleError::Page {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "no target {id:?}: it may have been deleted or renamed meanwhile; reload the \
                 targets page"
            ),
            denied: None,
        });
    };
    let sent = EditValues::from_form(&fields);
    let refused = match sent.changes(&EditValues::of(&to_api(&current))) {
        Err(e) => e,
        Ok(changes) => match update_as(&state, principal, &current.id, changes).await {
            Ok(_) => return Ok(Redirect::to("/console/targets").into_response()),
            Err(e) if is_form_error(e.status) => FieldError {
                field: e.field.clone().unwrap_or_default(),
                message: e.message,
            },
            Err(e) => return Err(e.into()),
        },
    };
    let targets = all(&state).await?;
    let view = page::View {
        nav: Nav {
            username: &principal.user.username,
            csrf_token: &user.csrf_token,
        },
        targets: &targets,
        editable: true,
        failed: Some(page::Failed {
            target_id: &current.id,
            sent: &sent,
            error: &refused,
        }),
    };
    Ok(page_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        page::render(&view),
    ))
}

/// The refusals of an update that the form shows beside what was typed: a value the API
/// refuses (400, 422) or a name another target has (409).
fn is_form_error(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY | StatusCode::CONFLICT
    )
}
