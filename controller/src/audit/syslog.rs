//! The syslog sink: RFC 5424 messages over TLS (RFC 5425, usually port 6514) to a SIEM such
//! as Wazuh or rsyslog. Each audit event is one message whose structured data carries the
//! event id and sequence (so the SIEM can drop duplicates of at-least-once delivery) and
//! whose text is the signed event JSON, unchanged, so the SIEM's copy verifies offline.
//! Checkpoints go the same way with MSGID `audit_checkpoint`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::FutureExt as _;
use portcullis_crypto::tls::ClientAuth;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls_pki_types::pem::PemObject as _;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::config::SyslogTls;

/// The IANA "example" enterprise number (RFC 5612) names our structured-data element:
/// `[portcullis@32473 id="..." seq="..."]`.
pub(crate) const SD_ID: &str = "portcullis@32473";

/// Facility 13 ("log audit", RFC 5424 table 1).
const FACILITY_LOG_AUDIT: u8 = 13;
/// RFC 5424 severity 1, "action must be taken immediately": break-glass access.
const SEVERITY_ALERT: u8 = 1;
const SEVERITY_WARNING: u8 = 4;
const SEVERITY_NOTICE: u8 = 5;

#[derive(Debug, thiserror::Error)]
pub(crate) enum SyslogError {
    #[error("cannot read the syslog sink's {what} {path}: {message}")]
    File {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("the syslog sink's TLS settings are unusable: {0}")]
    Tls(String),
    #[error("cannot reach the syslog server {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("sending to the syslog server {address} failed: {source}")]
    Send {
        address: String,
        source: std::io::Error,
    },
}

/// A TLS connection to the syslog server, opened on first use and again after an error.
pub(crate) struct SyslogOutput {
    settings: SyslogTls,
    connector: Option<(TlsConnector, ServerName<'static>)>,
    stream: Option<TlsStream<TcpStream>>,
    /// A write failed since the last [`SyslogOutput::intact`].
    lost: bool,
    hostname: String,
    procid: String,
}

impl SyslogOutput {
    pub(crate) fn new(settings: SyslogTls) -> SyslogOutput {
        SyslogOutput {
            settings,
            connector: None,
            stream: None,
            lost: false,
            hostname: hostname(),
            procid: std::process::id().to_string(),
        }
    }

    /// Frames `events` (each a JSON line: an event or a checkpoint) and sends them in one
    /// write. On error the connection is dropped; the caller keeps its cursor and retries.
    pub(crate) async fn send(&mut self, lines: &[String]) -> Result<(), SyslogError> {
        let mut data = Vec::new();
        for line in lines {
            let message = self.message(line);
            data.extend_from_slice(format!("{} ", message.len()).as_bytes());
            data.extend_from_slice(message.as_bytes());
        }
        let address = self.settings.address.clone();
        let result = async {
            let stream = self.connect().await?;
            stream
                .write_all(&data)
                .await
                .map_err(|source| SyslogError::Send {
                    address: address.clone(),
                    source,
                })?;
            stream.flush().await.map_err(|source| SyslogError::Send {
                address: address.clone(),
                source,
            })
        }
        .await;
        if result.is_err() {
            self.stream = None;
            self.lost = true;
        }
        result
    }

    /// Whether the connection is still the one that carried everything written since the
    /// last call. A syslog server never sends, so anything readable means the server closed
    /// the connection (or a proxy cut it): bytes written just before may never have arrived,
    /// and the shipper sends them again (at least once; the SIEM drops duplicates by id).
    pub(crate) fn intact(&mut self) -> bool {
        let lost = std::mem::take(&mut self.lost);
        let Some(stream) = self.stream.as_mut() else {
            return !lost;
        };
        let mut buf = [0u8; 512];
        match stream.read(&mut buf).now_or_never() {
            None | Some(Ok(1..)) => !lost,
            Some(Ok(0) | Err(_)) => {
                self.stream = None;
                false
            }
        }
    }

    async fn connect(&mut self) -> Result<&mut TlsStream<TcpStream>, SyslogError> {
        if self.connector.is_none() {
            self.connector = Some(connector(&self.settings)?);
        }
        let stream = match self.stream.take() {
            Some(stream) => stream,
            None => {
                let Some((connector, name)) = &self.connector else {
                    return Err(SyslogError::Tls("no TLS connector".into()));
                };
                let address = self.settings.address.clone();
                let tcp = tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    TcpStream::connect(&address),
                )
                .await
                .map_err(|_| SyslogError::Connect {
                    address: address.clone(),
                    source: std::io::ErrorKind::TimedOut.into(),
                })?
                .map_err(|source| SyslogError::Connect {
                    address: address.clone(),
                    source,
                })?;
                let _ = tcp.set_nodelay(true);
                connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|source| SyslogError::Connect { address, source })?
            }
        };
        Ok(self.stream.insert(stream))
    }

    /// One RFC 5424 message for a JSON line.
    fn message(&self, line: &str) -> String {
        let event: Value = serde_json::from_str(line).unwrap_or(Value::Null);
        let text = |key: &str| event.get(key).and_then(Value::as_str).unwrap_or("");
        let kind = text("type");
        // Break-glass access is the one event a SIEM must page on: above every other.
        let severity = if kind == "break_glass" {
            SEVERITY_ALERT
        } else if text("decision") == "deny" || kind.ends_with("_failed") {
            SEVERITY_WARNING
        } else {
            SEVERITY_NOTICE
        };
        let pri = FACILITY_LOG_AUDIT * 8 + severity;
        let time = match text("time") {
            "" => "-",
            t => t,
        };
        let mut sd = format!("[{SD_ID}");
        if let Some(id) = event.get("id").and_then(Value::as_str) {
            sd.push_str(&format!(" id=\"{}\"", sd_escape(id)));
        }
        if let Some(seq) = event.get("sequence").and_then(Value::as_u64) {
            sd.push_str(&format!(" seq=\"{seq}\""));
        }
        sd.push(']');
        format!(
            "<{pri}>1 {time} {} portcullis {} {} {sd} {line}",
            self.hostname,
            self.procid,
            msgid(kind)
        )
    }
}

