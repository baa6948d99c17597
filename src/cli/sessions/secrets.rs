//! `portcullis sessions secrets ID`: the leased secrets of one of your own live sessions
//! (docs/secrets.md). The controller serves them only to the session's own user and audits
//! every read (`session_secrets_read`); nothing here writes them anywhere but stdout.

use std::io::IsTerminal as _;

use anyhow::Context as _;
use portcullis_proto::api::SessionSecrets;
use zeroize::Zeroizing;

use crate::cli::http::{segment, ApiClient};
use crate::cli::output;

/// `GET /v1/sessions/{id}/secrets`.
pub(crate) async fn fetch(api: &ApiClient, id: &str) -> anyhow::Result<SessionSecrets> {
    api.get(&format!("/v1/sessions/{}/secrets", segment(id)?))
        .await
        .with_context(|| format!("cannot read the leased secrets of session {id}"))
}

/// Prints the secrets: JSON as the API answered, or one block per secret with a line per
/// field (values with control characters escaped; `--json` gives them exactly).
pub(crate) async fn show(api: &ApiClient, id: &str, json: bool) -> anyhow::Result<()> {
    let secrets = fetch(api, id).await?;
    if json {
        let text = Zeroizing::new(serde_json::to_string_pretty(&secrets)?);
        return output::write_stdout(&format!("{}\n", text.as_str()));
    }
    if std::io::stdout().is_terminal() {
        eprintln!(
            "Leased secrets of session {}: valid until the session ends, when Vault revokes \
             them. This read is in the audit log.",
            secrets.session_id
        );
    }
    let text = Zeroizing::new(render(&secrets));
    output::write_stdout(&text)
}

/// The text form: `PATH (lease LEASE, N s)` and `  FIELD  VALUE` lines, fields sorted.
fn render(secrets: &SessionSecrets) -> String {
    use portcullis_proto::text::escaped;
    let mut out = String::new();
    for secret in &secrets.secrets {
        let lease = if secret.lease_id.is_empty() {
            "no lease".to_owned()
        } else {
            format!(
                "lease {}, {}",
                escaped(&secret.lease_id),
                output::duration(secret.lease_duration_secs)
            )
        };
        out.push_str(&format!("{} ({lease})\n", escaped(&secret.path)));
        let Some(fields) = secret.data.as_object() else {
            continue;
        };
        let width = fields.keys().map(String::len).max().unwrap_or(0);
        for (name, value) in fields {
            let value = match value {
                serde_json::Value::String(s) => escaped(s).to_string(),
                other => other.to_string(),
            };
            out.push_str(&format!(
                "  {:width$}  {value}\n",
                escaped(name).to_string()
            ));
        }
    }
    if secrets.secrets.is_empty() {
        out.push_str("No leased secrets.\n");
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use portcullis_proto::api::LeasedSecret;
    use serde_json::json;

    use super::*;

    #[test]
    fn each_secret_is_a_block_of_its_fields() {
        let secrets = SessionSecrets {
            session_id: "s_1".into(),
            secrets: vec![LeasedSecret {
                path: "database/creds/readonly".into(),
                lease_id: "database/creds/readonly/abc".into(),
                lease_duration_secs: 3600,
                data: json!({"username": "v-tok-ro", "password": "p\u{1b}[2J", "ttl": 5}),
            }],
        };
        let text = render(&secrets);
        assert!(
            text.starts_with("database/creds/readonly (lease database/creds/readonly/abc, "),
            "{text}"
        );
        assert!(text.contains("\n  username  v-tok-ro\n"), "{text}");
        assert!(text.contains("\n  ttl       5\n"), "{text}");
        assert!(
            !text.contains('\u{1b}'),
            "control characters escaped: {text}"
        );
    }
}
