//! `[[catalog.proxmox]]`: the Proxmox clusters whose guests and nodes become targets.
//!
//! ```toml
//! [[catalog.proxmox]]
//! name = "homelab"                                   # names the cluster in targets and events
//! urls = ["https://10.20.0.11:8006", "https://10.20.0.12:8006"]   # tried in order
//! token_file = "/etc/portcullis/proxmox-discovery.token"          # USER@REALM!ID=SECRET, 0600
//! # token_vault = { path = "secret/data/portcullis/proxmox", field = "token" }  # KV v2, instead
//! ca_file = "/etc/portcullis/pve-root-ca.pem"        # the cluster's CA (/etc/pve/pve-root-ca.pem)
//! # fingerprint = "80:D4:F2:...:69:F5"               # or pin a node certificate's SHA-256
//! interval = "5m"
//! default_services = { "*" = ["ssh"], "PROXMOX-MGMT" = [] }
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::values::{positive_duration, DurationValue};
use crate::config::ConfigError;

mod sessions;
pub(crate) use sessions::ProxmoxSessions;

/// A validated `[[catalog.proxmox]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxmoxCluster {
    /// `[a-z0-9][a-z0-9_-]*`, at most 32 characters; unique.
    pub name: String,
    /// `https://HOST[:PORT]` of one or more nodes (port 8006 unless given), tried in order.
    pub urls: Vec<url::Url>,
    pub token: TokenSource,
    pub trust: ServerTrust,
    /// Between syncs (default 5 minutes).
    pub interval: Duration,
    /// One request's limit (default 30 s; Proxmox delays a refused token by 3 s).
    pub timeout: Duration,
    /// Whether the nodes become `proxmox-api` targets (default true).
    pub node_targets: bool,
    /// Whether a guest without a configured address is asked through its QEMU agent or
    /// its container interfaces (default true). Such addresses are used only in zones with
    /// `guest_reported_addresses = true`.
    pub guest_agent: bool,
    /// Whether SDN VNets, subnets and IPAM are read (default true).
    pub sdn: bool,
    /// Appended to every discovered target name (e.g. `.lab`); default none.
    pub name_suffix: String,
    /// A guest tag `PREFIX<service>` naming a policy service gives the guest that service
    /// (default `""`: a tag named like a service, e.g. `ssh`).
    pub service_tag_prefix: String,
    /// Services of a guest whose tags name none: by its zone, else `"*"`
    /// (default `{"*" = ["ssh"]}`).
    pub default_services: BTreeMap<String, Vec<String>>,
    /// `[catalog.proxmox.sessions]`: per-session API tokens for its `proxmox-api` targets
    /// (issue 20); none: its API targets are plain tunnels.
    pub sessions: Option<ProxmoxSessions>,
}

/// Where the discovery token (`USER@REALM!TOKENID=SECRET`) comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A file of mode 0600 (a wider mode is refused).
    File(PathBuf),
    /// A Vault/OpenBao KV v2 secret read with the controller's own Vault token.
    Vault { path: String, field: String },
}

/// How the API's TLS certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerTrust {
    /// Issued by this CA (PEM), for the URL's host name or address.
    CaFile(PathBuf),
    /// The server certificate's SHA-256 (32 bytes), as `GET /nodes` reports `ssl_fingerprint`.
    Fingerprint([u8; 32]),
}

