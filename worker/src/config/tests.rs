use super::*;

const BASE: &str = "[worker]\nname = \"w\"\nstate_dir = \"/s\"\ncontrollers = [\"c:9201\"]\n";

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, |_| None, |_| Ok(String::new()))
}

#[test]
fn example_config_parses_and_typos_are_named() {
    let text = include_str!("../../../config/worker.toml");
    let c = Config::from_toml(text).unwrap();
    assert_eq!(c.admit_grace, Duration::from_secs(5));
    assert_eq!(c.live_grace, Duration::from_secs(60));
    assert_eq!(c.drain_timeout, Duration::from_secs(30));
    let err = Config::from_toml(&text.replace("drain_timeout", "drain_timout"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("drain_timout"), "{err}");
    let err = Config::from_toml(&text.replace("127.0.0.1:9202", "nowhere"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("worker.proxy_listen"), "{err}");
    assert_eq!(c.handshake_timeout, Duration::from_secs(10));
    assert_eq!(c.hello_timeout, Duration::from_secs(5));
    assert_eq!(c.handshake_limits.total, 512);
    let err = Config::from_toml(&text.replace("max_handshakes = 512", "max_handshakes = 0"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("worker.max_handshakes"), "{err}");
}

#[test]
fn durations_take_the_controllers_syntax() {
    let c = parse(&format!(
        "{BASE}admit_grace = \"90s\"\nlive_grace = \"2m\"\ndrain_timeout = 7\n\
         handshake_timeout = 0.5\nhello_timeout = \"1s 500ms\"\n"
    ))
    .unwrap();
    assert_eq!(c.admit_grace, Duration::from_secs(90));
    assert_eq!(c.live_grace, Duration::from_secs(120));
    assert_eq!(c.drain_timeout, Duration::from_secs(7));
    assert_eq!(c.handshake_timeout, Duration::from_millis(500));
    assert_eq!(c.hello_timeout, Duration::from_millis(1500));
}

#[test]
fn the_seconds_keys_still_take_numbers() {
    let c = parse(&format!(
        "{BASE}admit_grace_secs = 1\nlive_grace_secs = 3\ndrain_timeout_secs = 2\n\
         handshake_timeout_secs = 1.5\nhello_timeout_secs = 0.25\n"
    ))
    .unwrap();
    assert_eq!(c.admit_grace, Duration::from_secs(1));
    assert_eq!(c.live_grace, Duration::from_secs(3));
    assert_eq!(c.drain_timeout, Duration::from_secs(2));
    assert_eq!(c.handshake_timeout, Duration::from_millis(1500));
    assert_eq!(c.hello_timeout, Duration::from_millis(250));
    let c = parse(BASE).unwrap();
    assert_eq!(c.admit_grace, Duration::from_secs(5));
    assert_eq!(c.live_grace, Duration::from_secs(60));
}

#[test]
fn a_bad_duration_names_its_key_and_line() {
    let err = parse(&format!("{BASE}admit_grace = \"soon\"\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("line 5")
            && err.contains("worker.admit_grace")
            && err.contains("\"soon\" is not a duration")
            && err.contains("\"90s\""),
        "{err}"
    );
    let err = parse(&format!("{BASE}\n\nhello_timeout = 0\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("line 7")
            && err.contains("worker.hello_timeout")
            && err.contains("greater than zero"),
        "{err}"
    );
    let err = parse(&format!("{BASE}drain_timeout_secs = -1\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("line 5") && err.contains("worker.drain_timeout_secs"),
        "{err}"
    );
}

#[test]
fn a_duration_too_long_for_the_clock_is_refused_by_name() {
    for line in [
        "live_grace_secs = 1e300",
        "live_grace = 1e300",
        "live_grace = \"1e300s\"",
    ] {
        let err = parse(&format!("{BASE}{line}\n")).unwrap_err().to_string();
        let key = line.split(" = ").next().unwrap();
        assert!(
            err.contains(&format!("worker.{key}")) && err.contains("line 5"),
            "{line}: {err}"
        );
    }
    let err = parse(&format!("{BASE}live_grace_secs = 1e300\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("too long"), "{err}");
}

#[test]
fn a_duration_given_twice_is_refused() {
    let err = parse(&format!(
        "{BASE}admit_grace = \"5s\"\nadmit_grace_secs = 5\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("worker.admit_grace_secs") && err.contains("worker.admit_grace"),
        "{err}"
    );
}

#[test]
fn recording_limits_take_bytes_or_units_and_default_to_a_gib_and_two() {
    let c = parse(BASE).unwrap();
    assert_eq!(c.recording.max_bytes, 1 << 30);
    assert_eq!(c.recording.spool_max_bytes, 2 << 30);
    let c = parse(&format!(
        "{BASE}[recording]\nmax_bytes = \"512 MiB\"\nspool_max_bytes = 1000000\n"
    ))
    .unwrap();
    assert_eq!(c.recording.max_bytes, 512 << 20);
    assert_eq!(c.recording.spool_max_bytes, 1_000_000);
    let err = parse(&format!("{BASE}[recording]\nmax_bytes = \"lots\"\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("recording.max_bytes") && err.contains("line 6"),
        "{err}"
    );
    let err = parse(&format!("{BASE}[recording]\nspool_max_bytes = 0\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("recording.spool_max_bytes"), "{err}");
    let err = parse(&format!("{BASE}[recording]\nmax_byte = 1\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_byte"), "{err}");
}

#[test]
fn listeners_default_to_loopback() {
    let c = parse(BASE).unwrap();
    assert_eq!(c.proxy_listen.to_string(), "127.0.0.1:9202");
    assert_eq!(
        c.cluster_listen, None,
        "controllers dial in only when configured"
    );
}

#[test]
fn trusted_proxies_are_networks_empty_by_default_and_a_bad_one_is_named() {
    assert!(parse(BASE).unwrap().trusted_proxies.is_empty());
    let c = parse(&format!(
        "{BASE}trusted_proxies = [\"10.0.0.5/32\", \"2001:db8::/64\", \"192.0.2.7\"]\n"
    ))
    .unwrap();
    assert!(c.trusted_proxies.trusts("10.0.0.5".parse().unwrap()));
    assert!(c.trusted_proxies.trusts("2001:db8::9".parse().unwrap()));
    assert!(c.trusted_proxies.trusts("192.0.2.7".parse().unwrap()));
    assert!(!c.trusted_proxies.trusts("10.0.0.6".parse().unwrap()));
    let err = parse(&format!("{BASE}trusted_proxies = [\"10.0.0.5/40\"]\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("worker.trusted_proxies") && err.contains("10.0.0.5/40"),
        "{err}"
    );
}
