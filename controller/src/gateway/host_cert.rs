//! `GatewayHostCertificate`: a worker's SSH gateway asks for a host certificate for its key.
//! The certificate names only [`portcullis_proto::gateway::HOST_ALIAS`] and is valid for
//! [`LIFETIME`]; the worker renews it at half-life. Nothing is stored (a host certificate
//! grants the worker nothing it does not hold already: clients check it, the worker's link
//! is what is trusted), so nothing is audited; the issue is logged.

use std::time::Duration;

use portcullis_proto::link::Response;

use crate::keys::Purpose;
use crate::state::AppState;

/// How long a gateway host certificate is valid.
pub(crate) const LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Signs a host certificate for `public_key` (OpenSSH text) of the linked worker `worker_id`.
pub(crate) async fn issue(state: &AppState, worker_id: &str, public_key: &str) -> Response {
    let key = match state.keys.active(Purpose::SshHostCa).await {
        Ok(key) => key,
        Err(err) => {
            return Response::error(format!(
                "the controller cannot load its SSH host CA ({err}); retry, or check the keyset with `portcullis controller keys list`"
            ))
        }
    };
    let now = state.clock.unix_secs();
    let request = crate::ssh::HostCertificateRequest {
        worker_id,
        // A little before now: a worker whose clock runs behind accepts it at once.
        valid_after: now.saturating_sub(60),
        valid_before: now + LIFETIME.as_secs(),
        serial: crate::ids::random_u64(),
    };
    match crate::ssh::sign_host(&key.pkcs8, public_key, &request) {
        Ok(certificate) => {
            tracing::info!(worker.id = %worker_id, ca.key_id = %key.id, serial = request.serial, valid_before = request.valid_before, "gateway host certificate issued");
            Response::SshCertificate {
                certificate,
                valid_before: request.valid_before,
            }
        }
        Err(crate::ssh::SshError::BadPublicKey(detail)) => Response::Refused {
            reason: format!(
                "the gateway's host key is not an OpenSSH public key ({detail}); send the public half as `ALGORITHM BASE64`"
            ),
        },
        Err(err) => Response::error(format!("cannot sign the gateway's host certificate: {err}")),
    }
}
