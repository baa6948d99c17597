//! Notifications of access events (`[access.notify]`): one JSON object per event POSTed to
//! the webhook, best effort. A notification never blocks or fails the request it reports:
//! it is sent from a task of its own after the commit, once, and a failure is logged. It
//! carries what the audit event carries (ids, names, reasons), never a secret.

use serde_json::{json, Value};

use super::config::Webhook;
use crate::audit::AuditEvent;
use crate::state::AppState;

/// How long one webhook call may take.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The notification of `event`: its type, who did it, and its facts.
pub(crate) fn payload(event: &AuditEvent) -> Value {
    let body = serde_json::to_value(&event.event).unwrap_or(Value::Null);
    json!({
        "source": "portcullis",
        "type": event.kind().as_str(),
        "actor": event.actor.username,
        "reason": body.get("reason").cloned().unwrap_or(Value::Null),
        "details": body.get("details").cloned().unwrap_or(Value::Null),
    })
}

/// Sends `event`'s notification in the background, if a webhook is configured.
pub(crate) fn send(state: &AppState, event: &AuditEvent) {
    let Some(webhook) = state.config.access.webhook.clone() else {
        return;
    };
    let body = payload(event);
    tokio::spawn(async move {
        if let Err(err) = post(&webhook, &body).await {
            tracing::warn!(error = %err, webhook = %webhook.url, "access notification not delivered (best effort; the audit log has the event)");
        }
    });
}

async fn post(webhook: &Webhook, body: &Value) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    match &webhook.ca_file {
        Some(path) => {
            use rustls_pki_types::pem::PemObject as _;
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(path).map_err(|e| {
                format!(
                    "cannot read access.notify.webhook_ca_file {}: {e}",
                    path.display()
                )
            })?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let tls = portcullis_crypto::tls::https_client_config(
        roots,
        portcullis_crypto::tls::ClientAuth::None,
    )
    .map_err(|e| e.to_string())?;
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .https_only(true)
        .timeout(TIMEOUT)
        .user_agent(concat!("portcullis-controller/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())?;
    let response = client
        .post(&webhook.url)
        .json(body)
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    if !response.status().is_success() {
        return Err(format!("the webhook answered {}", response.status()));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::audit::{event, Actor, Event};

    #[test]
    fn a_notification_is_the_events_type_actor_and_facts() {
        let actor = Actor {
            username: Some("ada".into()),
            ..Actor::default()
        };
        let event = AuditEvent::new(
            actor,
            Event::BreakGlass {
                reason: "prod is down".into(),
                details: event::AccessRequested {
                    request_id: "ar_1".into(),
                    role: "web-oncall".into(),
                    break_glass: true,
                    ..event::AccessRequested::default()
                },
            },
        );
        let body = payload(&event);
        assert_eq!(body["type"], "break_glass");
        assert_eq!(body["actor"], "ada");
        assert_eq!(body["reason"], "prod is down");
        assert_eq!(body["details"]["request_id"], "ar_1");
    }
}
