//! `GET /v1/sessions/{id}/secrets`: a live session's leased secrets, for its own user only.
//! Anyone else, whatever their permissions, is answered as if the session did not exist
//! (404), and the refusal is audited as `permission_denied`; an ended session's secrets are
//! gone (410). The checks, the opening and the `session_secrets_read` event are
//! `sessions::secrets::read`'s.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use portcullis_proto::api::SessionSecrets;

use super::error::{ApiError, Denied};
use super::extract::Principal;
use crate::sessions::secrets::{self, SecretsError};
use crate::state::AppState;

/// What a refusal to anyone but the session's own user names as the missing permission.
const OWNER: &str = "session owner";

pub(crate) async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<SessionSecrets>, ApiError> {
    let actor = principal.actor();
    match secrets::read(&state, &actor, &principal.user.id, &id).await {
        Ok(answer) => Ok(Json(answer)),
        Err(SecretsError::NotOwner(_)) => {
            let mut err = ApiError::not_found("session", &id);
            err.denied = Some(Box::new(Denied {
                actor,
                permission: OWNER.to_owned(),
            }));
            Err(err)
        }
        Err(err) => Err(err.into()),
    }
}

impl From<SecretsError> for ApiError {
    fn from(err: SecretsError) -> Self {
        let message = err.to_string();
        match err {
            SecretsError::NoSession(id) | SecretsError::NotOwner(id) => {
                ApiError::not_found("session", &id)
            }
            SecretsError::NoSecrets(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "no_secrets", message)
            }
            SecretsError::Ended { .. } => ApiError::new(StatusCode::GONE, "session_ended", message),
            SecretsError::Minting(_) => ApiError::new(StatusCode::CONFLICT, "minting", message),
            SecretsError::Store(e) => e.into(),
            SecretsError::Crypt(m) => {
                tracing::error!(error = %portcullis_proto::text::escaped(&m), "cannot open a session's sealed secrets");
                ApiError::internal(
                    "cannot open the session's sealed secrets; see the controller's log",
                )
            }
        }
    }
}