/// MSGID: 1 to 32 printable US-ASCII characters, or `-`.
fn msgid(kind: &str) -> String {
    let id: String = kind
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(32)
        .collect();
    if id.is_empty() {
        "-".into()
    } else {
        id
    }
}

/// PARAM-VALUE escaping of RFC 5424 section 6.3.3.
fn sd_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let name: String = name
        .trim()
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    if name.is_empty() {
        "-".into()
    } else {
        name
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, SyslogError> {
    std::fs::read(path).map_err(|e| SyslogError::File {
        what,
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// The TLS client: the server certificate must chain to `ca_file` and name `server_name`;
/// with `client_cert_file` and `client_key_file`, the controller authenticates itself too.
fn connector(s: &SyslogTls) -> Result<(TlsConnector, ServerName<'static>), SyslogError> {
    let mut roots = rustls::RootCertStore::empty();
    let ca = read("CA file", &s.ca_file)?;
    for cert in CertificateDer::pem_slice_iter(&ca) {
        let cert = cert.map_err(|e| SyslogError::File {
            what: "CA file",
            path: s.ca_file.clone(),
            message: e.to_string(),
        })?;
        roots
            .add(cert)
            .map_err(|e| SyslogError::Tls(format!("a CA certificate is unusable: {e}")))?;
    }
    if roots.is_empty() {
        return Err(SyslogError::File {
            what: "CA file",
            path: s.ca_file.clone(),
            message: "it holds no PEM certificate".into(),
        });
    }
    let auth = match (&s.client_cert_file, &s.client_key_file) {
        (Some(cert_file), Some(key_file)) => {
            let pem = read("client certificate", cert_file)?;
            let chain = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| SyslogError::File {
                    what: "client certificate",
                    path: cert_file.clone(),
                    message: e.to_string(),
                })?;
            let key_pem = read("client key", key_file)?;
            let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| SyslogError::File {
                what: "client key",
                path: key_file.clone(),
                message: e.to_string(),
            })?;
            ClientAuth::Cert { chain, key }
        }
        _ => ClientAuth::None,
    };
    let config = portcullis_crypto::tls::https_client_config(roots, auth)
        .map_err(|e| SyslogError::Tls(e.to_string()))?;
    let name = ServerName::try_from(s.server_name.clone())
        .map_err(|e| SyslogError::Tls(format!("{:?} is not a server name: {e}", s.server_name)))?;
    Ok((TlsConnector::from(Arc::new(config)), name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output() -> SyslogOutput {
        let mut o = SyslogOutput::new(SyslogTls {
            address: "127.0.0.1:6514".into(),
            server_name: "siem".into(),
            ca_file: "/nonexistent".into(),
            client_cert_file: None,
            client_key_file: None,
        });
        o.hostname = "ctl-1".into();
        o.procid = "42".into();
        o
    }

    #[test]
    fn events_become_rfc5424_messages_with_the_id_in_structured_data() {
        let line = r#"{"id":"e_1","sequence":7,"time":"2026-11-23T08:00:00.000Z","type":"session_denied","decision":"deny"}"#;
        assert_eq!(
            output().message(line),
            format!("<108>1 2026-11-23T08:00:00.000Z ctl-1 portcullis 42 session_denied [portcullis@32473 id=\"e_1\" seq=\"7\"] {line}")
        );
        let line = r#"{"type":"audit_checkpoint","sequence":9,"hash":"ab"}"#;
        assert!(output().message(line).starts_with(
            "<109>1 - ctl-1 portcullis 42 audit_checkpoint [portcullis@32473 seq=\"9\"] "
        ));
    }

    #[test]
    fn break_glass_is_an_alert_above_every_other_event() {
        let line = r#"{"type":"break_glass","sequence":3,"reason":"prod down"}"#;
        // LOG_AUDIT (13) * 8 + alert (1).
        assert!(
            output().message(line).starts_with("<105>1 "),
            "{}",
            output().message(line)
        );
    }

    #[test]
    fn param_values_are_escaped() {
        assert_eq!(sd_escape(r#"a"b\c]"#), r#"a\"b\\c\]"#);
        assert_eq!(msgid(""), "-");
        assert_eq!(msgid(&"x".repeat(40)).len(), 32);
    }

    #[tokio::test]
    async fn a_missing_ca_file_is_named() {
        let err = output().send(&["{}".into()]).await.unwrap_err();
        assert!(err.to_string().contains("/nonexistent"), "{err}");
    }
}
