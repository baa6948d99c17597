//! The calls to `/v1/requests` (shared by `portcullis request` and `portcullis run`).

use std::time::Duration;

use anyhow::Context as _;
use portcullis_proto::access::{
    AccessRequest, CreateAccessRequest, DecideRequest, FinishRun, RequestState, StartRun,
};
use portcullis_proto::api::List;
use serde::Deserialize;

use crate::cli::http::{segment, ApiClient, ApiError};

/// How often a waiting command asks whether its request was decided.
pub(crate) const POLL: Duration = Duration::from_secs(2);

/// `POST /v1/requests`.
pub(crate) async fn create(
    api: &ApiClient,
    body: &CreateAccessRequest,
) -> anyhow::Result<AccessRequest> {
    api.post("/v1/requests", body)
        .await
        .with_context(|| format!("cannot request the role {}", body.role))
}

/// `GET /v1/requests/{id}`.
pub(crate) async fn get(api: &ApiClient, id: &str) -> anyhow::Result<AccessRequest> {
    api.get(&format!("/v1/requests/{}", segment(id)?))
        .await
        .with_context(|| format!("cannot read request {id}"))
}

/// A list answer: a page (`{"items": [...]}`) or a bare array.
#[derive(Deserialize)]
#[serde(untagged)]
enum Listed {
    Page(List<AccessRequest>),
    Array(Vec<AccessRequest>),
}

/// `GET /v1/requests[?state=S]`: the requests the caller may see.
pub(crate) async fn list(
    api: &ApiClient,
    state: Option<RequestState>,
) -> anyhow::Result<Vec<AccessRequest>> {
    let path = match state {
        Some(state) => format!("/v1/requests?state={state}"),
        None => "/v1/requests".to_owned(),
    };
    let listed: Listed = api.get(&path).await.context("cannot list requests")?;
    Ok(match listed {
        Listed::Page(page) => page.items,
        Listed::Array(items) => items,
    })
}

/// What an approver (or the requester) decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Approve,
    Deny,
    Revoke,
}

impl Decision {
    pub(crate) fn verb(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Deny => "deny",
            Decision::Revoke => "revoke",
        }
    }
}

/// `POST /v1/requests/{id}/{approve,deny,revoke}`. A refusal that asks for a fresh login
/// says how to get one.
pub(crate) async fn decide(
    api: &ApiClient,
    id: &str,
    decision: Decision,
    reason: Option<String>,
) -> anyhow::Result<AccessRequest> {
    let path = format!("/v1/requests/{}/{}", segment(id)?, decision.verb());
    api.post(&path, &DecideRequest { reason })
        .await
        .map_err(log_in_again)
}

/// A 403 whose message says "log in again" (the approver's login is too old or had no
/// second factor) as itself, with the command to run, instead of a bare "forbidden".
pub(crate) fn log_in_again(err: anyhow::Error) -> anyhow::Error {
    let Some(api_err) = err.downcast_ref::<ApiError>() else {
        return err;
    };
    if api_err.status != 403 || !api_err.body.message.contains("log in again") {
        return err;
    }
    let message = format!(
        "{}\nApproving needs a recent login with a second factor: run `portcullis login` \
         (with MFA), then run this command again.",
        api_err.body.message
    );
    // Keeps the ApiError in the chain, so the exit code stays "forbidden".
    err.context(message)
}

/// Asks every [`POLL`] until request `id` is no longer pending; `changed` sees each new
/// answer whose approvals changed.
pub(crate) async fn wait_decided(
    api: &ApiClient,
    id: &str,
    mut changed: impl FnMut(&AccessRequest),
) -> anyhow::Result<AccessRequest> {
    let mut approvals = 0;
    loop {
        let request = get(api, id).await?;
        if request.approvals.len() != approvals {
            approvals = request.approvals.len();
            changed(&request);
        }
        if request.state != RequestState::Pending {
            return Ok(request);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `POST /v1/requests/{id}/run/start`.
pub(crate) async fn start_run(
    api: &ApiClient,
    id: &str,
    body: &StartRun,
) -> anyhow::Result<AccessRequest> {
    api.post(&format!("/v1/requests/{}/run/start", segment(id)?), body)
        .await
        .with_context(|| format!("cannot start the run of request {id}"))
}

/// `POST /v1/requests/{id}/run/keepalive`; the answer's body is not needed.
pub(crate) async fn keepalive(api: &ApiClient, id: &str) -> anyhow::Result<()> {
    api.post_ignoring_answer(
        &format!("/v1/requests/{}/run/keepalive", segment(id)?),
        &serde_json::json!({}),
    )
    .await
}

/// `POST /v1/requests/{id}/run/finish`.
pub(crate) async fn finish_run(api: &ApiClient, id: &str, body: &FinishRun) -> anyhow::Result<()> {
    api.post_ignoring_answer(&format!("/v1/requests/{}/run/finish", segment(id)?), body)
        .await
        .with_context(|| format!("cannot report the end of the run of request {id}"))
}
