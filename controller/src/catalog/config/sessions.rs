//! `[catalog.proxmox.sessions]`: a cluster whose `proxmox-api` targets get a Proxmox API
//! token minted per session (docs/proxmox.md, "Per-session API tokens").
//!
//! ```toml
//! [catalog.proxmox.sessions]
//! realm = "pve"                                        # the sessions' users live here; never pam
//! token_file = "/etc/portcullis/pve-sessions.token"    # the token-management token, 0600
//! # token_vault = { path = "secret/data/portcullis/pve-sessions", field = "token" }
//! paths = ["/vms", "/pool/terraform"]                  # where sessions' tokens may get roles
//! mint_timeout = "30s"                                 # an intent older than this is abandoned
//! ```
//!
//! The management credential is a token of its own (a user with `User.Modify` on the group of
//! the sessions' users and `Permissions.Modify` on the paths), never the discovery token: the discovery token
//! only reads, and a leak of it must not let anyone mint tokens.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{invalid, RawVaultSecret, TokenSource};
use crate::config::values::{positive_duration, DurationValue};
use crate::config::ConfigError;

/// A validated `[catalog.proxmox.sessions]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxmoxSessions {
    /// The realm of every session's Proxmox user (`USER@REALM`); never `pam`.
    pub realm: String,
    /// The token-management credential (`USER@REALM!TOKENID=SECRET`).
    pub token: TokenSource,
    /// Normalised ACL paths (`/vms`, `/pool/terraform`): a policy path must be one of them
    /// or below one.
    pub paths: Vec<String>,
    /// How long a token's intent may wait for Proxmox before the job ends its session and
    /// deletes whatever was made (default 30 s).
    pub mint_timeout: Duration,
}

impl ProxmoxSessions {
    /// Whether ACL path `path` (normalised) is one of the configured paths or below one.
    pub fn covers(&self, path: &str) -> bool {
        self.paths.iter().any(|allowed| within(path, allowed))
    }
}

/// Whether `path` is `allowed` or below it, segment by segment (`/vms/100` is within `/vms`,
/// `/vmsX` is not; everything is within `/`).
pub(crate) fn within(path: &str, allowed: &str) -> bool {
    let allowed = allowed.trim_end_matches('/');
    if allowed.is_empty() {
        return path.starts_with('/');
    }
    path == allowed
        || path
            .strip_prefix(allowed)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSessions {
    realm: Option<String>,
    token_file: Option<PathBuf>,
    token_vault: Option<RawVaultSecret>,
    #[serde(default)]
    paths: Vec<String>,
    mint_timeout: Option<DurationValue>,
}

const REALM: &str = "catalog.proxmox.sessions.realm";
const TOKEN_FILE: &str = "catalog.proxmox.sessions.token_file";
const TOKEN_VAULT: &str = "catalog.proxmox.sessions.token_vault";
const PATHS: &str = "catalog.proxmox.sessions.paths";

impl RawSessions {
    /// `discovery`: the cluster's discovery token source, which the management token must
    /// not be.
    pub(super) fn validate(
        self,
        discovery: &TokenSource,
        vault_configured: bool,
    ) -> Result<ProxmoxSessions, ConfigError> {
        let realm = self.realm.ok_or_else(|| {
            invalid(
                REALM,
                "missing: the Proxmox realm the sessions' users live in, e.g. \"pve\"",
            )
        })?;
        if realm == "pam" {
            return Err(invalid(
                REALM,
                "\"pam\" is refused: its users are the nodes' Linux accounts (root among them), \
                 and no session may mint a token for one; use a Proxmox VE realm such as \"pve\"",
            ));
        }
        let realm_ok = !realm.is_empty()
            && realm.len() <= 32
            && realm
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic())
            && realm
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !realm_ok {
            return Err(invalid(
                REALM,
                format!("{realm:?} is not a Proxmox realm id (a letter, then letters, digits, `-`, `_` or `.`; e.g. \"pve\")"),
            ));
        }
        let token = match (self.token_file, self.token_vault) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    TOKEN_FILE,
                    "set token_file or token_vault, not both",
                ))
            }
            (Some(path), None) => TokenSource::File(path),
            (None, Some(v)) => {
                if !vault_configured {
                    return Err(invalid(
                        TOKEN_VAULT,
                        "needs a [vault] section: the token is read with the controller's Vault token",
                    ));
                }
                let path_ok = !v.path.is_empty()
                    && v.path.split('/').all(crate::vault::valid_path)
                    && !v.field.is_empty();
                if !path_ok {
                    return Err(invalid(
                        TOKEN_VAULT,
                        format!("{:?} is not a KV v2 path such as \"secret/data/portcullis/pve-sessions\" with a field", v.path),
                    ));
                }
                TokenSource::Vault {
                    path: v.path,
                    field: v.field,
                }
            }
            (None, None) => {
                return Err(invalid(
                    TOKEN_FILE,
                    "missing: a file (mode 0600) holding the token-management token as \
                     USER@REALM!TOKENID=SECRET (docs/proxmox.md shows the pveum commands), or \
                     token_vault = { path = \"...\", field = \"token\" }",
                ))
            }
        };
        if same_source(&token, discovery) {
            let key = match token {
                TokenSource::File(_) => TOKEN_FILE,
                TokenSource::Vault { .. } => TOKEN_VAULT,
            };
            return Err(invalid(
                key,
                "is the discovery token: token management needs a token of its own (User.Modify \
                 on the sessions' users' group, Permissions.Modify on the paths), so that the \
                 read-only discovery token can never mint tokens",
            ));
        }
        if self.paths.is_empty() {
            return Err(invalid(
                PATHS,
                "missing: the ACL paths sessions' tokens may be granted roles on, e.g. [\"/vms\", \"/pool/terraform\"]",
            ));
        }
        let mut paths = Vec::new();
        for path in &self.paths {
            let normal = normalise(path).map_err(|why| invalid(PATHS, why))?;
            if !paths.contains(&normal) {
                paths.push(normal);
            }
        }
        let mint_timeout = positive_duration(
            &self.mint_timeout,
            "catalog.proxmox.sessions.mint_timeout",
            Duration::from_secs(30),
        )?;
        Ok(ProxmoxSessions {
            realm,
            token,
            paths,
            mint_timeout,
        })
    }
}

