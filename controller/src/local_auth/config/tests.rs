use super::*;

fn parse(text: &str) -> Result<LocalAuthConfig, String> {
    let raw: RawLocal = toml::from_str(text).map_err(|e| e.to_string())?;
    raw.validate().map_err(|e| e.to_string())
}

#[test]
fn an_empty_section_is_on_with_safe_defaults() {
    let config = parse("").unwrap();
    assert_eq!(config, LocalAuthConfig::default());
    assert_eq!(
        config,
        LocalAuthConfig {
            enabled: true,
            allowed_groups: BTreeSet::new(),
            allow_password_only: false,
            min_password_length: 12,
            argon2: Argon2Params {
                m_cost_kib: 19_456,
                t_cost: 2,
                p_cost: 1
            },
            backoff: BackoffParams::default(),
            bootstrap_lifetime: Duration::from_secs(24 * 3600),
            service_token_lifetime: Duration::from_secs(3600),
        }
    );
}

#[test]
fn a_service_token_lives_at_most_a_day() {
    let err = parse("service_token_lifetime = \"25h\"").unwrap_err();
    assert!(err.contains("auth.local.service_token_lifetime"), "{err}");
    let config = parse("service_token_lifetime = \"15m\"").unwrap();
    assert_eq!(config.service_token_lifetime, Duration::from_secs(900));
}

#[test]
fn every_key_is_read() {
    let config = parse(
        r#"
        enabled = true
        allowed_groups = ["ops", "admins"]
        allow_password_only = true
        min_password_length = 16
        bootstrap_lifetime = "2h"
        [argon2]
        m_cost_kib = 12288
        t_cost = 3
        p_cost = 2
        [backoff]
        window = "30m"
        user_free_failures = 5
        network_free_failures = 50
        base_delay = "2s"
        max_delay = "10m"
        "#,
    )
    .unwrap();
    assert!(config.enabled && config.allow_password_only);
    assert_eq!(
        config.allowed_groups.into_iter().collect::<Vec<_>>(),
        ["admins", "ops"]
    );
    assert_eq!(config.min_password_length, 16);
    assert_eq!(config.bootstrap_lifetime, Duration::from_secs(7200));
    assert_eq!(
        config.argon2,
        Argon2Params {
            m_cost_kib: 12_288,
            t_cost: 3,
            p_cost: 2
        }
    );
    assert_eq!(
        config.backoff,
        BackoffParams {
            window: Duration::from_secs(1800),
            user_free_failures: 5,
            network_free_failures: 50,
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(600),
        }
    );
}

#[test]
fn unknown_keys_are_refused_by_name() {
    for (text, key) in [
        ("enable = true", "enable"),
        ("[argon2]\nmemory = 1", "memory"),
        ("[backoff]\nlockout = true", "lockout"),
    ] {
        let err = parse(text).unwrap_err();
        assert!(err.contains(&format!("unknown field `{key}`")), "{err}");
    }
}

#[test]
fn bad_values_are_refused_with_their_key() {
    for (text, key) in [
        (
            "bootstrap_lifetime = \"25h\"",
            "auth.local.bootstrap_lifetime",
        ),
        ("bootstrap_lifetime = 0", "auth.local.bootstrap_lifetime"),
        (
            "allowed_groups = [\"ops\", \"ops\"]",
            "auth.local.allowed_groups",
        ),
        ("allowed_groups = [\" ops\"]", "auth.local.allowed_groups"),
        ("allowed_groups = [\"\"]", "auth.local.allowed_groups"),
        ("min_password_length = 6", "auth.local.min_password_length"),
        (
            "[argon2]\nm_cost_kib = 4096",
            "auth.local.argon2.m_cost_kib",
        ),
        (
            "[argon2]\nm_cost_kib = 4194304",
            "auth.local.argon2.m_cost_kib",
        ),
        ("[argon2]\nt_cost = 0", "auth.local.argon2.t_cost"),
        // 7 MiB needs 5 passes.
        (
            "[argon2]\nm_cost_kib = 7168\nt_cost = 2",
            "auth.local.argon2.t_cost",
        ),
        ("[argon2]\np_cost = 0", "auth.local.argon2.p_cost"),
        (
            "[backoff]\nbase_delay = \"500ms\"",
            "auth.local.backoff.base_delay",
        ),
        (
            "[backoff]\nmax_delay = \"2h\"\nwindow = \"3h\"",
            "auth.local.backoff.max_delay",
        ),
        (
            "[backoff]\nbase_delay = \"10s\"\nmax_delay = \"5s\"",
            "auth.local.backoff.max_delay",
        ),
        ("[backoff]\nwindow = \"1m\"", "auth.local.backoff.window"),
        ("[backoff]\nwindow = 0", "auth.local.backoff.window"),
        (
            "[backoff]\nuser_free_failures = 5000",
            "auth.local.backoff.user_free_failures",
        ),
    ] {
        let err = parse(text).unwrap_err();
        assert!(err.contains(&format!("`{key}`")), "{text}: {err}");
    }
}

#[test]
fn owasps_settings_are_accepted() {
    for (m, t) in [
        (47_104, 1),
        (19_456, 2),
        (12_288, 3),
        (9_216, 4),
        (7_168, 5),
    ] {
        let text = format!("[argon2]\nm_cost_kib = {m}\nt_cost = {t}");
        assert!(parse(&text).is_ok(), "{text}");
    }
}
