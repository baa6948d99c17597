#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use portcullis_proto::api::{LeasedSecret, SessionSecrets};
use serde_json::json;

use super::*;

fn values(data: &[serde_json::Value]) -> SecretValues {
    SecretValues::from_wire(SessionSecrets {
        session_id: "s_1".into(),
        secrets: data
            .iter()
            .enumerate()
            .map(|(n, d)| LeasedSecret {
                path: format!("database/creds/r{n}"),
                lease_id: format!("lease-{n}"),
                lease_duration_secs: 60,
                data: d.clone(),
            })
            .collect(),
    })
}

fn expand(text: &str, secrets: &SecretValues) -> Result<String, TemplateError> {
    let at = Context {
        host: "127.0.0.1",
        port: 40022,
        secrets,
    };
    Template::parse(text)?
        .expand(&at)
        .map(|v| v.as_str().to_owned())
}

#[test]
fn listener_placeholders_new_and_old_are_expanded() {
    let none = SecretValues::default();
    assert_eq!(
        expand("postgres://{{addr}}/db", &none).unwrap(),
        "postgres://127.0.0.1:40022/db"
    );
    assert_eq!(
        expand("{{ host }}:{{port}} {host}:{port}", &none).unwrap(),
        "127.0.0.1:40022 127.0.0.1:40022"
    );
    assert_eq!(
        expand("plain {hostname}", &none).unwrap(),
        "plain {hostname}"
    );
    // Double braces that are not a name are text (Go templates and the like).
    assert_eq!(
        expand("--format={{.Names}} {{ json . }}", &none).unwrap(),
        "--format={{.Names}} {{ json . }}"
    );
    assert!(!Template::parse("{{port}}").unwrap().uses_secrets());
}

#[test]
fn unknown_or_unclosed_placeholders_are_errors() {
    let none = SecretValues::default();
    assert_eq!(
        expand("{{adr}}", &none).unwrap_err(),
        TemplateError::Unknown("adr".into())
    );
    assert!(matches!(
        expand("{{secret.}}", &none),
        Err(TemplateError::Unknown(_))
    ));
    assert!(matches!(
        expand("a {{port", &none),
        Err(TemplateError::Unclosed(_))
    ));
    let message = expand("{{adr}}", &none).unwrap_err().to_string();
    assert!(
        message.contains("{{adr}}") && message.contains("{{addr}}"),
        "{message}"
    );
}

#[test]
fn secret_fields_are_found_by_name_or_by_number() {
    let one = values(&[json!({"username": "v-tok-ro-1", "password": "p1", "ttl": 60})]);
    let t = Template::parse("{{secret.username}}:{{secret.password}}").unwrap();
    assert!(t.uses_secrets());
    assert_eq!(
        expand("{{secret.username}}:{{secret.password}}", &one).unwrap(),
        "v-tok-ro-1:p1"
    );
    assert_eq!(expand("{{secret.0.password}}", &one).unwrap(), "p1");
    // Non-string values as their JSON.
    assert_eq!(expand("{{secret.ttl}}", &one).unwrap(), "60");
    let missing = expand("{{secret.token}}", &one).unwrap_err();
    assert!(matches!(missing, TemplateError::NoField { .. }));
    assert!(missing.to_string().contains("username"), "{missing}");
    assert!(matches!(
        expand("{{secret.1.password}}", &one),
        Err(TemplateError::NoIndex { index: 1, count: 1 })
    ));
    // Two secrets with the same field: ambiguous unless numbered.
    let two = values(&[
        json!({"username": "a", "password": "pa"}),
        json!({"username": "b", "password": "pb", "extra": "x"}),
    ]);
    assert!(matches!(
        expand("{{secret.password}}", &two),
        Err(TemplateError::Ambiguous { count: 2, .. })
    ));
    assert_eq!(expand("{{secret.1.password}}", &two).unwrap(), "pb");
    assert_eq!(expand("{{secret.extra}}", &two).unwrap(), "x");
    // No secrets at all.
    assert!(matches!(
        expand("{{secret.password}}", &SecretValues::default()),
        Err(TemplateError::NoSecrets(_))
    ));
    // Debug names fields, never values.
    let shown = format!("{two:?}");
    assert!(
        shown.contains("password") && !shown.contains("pb"),
        "{shown}"
    );
}

#[test]
fn env_options_need_a_name_and_a_valid_template() {
    let env = parse_env("PGPASSWORD={{secret.password}}").unwrap();
    assert_eq!(env.name, "PGPASSWORD");
    assert!(env.value.uses_secrets());
    assert_eq!(
        parse_env("EMPTY=").unwrap().value,
        Template::parse("").unwrap()
    );
    assert!(parse_env("NOEQUALS").is_err());
    assert!(parse_env("1BAD=x").is_err());
    assert!(parse_env("BAD-NAME=x").is_err());
    assert!(parse_env("X={{nope}}")
        .unwrap_err()
        .contains("unknown placeholder"));
}
