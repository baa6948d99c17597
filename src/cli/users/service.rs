//! `portcullis users add-service|revoke-key`: service accounts over the API (needs
//! `users:admin` and a login that met MFA).

use std::io::Read as _;
use std::path::Path;

use anyhow::{bail, Context as _};
use portcullis_proto::text::escaped;
use portcullis_proto::users::{AddServiceAccount, ServiceAccountView, ServiceKeyRevoked};

use super::UsersCommand;
use crate::cli::http::{segment, ApiClient};
use crate::cli::output;

/// The largest public key file read: an Ed25519 line is about 100 bytes.
const MAX_PUBLIC_KEY_BYTES: u64 = 16 * 1024;

pub(super) async fn run(cmd: UsersCommand) -> anyhow::Result<i32> {
    match cmd {
        UsersCommand::AddService {
            name,
            groups,
            public_key,
            json,
            client,
        } => {
            let key = read_public_key(&public_key)?;
            let api = ApiClient::from_args(&client)?;
            let account: ServiceAccountView = api
                .post(
                    "/v1/users/services",
                    &AddServiceAccount {
                        name: name.clone(),
                        groups,
                        public_key: key,
                    },
                )
                .await
                .with_context(|| format!("cannot add the service account {name}"))?;
            if json {
                output::print_json(&account)?;
            } else {
                eprintln!(
                    "Added the service account {} (groups: {}; key {}). It logs in with \
                     `portcullis login --service-account {} --key PRIVATE_KEY_FILE`.",
                    escaped(&account.name),
                    escaped(&account.groups.join(", ")),
                    escaped(&account.key_fingerprint),
                    escaped(&account.name),
                );
            }
            Ok(0)
        }
        UsersCommand::RevokeKey { name, json, client } => {
            let api = ApiClient::from_args(&client)?;
            let path = format!("/v1/users/services/{}/revoke-key", segment(&name)?);
            let revoked: ServiceKeyRevoked = api
                .post(&path, &serde_json::json!({}))
                .await
                .with_context(|| format!("cannot revoke the key of the service account {name}"))?;
            if json {
                output::print_json(&revoked)?;
            } else {
                eprintln!(
                    "Revoked the key {} of the service account {}: it obtains no more tokens; {} \
                     token(s) it obtained revoked.",
                    escaped(&revoked.account.key_fingerprint),
                    escaped(&revoked.account.name),
                    revoked.revoked_token_ids.len()
                );
            }
            Ok(0)
        }
        _ => bail!("not a service-account command"),
    }
}

/// Reads the one-line OpenSSH public key from `path` (what `ssh-keygen` wrote as KEY.pub).
/// A private key passed by mistake is refused without sending it anywhere.
fn read_public_key(path: &Path) -> anyhow::Result<String> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open the public key {}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_PUBLIC_KEY_BYTES)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {} as text", path.display()))?;
    let text = text.trim();
    if text.contains("PRIVATE KEY") {
        bail!(
            "{} is a private key: pass the public half (KEY.pub, one line starting with \
             `ssh-ed25519`), and keep the private key in the CI system's secret store",
            path.display()
        );
    }
    if text.is_empty() || text.lines().count() != 1 {
        bail!(
            "{} is not a one-line OpenSSH public key (`ssh-ed25519 AAAA... comment`, the KEY.pub \
             `ssh-keygen -t ed25519 -N '' -f KEY` writes)",
            path.display()
        );
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

    use super::*;

    #[test]
    fn a_public_key_file_is_one_line_and_never_a_private_key() {
        let dir = tempfile::tempdir().unwrap();
        let public = dir.path().join("ci.pub");
        std::fs::write(&public, "ssh-ed25519 AAAAC3Nza ci\n").unwrap();
        assert_eq!(
            read_public_key(&public).unwrap(),
            "ssh-ed25519 AAAAC3Nza ci"
        );
        let private = dir.path().join("ci");
        std::fs::write(
            &private,
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = read_public_key(&private).unwrap_err().to_string();
        assert!(err.contains("is a private key"), "{err}");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        assert!(read_public_key(&empty).is_err());
    }
}
