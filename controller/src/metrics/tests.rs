use std::time::Duration;

use super::*;

fn scrape(m: &Metrics, gauges: &Gauges) -> String {
    m.encode(gauges)
}

#[test]
fn names_are_prefixed_and_counters_end_in_total() {
    let m = Metrics::new();
    let text = scrape(&m, &Gauges::default());
    for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
        let mut words = line.split_whitespace().skip(2);
        let (name, kind) = (words.next().unwrap(), words.next().unwrap());
        assert!(name.starts_with("portcullis_controller_"), "{line}");
        if kind == "counter" {
            assert!(text.contains(&format!("{name}_total")), "{line}");
        }
    }
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[test]
fn every_bounded_series_exists_at_zero_before_anything_happens() {
    let text = scrape(&Metrics::new(), &Gauges::default());
    for family in [
        "credentials_minted",
        "credentials_revoked",
        "credential_failures",
    ] {
        for kind in ["ssh_cert", "vault", "pve_token"] {
            let series = format!("portcullis_controller_{family}_total{{kind=\"{kind}\"}} 0");
            assert!(text.contains(&series), "{series} missing:\n{text}");
        }
    }
    for method in ["oidc", "local", "service_account", "dev"] {
        for outcome in ["success", "failure"] {
            let series = format!(
                "portcullis_controller_logins_total{{method=\"{method}\",outcome=\"{outcome}\"}} 0"
            );
            assert!(text.contains(&series), "{series} missing:\n{text}");
        }
    }
}

#[test]
fn authorize_decisions_count_by_outcome_and_time_is_observed() {
    let m = Metrics::new();
    let zero = scrape(&m, &Gauges::default());
    assert!(zero.contains("portcullis_controller_authorize_decisions_total{outcome=\"allow\"} 0"));
    m.authorized(Outcome::Allow, Duration::from_millis(3));
    m.authorized(Outcome::Allow, Duration::from_millis(3));
    m.authorized(Outcome::Deny, Duration::from_millis(1));
    let text = scrape(&m, &Gauges::default());
    assert!(
        text.contains("portcullis_controller_authorize_decisions_total{outcome=\"allow\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("portcullis_controller_authorize_decisions_total{outcome=\"deny\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("portcullis_controller_authorize_duration_seconds_count 3"),
        "{text}"
    );
}

#[test]
fn labels_take_only_fixed_values() {
    let m = Metrics::new();
    m.minted(CredentialKind::SshCert);
    m.revoked(CredentialKind::PveToken);
    m.credential_failed(CredentialKind::Vault);
    m.login(LoginMethod::ServiceAccount, LoginOutcome::Failure);
    let text = scrape(&m, &Gauges::default());
    assert!(
        text.contains("portcullis_controller_credentials_minted_total{kind=\"ssh_cert\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("portcullis_controller_credentials_revoked_total{kind=\"pve_token\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("portcullis_controller_credential_failures_total{kind=\"vault\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "portcullis_controller_logins_total{method=\"service_account\",outcome=\"failure\"} 1"
        ),
        "{text}"
    );
    // Every label value of every sample is one of the fixed words.
    let allowed = [
        "allow",
        "deny",
        "ssh_cert",
        "vault",
        "pve_token",
        "oidc",
        "local",
        "service_account",
        "dev",
        "success",
        "failure",
        "minting",
        "pending",
        "active",
    ];
    for sample in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(labels) = sample.split_once('{').map(|(_, rest)| rest) else {
            continue;
        };
        let labels = labels.split_once('}').unwrap().0;
        for pair in labels.split(',').filter(|p| !p.starts_with("le=")) {
            let value = pair.split_once('=').unwrap().1.trim_matches('"');
            assert!(
                allowed.contains(&value),
                "unbounded label value in {sample}"
            );
        }
    }
}

#[test]
fn gauges_show_what_the_scrape_read_and_every_live_state() {
    let m = Metrics::new();
    let gauges = Gauges {
        sessions: vec![("active".into(), 3)],
        linked_workers: 2,
        audit_queue: 5,
        sink_lags: vec![("siem".into(), 7)],
    };
    let text = scrape(&m, &gauges);
    assert!(
        text.contains("portcullis_controller_sessions{state=\"active\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("portcullis_controller_sessions{state=\"pending\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("portcullis_controller_linked_workers 2"),
        "{text}"
    );
    assert!(
        text.contains("portcullis_controller_audit_queue_depth 5"),
        "{text}"
    );
    assert!(
        text.contains("portcullis_controller_audit_sink_lag_events{sink=\"siem\"} 7"),
        "{text}"
    );
    // A later scrape with fewer sessions brings the gauge down.
    let text = scrape(&m, &Gauges::default());
    assert!(
        text.contains("portcullis_controller_sessions{state=\"active\"} 0"),
        "{text}"
    );
}

#[test]
fn ready_needs_the_store_then_the_keys() {
    assert_eq!(readiness(true, true), Ok(()));
    assert_eq!(readiness(false, true), Err(NotReady::Store));
    assert_eq!(readiness(false, false), Err(NotReady::Store));
    assert_eq!(readiness(true, false), Err(NotReady::Keys));
}
