//! The discovery token, `USER@REALM!TOKENID=SECRET`: read from a 0600 file or from Vault's
//! KV v2, and its shape checked before any request carries it. No message here ever shows
//! the token or any part of it.

use std::os::unix::fs::PermissionsExt as _;

use zeroize::Zeroizing;

use super::{ProxmoxError, TokenUse};
use crate::catalog::config::TokenSource;
use crate::secret::{ExposeSecret as _, SecretString};

/// The shape, as every message that refuses a token shows it.
pub(crate) const SHAPE: &str =
    "USER@REALM!TOKENID=SECRET (e.g. portcullis@pve!discovery=xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, as `pveum user token add` prints it)";

/// Whether `token` has the shape Proxmox accepts after `PVEAPIToken=`: a user with a realm,
/// `!`, a token id, `=`, a secret; nothing a header could not carry.
pub(crate) fn well_formed(token: &str) -> bool {
    let Some((id, secret)) = token.rsplit_once('=') else {
        return false;
    };
    let Some((user_realm, token_id)) = id.rsplit_once('!') else {
        return false;
    };
    let Some((user, realm)) = user_realm.rsplit_once('@') else {
        return false;
    };
    let word = |s: &str, extra: &[u8]| {
        !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
    };
    word(user, b"-_.@+") && word(realm, b"-_.") && word(token_id, b"-_.") && word(secret, b"-")
}

fn check(
    token: Zeroizing<String>,
    whence: &str,
    usage: TokenUse,
) -> Result<SecretString, ProxmoxError> {
    let what = usage.what();
    let trimmed = token.trim();
    if trimmed.is_empty() {
        return Err(ProxmoxError::Token(format!(
            "{whence} is empty: it must hold {what} as {SHAPE}"
        )));
    }
    if !well_formed(trimmed) {
        return Err(ProxmoxError::Token(format!(
            "{whence} does not hold a Proxmox API token: expected {SHAPE}"
        )));
    }
    Ok(SecretString::from(trimmed.to_owned()))
}

/// Reads and checks the discovery token.
pub(crate) async fn load(
    source: &TokenSource,
    vault: Option<&crate::vault::Vault>,
) -> Result<SecretString, ProxmoxError> {
    load_for(source, vault, TokenUse::Discovery).await
}

