use std::time::Duration;

use super::*;

fn message(result: Result<impl std::fmt::Debug, ConfigError>) -> String {
    result.unwrap_err().to_string()
}

#[test]
fn durations_take_numbers_and_words_and_default_when_absent() {
    let d = |v: DurationValue| duration(&Some(v), "k", Duration::ZERO).unwrap();
    assert_eq!(d(DurationValue::Seconds(30.0)), Duration::from_secs(30));
    assert_eq!(d(DurationValue::Seconds(0.5)), Duration::from_millis(500));
    assert_eq!(
        d(DurationValue::Text("90s".into())),
        Duration::from_secs(90)
    );
    assert_eq!(
        d(DurationValue::Text("5m".into())),
        Duration::from_secs(300)
    );
    assert_eq!(
        duration(&None, "k", Duration::from_secs(7)).unwrap(),
        Duration::from_secs(7)
    );
}

#[test]
fn bad_durations_name_the_key() {
    let err = message(duration(
        &Some(DurationValue::Text("soon".into())),
        "sessions.sweep_interval",
        Duration::ZERO,
    ));
    assert!(
        err.starts_with("config key `sessions.sweep_interval`: \"soon\" is not a duration (")
            && err.ends_with("write e.g. 30, 0.5, \"90s\" or \"8h\""),
        "{err}"
    );
    let err = message(duration(
        &Some(DurationValue::Seconds(1e300)),
        "api.token_lifetime",
        Duration::ZERO,
    ));
    assert!(
        err.starts_with("config key `api.token_lifetime`: ")
            && err.ends_with(" seconds is too long; write e.g. \"8h\" or \"30d\""),
        "{err}"
    );
    let err = message(duration(
        &Some(DurationValue::Seconds(-1.0)),
        "k",
        Duration::ZERO,
    ));
    assert_eq!(
        err,
        "config key `k`: -1 is not a non-negative number of seconds"
    );
}

#[test]
fn zero_is_refused_where_a_positive_duration_is_needed() {
    let zero = Some(DurationValue::Seconds(0.0));
    assert_eq!(
        duration(&zero, "k", Duration::ZERO).unwrap(),
        Duration::ZERO
    );
    let err = message(positive_duration(&zero, "k", Duration::ZERO));
    assert_eq!(err, "config key `k`: must be greater than zero");
    assert_eq!(
        positive_duration(&None, "k", Duration::from_secs(1)).unwrap(),
        Duration::from_secs(1)
    );
}

#[test]
fn counts_start_at_one() {
    assert_eq!(at_least_one(1u32, "k").unwrap(), 1);
    assert_eq!(at_least_one(512usize, "k").unwrap(), 512);
    assert_eq!(
        message(at_least_one(0u64, "store.max_connections")),
        "config key `store.max_connections`: must be at least 1"
    );
}

#[test]
fn sockets_are_ip_and_port() {
    assert_eq!(socket(&None, "k", "127.0.0.1:9200").unwrap().port(), 9200);
    assert_eq!(
        socket(&Some("[::1]:1".into()), "k", "127.0.0.1:9200").unwrap(),
        "[::1]:1".parse().unwrap()
    );
    let err = message(socket(&Some("localhost".into()), "api.listen", "x"));
    assert_eq!(
        err,
        "config key `api.listen`: \"localhost\" is not an IP:PORT address (e.g. 127.0.0.1:9200)"
    );
}

#[test]
fn source_addresses_are_ips_or_cidrs() {
    for good in [
        "10.0.0.2",
        "10.0.0.0/8",
        "0.0.0.0/0",
        "::1",
        "fd00::/8",
        "::/128",
    ] {
        assert!(ip_or_cidr(good, "k").is_ok(), "{good}");
    }
    for bad in [
        "10.0.0.0/33",
        "::/129",
        "10.0.0.0/",
        "/8",
        "host",
        "10.0.0/8",
        "",
    ] {
        let err = message(ip_or_cidr(bad, "ssh.source_addresses"));
        assert_eq!(
            err,
            format!("config key `ssh.source_addresses`: {bad:?} is not an IP address or CIDR")
        );
    }
}

#[test]
fn host_port_needs_both_and_a_real_port() {
    for good in ["w1:9203", "10.0.0.2:1", "[::1]:65535"] {
        assert!(host_port(good, "k").is_ok(), "{good}");
    }
    for bad in ["w1", ":9203", "w1:0", "w1:65536", "w1:port"] {
        let err = message(host_port(bad, "cluster.dial_workers"));
        assert_eq!(
            err,
            format!("config key `cluster.dial_workers`: {bad:?} is not HOST:PORT")
        );
    }
}

#[test]
fn vault_segments_stay_inside_their_mount() {
    assert_eq!(vault_segment("ssh", "k", false).unwrap(), "ssh");
    assert_eq!(
        vault_segment("team-a/ssh_1.x", "k", true).unwrap(),
        "team-a/ssh_1.x"
    );
    for (bad, slash) in [
        ("team/ssh", false),
        ("../sys", true),
        ("/ssh", true),
        ("ssh/", true),
        ("", true),
        ("a b", true),
        (&*"a".repeat(129), true),
    ] {
        let err = message(vault_segment(bad, "vault.ssh_mount", slash));
        assert!(
            err.starts_with("config key `vault.ssh_mount`: ")
                && err.ends_with("is not a Vault mount or role name (letters, digits, -, _, .)"),
            "{bad}: {err}"
        );
    }
}
