use super::*;
use portcullis_crypto::ed25519::SigningKey;

fn keypair() -> (Vec<u8>, String) {
    let pkcs8 = SigningKey::generate_pkcs8().unwrap();
    let pair = SigningKey::from_pkcs8(&pkcs8).unwrap();
    let public = crate::keys::b64(pair.public_key());
    (pkcs8.to_vec(), public)
}

fn claims(exp: u64) -> GrantClaims {
    GrantClaims {
        iss: GRANT_ISSUER.into(),
        aud: GrantClaims::audience_for("w_1"),
        sub: "u_1".into(),
        sid: "s_1".into(),
        tid: "t_1".into(),
        ckh: "00".repeat(32),
        src: "127.0.0.1".into(),
        dst: "127.0.0.1:22".into(),
        lim: 0,
        iat: 100,
        exp,
        gw: None,
        pve: None,
    }
}

#[test]
fn signed_grant_verifies_with_its_key() {
    let (private, public) = keypair();
    let token = sign(&claims(200), "k1", &private).unwrap();
    let keys = [GrantKey {
        kid: "k1".into(),
        public_key: public,
    }];
    assert_eq!(verify(&token, &keys, "w_1", 150).unwrap(), claims(200));
}

#[test]
fn a_grant_signed_with_a_parsed_key_is_the_same_token_and_verifies() {
    let (private, public) = keypair();
    let key = SigningKey::from_pkcs8(&private).unwrap();
    let token = sign_with(&claims(200), "k1", &key).unwrap();
    // Ed25519 is deterministic: the same key, header and claims give the token
    // jsonwebtoken's own encoder makes (what grants were before).
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some("k1".into());
    let encoded = jsonwebtoken::encode(
        &header,
        &claims(200),
        &jsonwebtoken::EncodingKey::from_ed_der(&private),
    )
    .unwrap();
    assert_eq!(token, encoded);
    assert_eq!(token, sign(&claims(200), "k1", &private).unwrap());
    let keys = [GrantKey {
        kid: "k1".into(),
        public_key: public,
    }];
    assert_eq!(verify(&token, &keys, "w_1", 150).unwrap(), claims(200));
    assert_eq!(key_id(&token).as_deref(), Some("k1"));
}

#[test]
fn grant_by_another_key_with_same_kid_is_refused() {
    let (private, _) = keypair();
    let (_, other_public) = keypair();
    let token = sign(&claims(200), "k1", &private).unwrap();
    let keys = [GrantKey {
        kid: "k1".into(),
        public_key: other_public,
    }];
    assert_eq!(
        verify(&token, &keys, "w_1", 150),
        Err(GrantError::BadSignature)
    );
}

#[test]
fn unknown_kid_expired_and_wrong_worker_are_refused() {
    let (private, public) = keypair();
    let token = sign(&claims(200), "k1", &private).unwrap();
    let keys = [GrantKey {
        kid: "k2".into(),
        public_key: public.clone(),
    }];
    assert_eq!(
        verify(&token, &keys, "w_1", 150),
        Err(GrantError::UnknownKey("k1".into()))
    );
    let keys = [GrantKey {
        kid: "k1".into(),
        public_key: public,
    }];
    assert_eq!(verify(&token, &keys, "w_1", 200), Err(GrantError::Expired));
    assert_eq!(
        verify(&token, &keys, "w_2", 150),
        Err(GrantError::WrongAudience)
    );
}

#[test]
fn alg_none_and_hs256_are_refused() {
    let (_, public) = keypair();
    let keys = [GrantKey {
        kid: "k1".into(),
        public_key: public.clone(),
    }];
    // alg=none
    let none = format!(
        "{}.{}.",
        crate::keys::b64(br#"{"alg":"none","kid":"k1"}"#),
        crate::keys::b64(serde_json::to_string(&claims(200)).unwrap().as_bytes())
    );
    assert!(verify(&none, &keys, "w_1", 150).is_err());
    // HS256 keyed with the public key bytes (key confusion).
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    let hs = jsonwebtoken::encode(
        &header,
        &claims(200),
        &jsonwebtoken::EncodingKey::from_secret(public.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        verify(&hs, &keys, "w_1", 150),
        Err(GrantError::WrongAlgorithm)
    );
    assert!(matches!(
        verify("garbage", &keys, "w_1", 150),
        Err(GrantError::Malformed(_))
    ));
}