/// `[catalog]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCatalog {
    #[serde(default)]
    proxmox: Vec<RawProxmox>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProxmox {
    name: Option<String>,
    #[serde(default)]
    urls: Vec<String>,
    token_file: Option<PathBuf>,
    token_vault: Option<RawVaultSecret>,
    ca_file: Option<PathBuf>,
    fingerprint: Option<String>,
    interval: Option<DurationValue>,
    timeout: Option<DurationValue>,
    node_targets: Option<bool>,
    guest_agent: Option<bool>,
    sdn: Option<bool>,
    name_suffix: Option<String>,
    service_tag_prefix: Option<String>,
    default_services: Option<BTreeMap<String, Vec<String>>>,
    sessions: Option<sessions::RawSessions>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVaultSecret {
    path: String,
    #[serde(default = "token_field")]
    field: String,
}

fn token_field() -> String {
    "token".into()
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

impl RawCatalog {
    /// `vault_configured`: whether `[vault]` exists (a `token_vault` needs it).
    pub(crate) fn validate(
        self,
        vault_configured: bool,
    ) -> Result<Vec<ProxmoxCluster>, ConfigError> {
        let mut out: Vec<ProxmoxCluster> = Vec::new();
        for raw in self.proxmox {
            let cluster = raw.validate(vault_configured)?;
            if out.iter().any(|c| c.name == cluster.name) {
                return Err(invalid(
                    "catalog.proxmox.name",
                    format!(
                        "{:?} names two clusters; give each its own name",
                        cluster.name
                    ),
                ));
            }
            out.push(cluster);
        }
        Ok(out)
    }
}

impl RawProxmox {
    fn validate(self, vault_configured: bool) -> Result<ProxmoxCluster, ConfigError> {
        let name = self.name.ok_or_else(|| {
            invalid(
                "catalog.proxmox.name",
                "missing: a short name for the cluster, e.g. \"homelab\"",
            )
        })?;
        let name_ok = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(invalid(
                "catalog.proxmox.name",
                format!("{name:?}: 1-32 lower-case letters, digits, `-` or `_`, e.g. \"homelab\""),
            ));
        }
        if self.urls.is_empty() {
            return Err(invalid(
                "catalog.proxmox.urls",
                "missing: the API URL of one or more nodes, e.g. [\"https://10.20.0.11:8006\"]",
            ));
        }
        let mut urls = Vec::new();
        for text in &self.urls {
            let mut url = url::Url::parse(text)
                .ok()
                .filter(|u| u.scheme() == "https" && u.host().is_some())
                .ok_or_else(|| {
                    invalid(
                        "catalog.proxmox.urls",
                        format!("{text:?} is not an https://HOST[:PORT] URL (Proxmox serves its API over HTTPS on 8006)"),
                    )
                })?;
            if url.port().is_none() {
                let _ = url.set_port(Some(8006));
            }
            url.set_path("/");
            url.set_query(None);
            urls.push(url);
        }
        let token = match (self.token_file, self.token_vault) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "catalog.proxmox.token_file",
                    "set token_file or token_vault, not both",
                ))
            }
            (Some(path), None) => TokenSource::File(path),
            (None, Some(v)) => {
                if !vault_configured {
                    return Err(invalid(
                        "catalog.proxmox.token_vault",
                        "needs a [vault] section: the token is read with the controller's Vault token",
                    ));
                }
                let path_ok = !v.path.is_empty()
                    && v.path.split('/').all(crate::vault::valid_path)
                    && !v.field.is_empty();
                if !path_ok {
                    return Err(invalid(
                        "catalog.proxmox.token_vault",
                        format!("{:?} is not a KV v2 path such as \"secret/data/portcullis/proxmox\" with a field", v.path),
                    ));
                }
                TokenSource::Vault {
                    path: v.path,
                    field: v.field,
                }
            }
            (None, None) => {
                return Err(invalid(
                    "catalog.proxmox.token_file",
                    "missing: a file (mode 0600) holding the discovery token as USER@REALM!TOKENID=SECRET, or token_vault = { path = \"...\", field = \"token\" }",
                ))
            }
        };
        let sessions = self
            .sessions
            .map(|raw| raw.validate(&token, vault_configured))
            .transpose()?;
        let trust = match (self.ca_file, self.fingerprint) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "catalog.proxmox.ca_file",
                    "set ca_file or fingerprint, not both",
                ))
            }
            (Some(path), None) => ServerTrust::CaFile(path),
            (None, Some(text)) => ServerTrust::Fingerprint(parse_fingerprint(&text)?),
            (None, None) => {
                return Err(invalid(
                    "catalog.proxmox.ca_file",
                    "missing: the cluster's CA (a copy of /etc/pve/pve-root-ca.pem), or fingerprint = the SHA-256 `GET /nodes` reports as ssl_fingerprint; the API is never used unverified",
                ))
            }
        };
        let interval = positive_duration(
            &self.interval,
            "catalog.proxmox.interval",
            Duration::from_secs(300),
        )?;
        let timeout = positive_duration(
            &self.timeout,
            "catalog.proxmox.timeout",
            Duration::from_secs(30),
        )?;
        let name_suffix = self.name_suffix.unwrap_or_default();
        if name_suffix.len() > 32
            || !name_suffix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(invalid(
                "catalog.proxmox.name_suffix",
                "at most 32 letters, digits, `-`, `_` or `.`, e.g. \".lab\"",
            ));
        }
        let default_services = self
            .default_services
            .unwrap_or_else(|| BTreeMap::from([("*".to_owned(), vec!["ssh".to_owned()])]));
        Ok(ProxmoxCluster {
            name,
            urls,
            token,
            trust,
            interval,
            timeout,
            node_targets: self.node_targets.unwrap_or(true),
            guest_agent: self.guest_agent.unwrap_or(true),
            sdn: self.sdn.unwrap_or(true),
            name_suffix,
            service_tag_prefix: self.service_tag_prefix.unwrap_or_default(),
            default_services,
            sessions,
        })
    }
}

