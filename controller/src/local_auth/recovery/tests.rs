use secrecy::ExposeSecret as _;

use super::*;

fn shown(codes: &NewCodes, index: usize) -> String {
    codes.shown[index].as_shown().expose_secret().to_owned()
}

#[test]
fn ten_distinct_codes_grouped_for_reading() {
    let codes = generate().unwrap();
    assert_eq!(codes.shown.len(), CODE_COUNT);
    assert_eq!(codes.stored.len(), CODE_COUNT);
    let mut seen = std::collections::HashSet::new();
    for code in &codes.shown {
        let text = code.as_shown().expose_secret();
        assert_eq!(text.len(), 19, "{text}");
        let groups: Vec<&str> = text.split('-').collect();
        assert_eq!(groups.len(), 4, "{text}");
        assert!(groups.iter().all(|g| g.len() == 4));
        assert!(seen.insert(text.to_owned()));
    }
    assert!(codes.stored.iter().all(|c| c.used_at.is_none()));
}

#[test]
fn a_code_redeems_once() {
    let mut codes = generate().unwrap();
    let code = shown(&codes, 3);
    assert_eq!(redeem(&mut codes.stored, &code, 100), Some(3));
    assert_eq!(codes.stored[3].used_at, Some(100));
    assert_eq!(remaining(&codes.stored), CODE_COUNT - 1);
    assert_eq!(redeem(&mut codes.stored, &code, 200), None, "single use");
    assert_eq!(codes.stored[3].used_at, Some(100));
}

#[test]
fn a_code_is_accepted_in_upper_case_and_without_dashes() {
    let mut codes = generate().unwrap();
    let code = shown(&codes, 0).replace('-', " ").to_uppercase();
    assert_eq!(redeem(&mut codes.stored, &code, 1), Some(0));
}

#[test]
fn wrong_and_malformed_codes_redeem_nothing() {
    let mut codes = generate().unwrap();
    let mut other = generate().unwrap();
    for typed in [
        shown(&other, 0),
        String::new(),
        "abcd-efgh".into(),
        "0000-0000-0000-0000".into(),
    ] {
        assert_eq!(redeem(&mut codes.stored, &typed, 1), None, "{typed:?}");
    }
    assert_eq!(remaining(&codes.stored), CODE_COUNT);
    let first = shown(&other, 0);
    assert_eq!(redeem(&mut other.stored, &first, 1), Some(0));
}

#[test]
fn only_the_digest_is_stored_and_it_round_trips_through_hex() {
    let codes = generate().unwrap();
    let code = shown(&codes, 0);
    let hex = codes.stored[0].hash.to_hex();
    assert_eq!(hex.len(), 64);
    assert!(!hex.contains(&code.replace('-', "")));
    let mut restored = vec![StoredCode {
        hash: CodeHash::from_hex(&hex).unwrap(),
        used_at: None,
    }];
    assert_eq!(redeem(&mut restored, &code, 1), Some(0));
    assert!(matches!(
        CodeHash::from_hex("zz"),
        Err(RecoveryError::StoredHash)
    ));
}

#[test]
fn no_debug_shows_a_code() {
    let codes = generate().unwrap();
    let debug = format!("{codes:?}");
    for index in 0..CODE_COUNT {
        let code = shown(&codes, index);
        assert!(!debug.contains(&code), "{debug}");
    }
}
