use super::*;

const AUD: &str = "https://portcullis.example:8443";
const NOW: u64 = 1_700_000_000;

fn key(seed: u8) -> (SigningKey, [u8; 32]) {
    let key = SigningKey::from_seed(&[seed; 32]).unwrap();
    let public: [u8; 32] = key.public_key().try_into().unwrap();
    (key, public)
}

fn claims() -> AssertionClaims {
    AssertionClaims::new("terraform-ci", AUD, NOW, 60).unwrap()
}

/// `token` with its header replaced by `header` (payload and signature kept).
fn with_header(token: &str, header: &[u8]) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!("{}.{}.{}", b64(header), parts[1], parts[2])
}

#[test]
fn a_signed_assertion_verifies_with_the_accounts_key() {
    let (signer, public) = key(1);
    let (_, other) = key(2);
    let claims = claims();
    let token = sign(&claims, &signer).unwrap();
    let verified = verify(&token, &[other, public], AUD, NOW + 10, 30).unwrap();
    assert_eq!(verified.claims, claims);
    assert_eq!(verified.claims.iss, "service:terraform-ci");
    assert_eq!(verified.claims.sub, "terraform-ci");
    assert_eq!(verified.key_fingerprint, ed25519_fingerprint(&public));
    assert_eq!(verified.remember_until, NOW + 60 + 30);
    assert_eq!(unverified_account(&token).unwrap(), "terraform-ci");
    assert_eq!(unverified_audience(&token).unwrap(), AUD);
}

#[test]
fn new_claims_carry_a_fresh_128_bit_jti_and_refuse_long_lifetimes() {
    let a = claims();
    let b = claims();
    assert_ne!(a.jti, b.jti);
    assert_eq!(unb64(&a.jti).unwrap().len(), MIN_JTI_BYTES);
    assert_eq!(a.exp, NOW + 60);
    assert_eq!(
        AssertionClaims::new("ci", AUD, NOW, MAX_LIFETIME_SECS + 1),
        Err(AssertionError::LifetimeTooLong)
    );
    assert!(AssertionClaims::new("ci", AUD, NOW, MAX_LIFETIME_SECS).is_ok());
    assert!(matches!(
        AssertionClaims::new("", AUD, NOW, 60),
        Err(AssertionError::Malformed(_))
    ));
}

#[test]
fn another_key_is_unknown_and_a_borrowed_kid_fails_the_signature() {
    let (signer, _) = key(1);
    let (_, registered) = key(2);
    let token = sign(&claims(), &signer).unwrap();
    assert!(matches!(
        verify(&token, &[registered], AUD, NOW, 0),
        Err(AssertionError::UnknownKey(_))
    ));
    // The registered key's kid on a payload signed by another key.
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(ed25519_fingerprint(&registered));
    let forged = with_header(&token, &serde_json::to_vec(&header).unwrap());
    assert_eq!(
        verify(&forged, &[registered], AUD, NOW, 0),
        Err(AssertionError::BadSignature)
    );
}

#[test]
fn a_changed_payload_fails_the_signature() {
    let (signer, public) = key(1);
    let token = sign(&claims(), &signer).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let mut other = claims();
    other.sub = "admin".into();
    other.iss = issuer_for("admin");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(&serde_json::to_vec(&other).unwrap()),
        parts[2]
    );
    assert_eq!(
        verify(&tampered, &[public], AUD, NOW, 0),
        Err(AssertionError::BadSignature)
    );
}

#[test]
fn other_algorithms_and_a_missing_kid_are_refused() {
    let (signer, public) = key(1);
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(ed25519_fingerprint(&public));
    // An HMAC keyed with the public key: the classic algorithm confusion.
    let hmac = jsonwebtoken::encode(
        &header,
        &claims(),
        &jsonwebtoken::EncodingKey::from_secret(&public),
    )
    .unwrap();
    assert_eq!(
        verify(&hmac, &[public], AUD, NOW, 0),
        Err(AssertionError::WrongAlgorithm)
    );
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(&serde_json::to_vec(&claims()).unwrap())
    );
    assert!(verify(&none, &[public], AUD, NOW, 0).is_err());
    let token = sign(&claims(), &signer).unwrap();
    let no_kid = with_header(&token, br#"{"alg":"EdDSA","typ":"JWT"}"#);
    assert_eq!(
        verify(&no_kid, &[public], AUD, NOW, 0),
        Err(AssertionError::MissingKeyId)
    );
}

