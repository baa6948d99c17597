//! TODO
use crate::state::AppState;
use portcullis_proto::link::Response;
pub(crate) async fn vet(
    _state: &AppState,
    _worker_id: &str,
    _request: portcullis_proto::gateway::VetForward,
) -> Response {
    Response::Refused {
        reason: "not yet".into(),
    }
}
