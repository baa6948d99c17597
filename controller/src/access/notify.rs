//! Notifications of access events (`[access.notify]`): one JSON object per event POSTed to
//! the webhook, and sent as one RFC 5424 message (over TLS, as the audit's syslog sink; MSGID
//! the event type, `break_glass` at severity alert) to the syslog server, best effort. A notification never blocks or fails the request it reports:
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

/// Sends `event`'s notification in the background to the webhook and the syslog server
/// configured, if any.
pub(crate) fn send(state: &AppState, event: &AuditEvent) {
    let config = &state.config.access;
    if config.webhook.is_none() && config.syslog.is_none() {
        return;
    }
    let body = payload(event);
    if let Some(webhook) = config.webhook.clone() {
        let body = body.clone();
        tokio::spawn(async move {
            if let Err(err) = post(&webhook, &body).await {
                tracing::warn!(error = %err, webhook = %webhook.url, "access notification not delivered (best effort; the audit log has the event)");
            }
        });
    }
    if let Some(syslog) = config.syslog.clone() {
        let line = body.to_string();
        tokio::spawn(async move {
            let address = syslog.address.clone();
            let mut output = crate::audit::syslog::SyslogOutput::new(syslog);
            let sent = tokio::time::timeout(TIMEOUT, output.send(&[line])).await;
            let failure = match sent {
                Ok(Ok(())) => return,
                Ok(Err(err)) => err.to_string(),
                Err(_) => format!("no answer within {}s", TIMEOUT.as_secs()),
            };
            tracing::warn!(error = %failure, syslog = %address, "access notification not delivered to syslog (best effort; the audit log has the event)");
        });
    }
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

    /// A TLS listener on 127.0.0.1 with a certificate of its own CA (whose PEM it returns):
    /// each connection's bytes, once it goes quiet, arrive on the channel; an HTTP request
    /// gets a 204.
    async fn catcher() -> (
        std::net::SocketAddr,
        String,
        tokio::sync::mpsc::UnboundedReceiver<String>,
    ) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let mut config = portcullis_crypto::tls::https_server_config(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            b"http/1.1",
        )
        .unwrap();
        config.alpn_protocols.clear();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 4096];
                    let quiet = std::time::Duration::from_millis(300);
                    while let Ok(Ok(n)) = tokio::time::timeout(quiet, tls.read(&mut buf)).await {
                        if n == 0 {
                            break;
                        }
                        seen.extend_from_slice(&buf[..n]);
                    }
                    let text = String::from_utf8_lossy(&seen).to_string();
                    if text.starts_with("POST ") {
                        let _ = tls.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
                        let _ = tls.shutdown().await;
                    }
                    let _ = tx.send(text);
                });
            }
        });
        (addr, ca_pem, rx)
    }

    #[tokio::test]
    async fn a_break_glass_reaches_the_webhook_and_syslog_at_severity_alert() {
        let dir = tempfile::tempdir().unwrap();
        let (webhook_addr, webhook_ca, mut posts) = catcher().await;
        let (syslog_addr, syslog_ca, mut messages) = catcher().await;
        std::fs::write(dir.path().join("hook.pem"), webhook_ca).unwrap();
        std::fs::write(dir.path().join("siem.pem"), syslog_ca).unwrap();
        let webhook = Webhook {
            url: format!("https://localhost:{}/hooks/x", webhook_addr.port()),
            ca_file: Some(dir.path().join("hook.pem")),
        };
        let event = AuditEvent::new(
            Actor::system(),
            Event::BreakGlass {
                reason: "prod is down".into(),
                details: event::AccessRequested {
                    request_id: "ar_9".into(),
                    break_glass: true,
                    ..event::AccessRequested::default()
                },
            },
        );
        post(&webhook, &payload(&event)).await.unwrap();
        let request = posts.recv().await.unwrap();
        assert!(request.starts_with("POST /hooks/x "), "{request}");
        let json = &request[request.find("\r\n\r\n").unwrap() + 4..];
        let body: Value = serde_json::from_str(json).unwrap();
        assert_eq!(
            (
                body["type"].as_str(),
                body["details"]["request_id"].as_str()
            ),
            (Some("break_glass"), Some("ar_9"))
        );

        // A webhook whose certificate is not of the configured CA gets nothing.
        let wrong = Webhook {
            url: webhook.url.clone(),
            ca_file: Some(dir.path().join("siem.pem")),
        };
        assert!(post(&wrong, &payload(&event)).await.is_err());

        let syslog = crate::audit::config::SyslogTls {
            address: format!("localhost:{}", syslog_addr.port()),
            server_name: "localhost".into(),
            ca_file: dir.path().join("siem.pem"),
            client_cert_file: None,
            client_key_file: None,
        };
        let mut output = crate::audit::syslog::SyslogOutput::new(syslog);
        output.send(&[payload(&event).to_string()]).await.unwrap();
        drop(output);
        let message = messages.recv().await.unwrap();
        // Octet-counted, LOG_AUDIT (13) * 8 + alert (1), MSGID the type.
        assert!(message.contains(" <105>1 "), "{message}");
        assert!(message.contains(" break_glass "), "{message}");
        assert!(message.contains("\"request_id\":\"ar_9\""), "{message}");
    }
}
