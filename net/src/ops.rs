//! Where a daemon's ops listener (`/metrics`, `/health`, `/ready`: docs/deploy.md
//! "Monitoring") listens, as its `[ops]` config section says.

use std::net::SocketAddr;

/// The `[ops]` section, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpsListen {
    /// `enabled = false` or `listen = ""`: no ops listener.
    Off,
    /// No `listen` key: the daemon's default loopback address. When that port is taken (a
    /// second daemon on the host), the daemon runs on without an ops listener and says so.
    Default(SocketAddr),
    /// `listen = "ADDR:PORT"`: a port that cannot be bound stops the start.
    Configured(SocketAddr),
}

impl OpsListen {
    /// Validates `[ops] listen` and `enabled`; the error says what is wrong with `listen`
    /// (the caller names the key).
    pub fn parse(
        listen: Option<&str>,
        enabled: Option<bool>,
        default: SocketAddr,
    ) -> Result<OpsListen, String> {
        if enabled == Some(false) {
            return Ok(OpsListen::Off);
        }
        match listen.map(str::trim) {
            None => Ok(OpsListen::Default(default)),
            Some("") => Ok(OpsListen::Off),
            Some(text) => text.parse().map(OpsListen::Configured).map_err(|_| {
                format!("{text:?} is not ADDRESS:PORT (e.g. 127.0.0.1:{}); use \"\" to turn the ops listener off", default.port())
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9290))
    }

    #[test]
    fn absent_is_the_loopback_default_and_empty_or_disabled_is_off() {
        assert_eq!(
            OpsListen::parse(None, None, default()),
            Ok(OpsListen::Default(default()))
        );
        assert_eq!(
            OpsListen::parse(Some(""), None, default()),
            Ok(OpsListen::Off)
        );
        assert_eq!(
            OpsListen::parse(None, Some(false), default()),
            Ok(OpsListen::Off)
        );
        assert_eq!(
            OpsListen::parse(Some("127.0.0.1:9999"), Some(false), default()),
            Ok(OpsListen::Off)
        );
        assert_eq!(
            OpsListen::parse(Some("0.0.0.0:9300"), Some(true), default()),
            Ok(OpsListen::Configured(SocketAddr::from((
                [0, 0, 0, 0],
                9300
            ))))
        );
        let err = OpsListen::parse(Some("localhost"), None, default()).unwrap_err();
        assert!(err.contains("ADDRESS:PORT"), "{err}");
    }
}
