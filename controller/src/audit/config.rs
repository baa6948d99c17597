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
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::ConfigError;

/// The validated `[audit]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditConfig {
    /// A checkpoint goes to every sink after this many events...
    pub checkpoint_every: u64,
    /// ...or after this long, whichever comes first.
    pub checkpoint_interval: Duration,
    pub ship_interval: Duration,
    pub sinks: Vec<SinkConfig>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            checkpoint_every: 100,
            checkpoint_interval: Duration::from_secs(60),
            ship_interval: Duration::from_secs(1),
            sinks: Vec::new(),
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    checkpoint_every: Option<u64>,
    checkpoint_interval: Option<RawDuration>,
    ship_interval: Option<RawDuration>,
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
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawDuration {
    Seconds(f64),
    Text(String),
}

fn duration(
    value: Option<&RawDuration>,
    key: &'static str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let d = match value {
        None => return Ok(default),
        Some(RawDuration::Seconds(s)) if s.is_finite() && *s > 0.0 => Duration::from_secs_f64(*s),
        Some(RawDuration::Seconds(s)) => {
            return Err(ConfigError::Invalid {
                key,
                message: format!("{s} is not a positive number of seconds"),
            })
        }
        Some(RawDuration::Text(t)) => {
            humantime::parse_duration(t).map_err(|e| ConfigError::Invalid {
                key,
                message: format!("{t:?} is not a duration ({e}); write e.g. 30, 0.5 or \"60s\""),
            })?
        }
    };
    if d.is_zero() {
        return Err(ConfigError::Invalid {
            key,
            message: "must be greater than zero".into(),
        });
    }
    Ok(d)
}

impl RawAudit {
    pub fn validate(self) -> Result<AuditConfig, ConfigError> {
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
            let kind = match (raw.kind.as_str(), raw.path) {
                ("file", Some(path)) => SinkKind::File { path },
                ("file", None) => {
                    return Err(ConfigError::Invalid {
                        key: "audit.sink.path",
                        message: format!("sink {:?} of type file needs a path", raw.name),
                    })
                }
                (other, _) => {
                    return Err(ConfigError::Invalid {
                        key: "audit.sink.type",
                        message: format!("{other:?} is not a sink type (file)"),
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
            checkpoint_interval: duration(
                self.checkpoint_interval.as_ref(),
                "audit.checkpoint_interval",
                defaults.checkpoint_interval,
            )?,
            ship_interval: duration(
                self.ship_interval.as_ref(),
                "audit.ship_interval",
                defaults.ship_interval,
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
    }

    #[test]
    fn bad_sinks_name_the_key() {
        let err = parse("[[sink]]\nname = \"f\"\ntype = \"file\"\n").unwrap_err();
        assert!(err.to_string().contains("audit.sink.path"), "{err}");
        let err = parse("[[sink]]\nname = \"f\"\ntype = \"kafka\"\n").unwrap_err();
        assert!(err.to_string().contains("audit.sink.type"), "{err}");
        let err = parse("checkpoint_every = 0\n").unwrap_err();
        assert!(err.to_string().contains("audit.checkpoint_every"), "{err}");
    }
}