fn same_source(a: &TokenSource, b: &TokenSource) -> bool {
    match (a, b) {
        (TokenSource::File(a), TokenSource::File(b)) => {
            a == b
                || matches!((std::fs::canonicalize(a), std::fs::canonicalize(b)), (Ok(a), Ok(b)) if a == b)
        }
        (
            TokenSource::Vault { path, field },
            TokenSource::Vault {
                path: other_path,
                field: other_field,
            },
        ) => path.trim_matches('/') == other_path.trim_matches('/') && field == other_field,
        _ => false,
    }
}

/// An ACL path as Proxmox keeps it (repeated `/` collapsed, no trailing `/`); `/access` and
/// below are refused: roles there govern users and tokens.
pub(crate) fn normalise(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!(
            "{path:?} is not an ACL path: it must start with `/` (e.g. \"/vms\")"
        ));
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segments.iter().any(|s| *s == "." || *s == "..") {
        return Err(format!(
            "{path:?} has a `.` or `..` segment; write the path itself"
        ));
    }
    if segments.iter().any(|s| {
        !s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    }) {
        return Err(format!(
            "{path:?} is not an ACL path (letters, digits, `-`, `_`, `.` or `:` between `/`)"
        ));
    }
    if segments.first() == Some(&"access") {
        return Err(format!(
            "{path:?} is under /access (users, groups, realms, tokens, ACLs): sessions' tokens \
             are never granted roles there"
        ));
    }
    Ok(format!("/{}", segments.join("/")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::{ProxmoxCluster, RawCatalog};
    use super::*;

    const CLUSTER: &str =
        "[[proxmox]]\nname = \"lab\"\nurls = [\"https://h\"]\ntoken_file = \"/etc/d.token\"\nca_file = \"/c\"\n";

    fn parse(sessions: &str, vault: bool) -> Result<Vec<ProxmoxCluster>, ConfigError> {
        let text = format!("{CLUSTER}[proxmox.sessions]\n{sessions}");
        let raw: RawCatalog = toml::from_str(&text).unwrap();
        raw.validate(vault)
    }

    fn refusal(sessions: &str) -> String {
        parse(sessions, false).unwrap_err().to_string()
    }

    #[test]
    fn a_sessions_table_with_defaults() {
        let c = parse(
            "realm = \"pve\"\ntoken_file = \"/etc/s.token\"\npaths = [\"/vms\", \"//pool/tf/\", \"/vms\"]\n",
            false,
        )
        .unwrap();
        let s = c[0].sessions.as_ref().unwrap();
        assert_eq!(s.realm, "pve");
        assert_eq!(s.token, TokenSource::File("/etc/s.token".into()));
        assert_eq!(s.paths, vec!["/vms".to_owned(), "/pool/tf".to_owned()]);
        assert_eq!(s.mint_timeout, Duration::from_secs(30));
        let none = parse("", false);
        assert!(none.is_err(), "an empty table misses the realm");
    }

    #[test]
    fn a_cluster_without_the_table_mints_nothing() {
        let raw: RawCatalog = toml::from_str(CLUSTER).unwrap();
        assert!(raw.validate(false).unwrap()[0].sessions.is_none());
    }

    #[test]
    fn the_realm_is_required_and_pam_refused() {
        let err = refusal("token_file = \"/s\"\npaths = [\"/vms\"]\n");
        assert!(
            err.contains("sessions.realm") && err.contains("missing"),
            "{err}"
        );
        let err = refusal("realm = \"pam\"\ntoken_file = \"/s\"\npaths = [\"/vms\"]\n");
        assert!(
            err.contains("\"pam\" is refused") && err.contains("root"),
            "{err}"
        );
        let err = refusal("realm = \"p v\"\ntoken_file = \"/s\"\npaths = [\"/vms\"]\n");
        assert!(err.contains("not a Proxmox realm"), "{err}");
    }

    #[test]
    fn the_management_token_is_required_exclusive_and_not_the_discovery_token() {
        let err = refusal("realm = \"pve\"\npaths = [\"/vms\"]\n");
        assert!(
            err.contains("sessions.token_file") && err.contains("missing"),
            "{err}"
        );
        let err = refusal(
            "realm = \"pve\"\ntoken_file = \"/s\"\ntoken_vault = { path = \"secret/data/x\" }\npaths = [\"/vms\"]\n",
        );
        assert!(err.contains("not both"), "{err}");
        let err = refusal("realm = \"pve\"\ntoken_file = \"/etc/d.token\"\npaths = [\"/vms\"]\n");
        assert!(err.contains("is the discovery token"), "{err}");
        let err = refusal(
            "realm = \"pve\"\ntoken_vault = { path = \"secret/data/x\" }\npaths = [\"/vms\"]\n",
        );
        assert!(err.contains("[vault]"), "{err}");
    }

    #[test]
    fn a_vault_management_token_differs_from_a_vault_discovery_token() {
        let discovery = TokenSource::Vault {
            path: "secret/data/pve".into(),
            field: "token".into(),
        };
        let raw: RawSessions = toml::from_str(
            "realm = \"pve\"\ntoken_vault = { path = \"secret/data/pve\" }\npaths = [\"/\"]\n",
        )
        .unwrap();
        let err = raw.validate(&discovery, true).unwrap_err().to_string();
        assert!(
            err.contains("sessions.token_vault") && err.contains("discovery"),
            "{err}"
        );
        let raw: RawSessions = toml::from_str(
            "realm = \"pve\"\ntoken_vault = { path = \"secret/data/pve\", field = \"mgmt\" }\npaths = [\"/\"]\n",
        )
        .unwrap();
        assert!(raw.validate(&discovery, true).is_ok());
    }

    #[test]
    fn paths_are_required_normalised_and_never_under_access() {
        let err = refusal("realm = \"pve\"\ntoken_file = \"/s\"\n");
        assert!(
            err.contains("sessions.paths") && err.contains("missing"),
            "{err}"
        );
        for (bad, says) in [
            ("vms", "must start with"),
            ("/access/users", "under /access"),
            ("/vms/../access", "`..`"),
            ("/vms/1 0", "not an ACL path"),
        ] {
            let err = refusal(&format!(
                "realm = \"pve\"\ntoken_file = \"/s\"\npaths = [\"{bad}\"]\n"
            ));
            assert!(
                err.contains("sessions.paths") && err.contains(says),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn unknown_keys_and_a_zero_timeout_are_refused() {
        let text = format!("{CLUSTER}[proxmox.sessions]\nrealm = \"pve\"\nttl = 1\n");
        let err = toml::from_str::<RawCatalog>(&text).unwrap_err().to_string();
        assert!(err.contains("ttl"), "{err}");
        let err = refusal(
            "realm = \"pve\"\ntoken_file = \"/s\"\npaths = [\"/\"]\nmint_timeout = \"0s\"\n",
        );
        assert!(err.contains("mint_timeout"), "{err}");
    }

    /// config/controller.toml's commented `[[catalog.proxmox]]` example, sessions table and
    /// all, is a valid configuration.
    #[test]
    fn the_commented_example_is_valid() {
        let text = include_str!("../../../../config/controller.toml");
        let mut example = String::new();
        let mut inside = false;
        for line in text.lines() {
            if line == "# [[catalog.proxmox]]" {
                inside = true;
            }
            if inside && line.is_empty() {
                break;
            }
            match line.strip_prefix("# ") {
                Some(rest) if inside && !rest.starts_with('#') => {
                    example.push_str(rest);
                    example.push('\n');
                }
                _ => {}
            }
        }
        let example = example
            .replace("[[catalog.proxmox]]", "[[proxmox]]")
            .replace("[catalog.proxmox.sessions]", "[proxmox.sessions]");
        let raw: RawCatalog = toml::from_str(&example).unwrap();
        let clusters = raw.validate(false).unwrap();
        let sessions = clusters[0].sessions.as_ref().unwrap();
        assert_eq!(sessions.realm, "pve");
        assert_eq!(sessions.paths, ["/vms", "/pool/terraform"]);
    }

    #[test]
    fn paths_cover_themselves_and_what_is_below() {
        let s = parse(
            "realm = \"pve\"\ntoken_file = \"/s\"\npaths = [\"/vms\", \"/pool/tf\"]\n",
            false,
        )
        .unwrap()[0]
            .sessions
            .clone()
            .unwrap();
        assert!(s.covers("/vms") && s.covers("/vms/100") && s.covers("/pool/tf"));
        assert!(
            !s.covers("/vmsx")
                && !s.covers("/")
                && !s.covers("/pool")
                && !s.covers("/storage/local")
        );
        assert!(within("/storage/local", "/"));
    }
}
