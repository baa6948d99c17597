#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use super::*;

#[test]
fn the_audience_is_an_https_url_of_one_of_the_api_certificate_names() {
    let names = vec!["localhost".to_owned(), "127.0.0.1".into(), "::1".into()];
    for ok in [
        "https://localhost:9200",
        "https://LOCALHOST:9200",
        "https://localhost",
        "https://localhost:443",
        "https://127.0.0.1:8443",
        "https://[::1]:9200",
    ] {
        assert!(accepts_audience(ok, &names), "{ok}");
    }
    for bad in [
        "http://localhost:9200",
        "https://evil.example:9200",
        "https://localhost:9200/v1",
        "https://localhost:9200?x=1",
        "https://user@localhost:9200",
        "https://127.0.0.2:9200",
        "localhost:9200",
        "",
    ] {
        assert!(!accepts_audience(bad, &names), "{bad}");
    }
}

#[test]
fn a_service_token_lives_at_most_the_service_cap() {
    let hour = Duration::from_secs(3600);
    assert_eq!(service_token_lifetime(12 * hour, hour), hour);
    assert_eq!(
        service_token_lifetime(Duration::from_secs(600), hour),
        Duration::from_secs(600)
    );
}