#[test]
fn time_window_with_skew() {
    let (signer, public) = key(1);
    let token = sign(&claims(), &signer).unwrap();
    // Valid from iat - skew until exp + skew (exclusive).
    assert!(verify(&token, &[public], AUD, NOW - 30, 30).is_ok());
    assert_eq!(
        verify(&token, &[public], AUD, NOW - 31, 30),
        Err(AssertionError::NotYetValid)
    );
    assert!(verify(&token, &[public], AUD, NOW + 60 + 29, 30).is_ok());
    assert_eq!(
        verify(&token, &[public], AUD, NOW + 60 + 30, 30),
        Err(AssertionError::Expired)
    );
    assert_eq!(
        verify(&token, &[public], AUD, NOW + 60, 0),
        Err(AssertionError::Expired)
    );
}

#[test]
fn a_lifetime_over_five_minutes_is_refused_even_when_unexpired() {
    let (signer, public) = key(1);
    let mut long = claims();
    long.exp = long.iat + MAX_LIFETIME_SECS + 1;
    let token = sign(&long, &signer).unwrap();
    assert_eq!(
        verify(&token, &[public], AUD, NOW, 0),
        Err(AssertionError::LifetimeTooLong)
    );
    let mut backwards = claims();
    backwards.exp = backwards.iat;
    let token = sign(&backwards, &signer).unwrap();
    assert!(matches!(
        verify(&token, &[public], AUD, NOW, 0),
        Err(AssertionError::Malformed(_))
    ));
}

#[test]
fn the_audience_of_a_url_drops_trailing_slashes_only() {
    assert_eq!(
        audience_for("https://pc.example:8443/"),
        "https://pc.example:8443"
    );
    assert_eq!(
        audience_for("https://pc.example:8443"),
        "https://pc.example:8443"
    );
    assert_eq!(
        audience_for("https://pc.example/api/"),
        "https://pc.example/api"
    );
}

#[test]
fn the_audience_must_match_exactly() {
    let (signer, public) = key(1);
    let token = sign(&claims(), &signer).unwrap();
    for other in [
        "https://portcullis.example:8443/",
        "https://portcullis.example",
        "https://evil.example:8443",
    ] {
        assert_eq!(
            verify(&token, &[public], other, NOW, 0),
            Err(AssertionError::WrongAudience(AUD.into()))
        );
    }
}

#[test]
fn the_issuer_must_name_the_subject_and_the_jti_must_be_long_enough() {
    let (signer, public) = key(1);
    let mut wrong_iss = claims();
    wrong_iss.iss = "service:other".into();
    let token = sign(&wrong_iss, &signer).unwrap();
    assert_eq!(
        verify(&token, &[public], AUD, NOW, 0),
        Err(AssertionError::WrongIssuer)
    );
    for jti in [b64(&[7u8; 15]), b64(&[7u8; 65]), "***".into()] {
        let mut bad = claims();
        bad.jti = jti;
        let token = sign(&bad, &signer).unwrap();
        assert_eq!(
            verify(&token, &[public], AUD, NOW, 0),
            Err(AssertionError::BadJti)
        );
    }
}

#[test]
fn malformed_tokens_and_unknown_claims_are_refused() {
    let (signer, public) = key(1);
    for bad in ["", "a.b", "a.b.c", "...", "eyJhbGciOiJFZERTQSJ9.!!.x"] {
        assert!(verify(bad, &[public], AUD, NOW, 0).is_err(), "{bad}");
        assert!(unverified_account(bad).is_err(), "{bad}");
        assert!(unverified_audience(bad).is_err(), "{bad}");
    }
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(ed25519_fingerprint(&public));
    let mut value = serde_json::to_value(claims()).unwrap();
    value["admin"] = serde_json::Value::Bool(true);
    let input = format!(
        "{}.{}",
        b64(&serde_json::to_vec(&header).unwrap()),
        b64(&serde_json::to_vec(&value).unwrap())
    );
    let token = format!("{input}.{}", b64(&signer.sign(input.as_bytes())));
    assert!(matches!(
        verify(&token, &[public], AUD, NOW, 0),
        Err(AssertionError::Malformed(_))
    ));
}
