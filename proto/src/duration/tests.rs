use std::time::Duration;

use super::{DurationError, DurationValue};

fn seconds(s: f64) -> Result<Duration, DurationError> {
    DurationValue::Seconds(s).to_duration()
}

fn text(t: &str) -> Result<Duration, DurationError> {
    DurationValue::Text(t.into()).to_duration()
}

#[test]
fn numbers_are_seconds() {
    assert_eq!(seconds(30.0), Ok(Duration::from_secs(30)));
    assert_eq!(seconds(0.25), Ok(Duration::from_millis(250)));
    assert_eq!(seconds(0.0), Ok(Duration::ZERO));
}

#[test]
fn words_are_humantime() {
    assert_eq!(text("90s"), Ok(Duration::from_secs(90)));
    assert_eq!(text("5m"), Ok(Duration::from_secs(300)));
    assert_eq!(text("8h"), Ok(Duration::from_secs(8 * 3600)));
    assert_eq!(text("1h 30m"), Ok(Duration::from_secs(5400)));
    assert_eq!(text("1500ms"), Ok(Duration::from_millis(1500)));
    assert_eq!(text("30d"), Ok(Duration::from_secs(30 * 86400)));
}

#[test]
fn a_number_too_large_for_the_clock_is_refused_not_a_panic() {
    let err = seconds(1e300).unwrap_err();
    assert_eq!(err, DurationError::TooLong(1e300));
    assert!(
        err.to_string()
            .contains("seconds is too long; write e.g. \"8h\""),
        "{err}"
    );
    assert!(matches!(
        seconds(u64::MAX as f64 * 2.0),
        Err(DurationError::TooLong(_))
    ));
    let err = text("99999999999999999999999h").unwrap_err();
    assert!(matches!(err, DurationError::NotDuration { .. }), "{err}");
}

#[test]
fn negative_and_non_numbers_are_refused() {
    for bad in [-1.0, -0.5, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let err = seconds(bad).unwrap_err();
        assert!(matches!(err, DurationError::NotSeconds(_)), "{bad}: {err}");
        assert!(
            err.to_string()
                .contains("is not a non-negative number of seconds"),
            "{err}"
        );
    }
}

#[test]
fn bad_words_say_what_to_write() {
    for bad in ["soon", "", "5 parsecs", "-5s", "1.5.3s"] {
        let err = text(bad).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{bad:?} is not a duration ("))
                && err.ends_with("write e.g. 30, 0.5, \"90s\" or \"8h\""),
            "{bad}: {err}"
        );
    }
}

#[test]
fn deserializes_from_numbers_and_strings() {
    #[derive(serde::Deserialize)]
    struct Holder {
        d: DurationValue,
    }
    let parse = |json: &str| serde_json::from_str::<Holder>(json).map(|h| h.d);
    assert_eq!(parse(r#"{"d": 30}"#).unwrap(), DurationValue::Seconds(30.0));
    assert_eq!(parse(r#"{"d": 0.5}"#).unwrap(), DurationValue::Seconds(0.5));
    assert_eq!(
        parse(r#"{"d": "2m"}"#).unwrap(),
        DurationValue::Text("2m".into())
    );
    assert!(parse(r#"{"d": true}"#).is_err());
}
