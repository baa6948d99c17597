//! The `[audit]` section of the controller config: checkpoint cadence and external sinks.
//!
//! ```toml
//! [audit]
//! checkpoint_every = 100        # events
//! checkpoint_interval = "60s"
//! ship_interval = "1s"          # how often shippers look for new events
//! [[audit.sink]]
//! name = "siem-file"
//! type = "file"
//! path = "/var/log/portcullis/audit.jsonl"
//! [[audit.sink]]
//! name = "wazuh"
//! type = "syslog-tls"               # RFC 5424 over TLS (RFC 5425)
//! address = "siem.lab:6514"
//! ca_file = "/etc/portcullis/siem-ca.pem"
//! # server_name = "siem.lab"        # default: the host part of address
//! # client_cert_file, client_key_file: for servers that require client certificates
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::error::ConfigError;
use crate::config::values::{duration, positive, DurationValue};

/// The validated `[audit]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditConfig {
    /// A checkpoint goes to every sink after this many events...
    pub checkpoint_every: u64,
    /// ...or after this long, whichever comes first.
    pub checkpoint_interval: Duration,
    pub ship_interval: Duration,
    pub sinks: Vec<SinkConfig>,
    /// Failures of unauthenticated callers are summed per address and type over this long
    /// into one event (`audit::denials`).
    pub denial_window: Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            checkpoint_every: 100,
            checkpoint_interval: Duration::from_secs(60),
            ship_interval: Duration::from_secs(1),
            sinks: Vec::new(),
            denial_window: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkConfig {
    /// Names the sink's cursor in the store: renaming a sink ships everything again.
    pub name: String,
    pub kind: SinkKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkKind {
    /// JSON lines appended to a file, reopened on SIGHUP (logrotate).
    File { path: PathBuf },
    /// RFC 5424 messages over TLS (RFC 5425).
    SyslogTls(SyslogTls),
}

/// Where and how the syslog sink connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogTls {
    /// `host:port`.
    pub address: String,
    /// The name the server's certificate must carry.
    pub server_name: String,
    /// PEM certificates the server's certificate must chain to.
    pub ca_file: PathBuf,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAudit {
    checkpoint_every: Option<u64>,
    checkpoint_interval: Option<DurationValue>,
    ship_interval: Option<DurationValue>,
    denial_window: Option<DurationValue>,
    #[serde(default)]
    sink: Vec<RawSink>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    path: Option<PathBuf>,
    address: Option<String>,
    server_name: Option<String>,
    ca_file: Option<PathBuf>,
    client_cert_file: Option<PathBuf>,
    client_key_file: Option<PathBuf>,
}

fn syslog_tls(raw: &RawSink) -> Result<SyslogTls, ConfigError> {
    let address = raw.address.clone().ok_or_else(|| ConfigError::Invalid {
        key: "audit.sink.address",
        message: format!(
            "sink {:?} of type syslog-tls needs an address (host:6514)",
            raw.name
        ),
    })?;
    let host = address
        .rsplit_once(':')
        .filter(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        .map(|(host, _)| {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned()
        })
        .ok_or_else(|| ConfigError::Invalid {
            key: "audit.sink.address",
            message: format!("{address:?} is not host:port"),
        })?;
    let ca_file = raw.ca_file.clone().ok_or_else(|| ConfigError::Invalid {
        key: "audit.sink.ca_file",
        message: format!(
            "sink {:?} of type syslog-tls needs ca_file, the PEM CA that signed the server's certificate",
            raw.name
        ),
    })?;
    if raw.client_cert_file.is_some() != raw.client_key_file.is_some() {
        return Err(ConfigError::Invalid {
            key: "audit.sink.client_cert_file",
            message: "give both client_cert_file and client_key_file, or neither".into(),
        });
    }
    Ok(SyslogTls {
        address,
        server_name: raw.server_name.clone().unwrap_or(host),
        ca_file,
        client_cert_file: raw.client_cert_file.clone(),
        client_key_file: raw.client_key_file.clone(),
    })
}

impl RawAudit {
    pub(crate) fn validate(self) -> Result<AuditConfig, ConfigError> {
        let defaults = AuditConfig::default();
        let checkpoint_every = self.checkpoint_every.unwrap_or(defaults.checkpoint_every);
        if checkpoint_every == 0 {
            return Err(ConfigError::Invalid {
                key: "audit.checkpoint_every",
                message: "must be at least 1".into(),
            });
        }
        let mut sinks: Vec<SinkConfig> = Vec::new();
        for raw in self.sink {
            if raw.name.is_empty()
                || !raw
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(ConfigError::Invalid {
                    key: "audit.sink.name",
                    message: format!("{:?} must be letters, digits, - or _", raw.name),
                });
            }
            if sinks.iter().any(|s| s.name == raw.name) {
                return Err(ConfigError::Invalid {
                    key: "audit.sink.name",
                    message: format!("{:?} names two sinks", raw.name),
                });
            }
            let kind = match raw.kind.as_str() {
                "file" => SinkKind::File {
                    path: raw.path.ok_or_else(|| ConfigError::Invalid {
                        key: "audit.sink.path",
                        message: format!("sink {:?} of type file needs a path", raw.name),
                    })?,
                },
                "syslog-tls" => SinkKind::SyslogTls(syslog_tls(&raw)?),
                other => {
                    return Err(ConfigError::Invalid {
                        key: "audit.sink.type",
                        message: format!("{other:?} is not a sink type (file, syslog-tls)"),
                    })
                }
            };
            sinks.push(SinkConfig {
                name: raw.name,
                kind,
            });
        }
        Ok(AuditConfig {
            checkpoint_every,
            checkpoint_interval: positive(
                duration(
                    &self.checkpoint_interval,
                    "audit.checkpoint_interval",
                    defaults.checkpoint_interval,
                )?,
                "audit.checkpoint_interval",
            )?,
            ship_interval: positive(
                duration(
                    &self.ship_interval,
                    "audit.ship_interval",
                    defaults.ship_interval,
                )?,
                "audit.ship_interval",
            )?,
            denial_window: positive(
                duration(
                    &self.denial_window,
                    "audit.denial_window",
                    defaults.denial_window,
                )?,
                "audit.denial_window",
            )?,
            sinks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AuditConfig, ConfigError> {
        toml::from_str::<RawAudit>(text).unwrap().validate()
    }

    #[test]
    fn sinks_and_cadence_parse() {
        let c = parse(
            "checkpoint_every = 5\ncheckpoint_interval = \"2s\"\n[[sink]]\nname = \"f\"\ntype = \"file\"\npath = \"/tmp/a.jsonl\"\n",
        )
        .unwrap();
        assert_eq!(c.checkpoint_every, 5);
        assert_eq!(c.checkpoint_interval, Duration::from_secs(2));
        assert_eq!(
            c.sinks,
            vec![SinkConfig {
                name: "f".into(),
                kind: SinkKind::File {
                    path: "/tmp/a.jsonl".into()
                }
            }]
        );
        assert_eq!(parse("").unwrap(), AuditConfig::default());
        let c = parse("[[sink]]\nname = \"w\"\ntype = \"syslog-tls\"\naddress = \"siem.lab:6514\"\nca_file = \"/ca.pem\"\n").unwrap();
        assert_eq!(
            c.sinks[0].kind,
            SinkKind::SyslogTls(SyslogTls {
                address: "siem.lab:6514".into(),
                server_name: "siem.lab".into(),
                ca_file: "/ca.pem".into(),
                client_cert_file: None,
                client_key_file: None,
            })
        );
    }

    #[test]
    fn bad_sinks_name_the_key() {
        let err = parse("[[sink]]\nname = \"f\"\ntype = \"file\"\n").unwrap_err();
        assert!(err.to_string().contains("audit.sink.path"), "{err}");
        let err = parse("[[sink]]\nname = \"f\"\ntype = \"kafka\"\n").unwrap_err();
        assert!(err.to_string().contains("audit.sink.type"), "{err}");
        let err = parse("[[sink]]\nname = \"s\"\ntype = \"syslog-tls\"\naddress = \"siem\"\nca_file = \"/ca\"\n").unwrap_err();
        assert!(err.to_string().contains("audit.sink.address"), "{err}");
        let err = parse("[[sink]]\nname = \"s\"\ntype = \"syslog-tls\"\naddress = \"siem:6514\"\n")
            .unwrap_err();
        assert!(err.to_string().contains("audit.sink.ca_file"), "{err}");
        let err = parse("checkpoint_every = 0\n").unwrap_err();
        assert!(err.to_string().contains("audit.checkpoint_every"), "{err}");
    }
}