/// Reads and checks the token of `usage`.
pub(crate) async fn load_for(
    source: &TokenSource,
    vault: Option<&crate::vault::Vault>,
    usage: TokenUse,
) -> Result<SecretString, ProxmoxError> {
    let what = usage.what();
    match source {
        TokenSource::File(path) => {
            let shown = path.display();
            let meta = tokio::fs::metadata(path).await.map_err(|e| {
                ProxmoxError::Token(format!(
                    "cannot read {what} file {shown}: {e}; create it (mode 0600) holding {SHAPE}"
                ))
            })?;
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(ProxmoxError::Token(format!(
                    "{what} file {shown} has mode {:04o}: others may read it; chmod 600 it",
                    mode & 0o7777
                )));
            }
            let bytes = Zeroizing::new(tokio::fs::read(path).await.map_err(|e| {
                ProxmoxError::Token(format!("cannot read {what} file {shown}: {e}"))
            })?);
            let text = Zeroizing::new(String::from_utf8(bytes.to_vec()).map_err(|_| {
                ProxmoxError::Token(format!("{what} file {shown} is not text: expected {SHAPE}"))
            })?);
            check(text, &format!("{what} file {shown}"), usage)
        }
        TokenSource::Vault { path, field } => {
            let vault = vault.ok_or_else(|| {
                ProxmoxError::Token(format!(
                    "{what} is in Vault ({path}) but the controller has no Vault connection: configure [vault]"
                ))
            })?;
            let secret = vault.read_kv_field(path, field).await.map_err(|e| {
                ProxmoxError::Token(format!(
                    "cannot read {what} from Vault ({path}, field {field:?}): {e}"
                ))
            })?;
            let text = Zeroizing::new(secret.expose_secret().to_owned());
            check(text, &format!("Vault's {path} field {field:?}"), usage)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    const GOOD: &str = "portcullis@pve!discovery=0d3a5c1e-8f9b-4c2d-a1e0-123456789abc";

    #[test]
    fn the_token_shape() {
        assert!(well_formed(GOOD));
        assert!(well_formed("root@pam!ci-2.x=abc"));
        for bad in [
            "",
            "0d3a5c1e-8f9b-4c2d-a1e0-123456789abc",
            "portcullis@pve!discovery",
            "portcullis@pve=secret",
            "portcullis!discovery=secret",
            "portcullis@pve!discovery=",
            "@pve!discovery=secret",
            "portcullis@pve!=secret",
            "portcullis@pve!discovery=sec ret",
            "portcullis@pve!discovery=sec\r\nX-Evil: 1",
        ] {
            assert!(!well_formed(bad), "{bad:?}");
        }
    }

    async fn from_file(text: &str, mode: u32) -> Result<SecretString, ProxmoxError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        load(&TokenSource::File(path), None).await
    }

    #[tokio::test]
    async fn a_0600_file_is_read_and_trimmed() {
        let token = from_file(&format!("  {GOOD}\n"), 0o600).await.unwrap();
        assert_eq!(token.expose_secret(), GOOD);
        assert!(!format!("{token:?}").contains("0d3a5c1e"));
    }

    #[tokio::test]
    async fn a_wide_mode_a_missing_or_empty_file_and_a_bad_shape_are_refused() {
        let err = from_file(GOOD, 0o644).await.unwrap_err().to_string();
        assert!(err.contains("chmod 600") && err.contains("0644"), "{err}");
        assert!(!err.contains("0d3a5c1e"), "{err}");
        let err = from_file("\n  \n", 0o600).await.unwrap_err().to_string();
        assert!(err.contains("is empty"), "{err}");
        let err = from_file("just-a-secret-9f2c", 0o600)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("USER@REALM!TOKENID=SECRET"), "{err}");
        assert!(!err.contains("9f2c"), "the secret is never shown: {err}");
        let err = load(&TokenSource::File("/nonexistent/token".into()), None)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read") && err.contains("0600"), "{err}");
        let err = load(
            &TokenSource::Vault {
                path: "secret/data/x".into(),
                field: "token".into(),
            },
            None,
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("[vault]"), "{err}");
    }

    /// A Vault stand-in on loopback HTTP: the controller's token lookup and one KV v2
    /// secret (`secret/data/portcullis/proxmox`); it checks the controller's Vault token.
    async fn fake_vault(secret: serde_json::Value) -> (String, tokio::task::JoinHandle<()>) {
        use axum::http::{HeaderMap, StatusCode};
        use axum::routing::get;
        use serde_json::json;
        fn envelope(data: serde_json::Value) -> serde_json::Value {
            json!({"request_id": "r", "lease_id": "", "lease_duration": 0, "renewable": false,
                   "data": data, "warnings": null, "wrap_info": null, "auth": null})
        }
        let authorised = |headers: &HeaderMap| {
            headers.get("x-vault-token").and_then(|v| v.to_str().ok()) == Some("controller-token")
        };
        let app = axum::Router::new()
            .route(
                "/v1/auth/token/lookup-self",
                get(move |headers: HeaderMap| async move {
                    if !authorised(&headers) {
                        return (
                            StatusCode::FORBIDDEN,
                            axum::Json(json!({"errors": ["permission denied"]})),
                        );
                    }
                    (
                        StatusCode::OK,
                        axum::Json(envelope(json!({
                        "accessor": "a", "creation_time": 0, "creation_ttl": 0, "display_name": "t",
                        "entity_id": "", "expire_time": null, "explicit_max_ttl": 0, "id": "i",
                        "identity_policies": null, "issue_time": null, "meta": null, "num_uses": 0,
                        "orphan": true, "path": "auth/token/create", "policies": ["root"],
                        "renewable": false, "role": null, "ttl": 0}))),
                    )
                }),
            )
            .route(
                "/v1/secret/data/portcullis/proxmox",
                get(move |headers: HeaderMap| async move {
                    if !authorised(&headers) {
                        return (
                            StatusCode::FORBIDDEN,
                            axum::Json(json!({"errors": ["permission denied"]})),
                        );
                    }
                    (
                        StatusCode::OK,
                        axum::Json(envelope(
                            json!({"data": secret, "metadata": {"version": 1}}),
                        )),
                    )
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (address, task)
    }

    async fn from_vault(
        secret: serde_json::Value,
        field: &str,
    ) -> Result<SecretString, ProxmoxError> {
        let _ = portcullis_crypto::tls::install_process_default();
        let (address, _task) = fake_vault(secret).await;
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("vault-token");
        std::fs::write(&token_file, "controller-token\n").unwrap();
        let config = crate::vault::config::VaultConfig {
            address,
            ca_file: None,
            auth: crate::vault::config::VaultAuth::TokenFile(token_file),
            ssh_mount: "ssh".into(),
            ssh_role: None,
            token_role: "portcullis".into(),
            request_timeout: std::time::Duration::from_secs(5),
            revoke_retry_max: std::time::Duration::from_secs(60),
            mint_timeout: std::time::Duration::from_secs(60),
            job_interval: std::time::Duration::from_secs(60),
        };
        let (vault, _) = crate::vault::Vault::connect(config).await.unwrap();
        let source = TokenSource::Vault {
            path: "secret/data/portcullis/proxmox".into(),
            field: field.into(),
        };
        load(&source, Some(&vault)).await
    }

    #[tokio::test]
    async fn the_token_is_a_field_of_a_kv_v2_secret() {
        let token = from_vault(serde_json::json!({"token": format!("{GOOD}\n")}), "token")
            .await
            .unwrap();
        assert_eq!(token.expose_secret(), GOOD);
        let err = from_vault(serde_json::json!({"token": GOOD}), "other")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("no string field \"other\""), "{err}");
        let err = from_vault(serde_json::json!({"token": "hunter2-secret"}), "token")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("USER@REALM!TOKENID=SECRET") && !err.contains("hunter2"),
            "{err}"
        );
    }
}