/// `80:D4:...:F5` (any case, colons optional): 32 bytes.
fn parse_fingerprint(text: &str) -> Result<[u8; 32], ConfigError> {
    let hex_digits: String = text.chars().filter(|c| *c != ':').collect();
    let mut out = [0u8; 32];
    hex::decode_to_slice(&hex_digits, &mut out).map_err(|_| {
        invalid(
            "catalog.proxmox.fingerprint",
            format!("{text:?} is not a SHA-256 fingerprint such as 80:D4:F2:...:69:F5 (32 bytes in hex)"),
        )
    })?;
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<ProxmoxCluster>, ConfigError> {
        let raw: RawCatalog = toml::from_str(text).unwrap();
        raw.validate(false)
    }

    #[test]
    fn a_cluster_with_defaults() {
        let c = parse(
            "[[proxmox]]\nname = \"lab\"\nurls = [\"https://10.20.0.11\"]\ntoken_file = \"/t\"\nca_file = \"/ca.pem\"\n",
        )
        .unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].urls[0].as_str(), "https://10.20.0.11:8006/");
        assert_eq!(c[0].interval, Duration::from_secs(300));
        assert_eq!(c[0].default_services["*"], vec!["ssh".to_owned()]);
        assert!(c[0].node_targets && c[0].guest_agent && c[0].sdn);
    }

    #[test]
    fn trust_and_token_are_required_and_exclusive() {
        let err =
            parse("[[proxmox]]\nname = \"lab\"\nurls = [\"https://h\"]\ntoken_file = \"/t\"\n")
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("ca_file") && err.contains("never used unverified"),
            "{err}"
        );
        let err = parse("[[proxmox]]\nname = \"lab\"\nurls = [\"http://h\"]\ntoken_file = \"/t\"\nca_file = \"/c\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("https://"), "{err}");
        let err = parse("[[proxmox]]\nname = \"lab\"\nurls = [\"https://h\"]\ntoken_vault = { path = \"secret/data/x\" }\nca_file = \"/c\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("[vault]"), "{err}");
        let c = parse("[[proxmox]]\nname = \"lab\"\nurls = [\"https://h\"]\ntoken_file = \"/t\"\nfingerprint = \"80:D4:F2:DF:64:95:CD:8D:A0:82:82:AC:48:BA:C0:7A:1B:6B:87:8B:FE:B9:83:1C:95:4E:79:58:77:99:69:F5\"\n").unwrap();
        assert!(matches!(c[0].trust, ServerTrust::Fingerprint(f) if f[0] == 0x80 && f[31] == 0xF5));
        let err = parse("[[proxmox]]\nname = \"lab\"\nurls = [\"https://h\"]\ntoken_file = \"/t\"\nfingerprint = \"80:D4\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("SHA-256"), "{err}");
    }

    #[test]
    fn names_are_checked_and_unique() {
        let one = "name = \"lab\"\nurls = [\"https://h\"]\ntoken_file = \"/t\"\nca_file = \"/c\"\n";
        let err = parse(&format!("[[proxmox]]\n{one}[[proxmox]]\n{one}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("two clusters"), "{err}");
        let err = parse("[[proxmox]]\nname = \"Lab X\"\nurls = [\"https://h\"]\ntoken_file = \"/t\"\nca_file = \"/c\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("lower-case"), "{err}");
    }
}
