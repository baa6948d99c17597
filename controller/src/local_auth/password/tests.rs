use secrecy::SecretString;

use super::*;

/// Cheap parameters, so the tests run fast in debug builds; the defaults are tested once.
const CHEAP: Argon2Params = Argon2Params {
    m_cost_kib: 64,
    t_cost: 1,
    p_cost: 1,
};

fn secret(text: &str) -> SecretString {
    SecretString::from(text.to_owned())
}

fn new_password(text: &str) -> NewPassword {
    NewPassword::new(secret(text), DEFAULT_MIN_PASSWORD_CHARS).unwrap()
}

#[test]
fn a_hash_is_an_argon2id_phc_string_that_verifies_its_password_only() {
    let stored = hash(&new_password("correct horse battery"), CHEAP).unwrap();
    assert!(
        stored.as_phc().starts_with("$argon2id$v=19$m=64,t=1,p=1$"),
        "{}",
        stored.as_phc()
    );
    assert_eq!(
        verify(&secret("correct horse battery"), &stored, CHEAP).unwrap(),
        PasswordCheck::Valid {
            needs_rehash: false
        }
    );
    assert_eq!(
        verify(&secret("correct horse batterY"), &stored, CHEAP).unwrap(),
        PasswordCheck::Invalid
    );
}

#[test]
fn the_same_password_hashes_differently_each_time() {
    let a = hash(&new_password("correct horse battery"), CHEAP).unwrap();
    let b = hash(&new_password("correct horse battery"), CHEAP).unwrap();
    assert_ne!(a, b, "each hash has its own salt");
}

#[test]
fn the_default_parameters_are_owasps() {
    let params = Argon2Params::default();
    assert_eq!(
        (params.m_cost_kib, params.t_cost, params.p_cost),
        (19 * 1024, 2, 1)
    );
    let stored = hash(&new_password("correct horse battery"), params).unwrap();
    assert!(stored
        .as_phc()
        .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    assert_eq!(
        verify(&secret("correct horse battery"), &stored, params).unwrap(),
        PasswordCheck::Valid {
            needs_rehash: false
        }
    );
}

#[test]
fn a_hash_with_older_parameters_verifies_and_needs_rehashing() {
    let stored = hash(&new_password("correct horse battery"), CHEAP).unwrap();
    let raised = Argon2Params {
        m_cost_kib: 128,
        ..CHEAP
    };
    assert_eq!(
        verify(&secret("correct horse battery"), &stored, raised).unwrap(),
        PasswordCheck::Valid { needs_rehash: true }
    );
    // A wrong password is wrong whatever the parameters.
    assert_eq!(
        verify(&secret("wrong horse battery"), &stored, raised).unwrap(),
        PasswordCheck::Invalid
    );
}

#[test]
fn an_argon2i_hash_verifies_and_needs_rehashing_to_argon2id() {
    let hasher = Argon2::new(
        Algorithm::Argon2i,
        Version::V0x13,
        CHEAP.to_params().unwrap(),
    );
    let phc = hasher
        .hash_password_with_salt(b"correct horse battery", &[7u8; 16])
        .unwrap();
    let stored = PasswordHash::from_phc(phc.to_string()).unwrap();
    assert_eq!(
        verify(&secret("correct horse battery"), &stored, CHEAP).unwrap(),
        PasswordCheck::Valid { needs_rehash: true }
    );
}

#[test]
fn a_short_password_is_refused_with_the_rule() {
    let err = NewPassword::new(secret("short pass"), 12).unwrap_err();
    assert!(matches!(
        err,
        PasswordError::TooShort { min: 12, found: 10 }
    ));
    assert!(err.to_string().contains("at least 12"), "{err}");
    // Characters, not bytes: twelve accented letters are twelve characters.
    assert!(NewPassword::new(secret("éééééééééééé"), 12).is_ok());
    assert!(NewPassword::new(secret("ééééééééééé"), 12).is_err());
}

#[test]
fn an_overlong_password_is_refused() {
    let long = "a".repeat(MAX_PASSWORD_BYTES + 1);
    assert!(matches!(
        NewPassword::new(secret(&long), 12),
        Err(PasswordError::TooLong)
    ));
}

#[test]
fn a_stored_value_that_is_not_an_argon2_phc_string_is_refused() {
    assert!(matches!(
        PasswordHash::from_phc("hunter2".into()),
        Err(PasswordError::Stored(_))
    ));
    assert!(matches!(
        PasswordHash::from_phc("$pbkdf2-sha256$i=1000$c2FsdA$aGFzaA".into()),
        Err(PasswordError::Stored(_))
    ));
}

#[test]
fn invalid_parameters_are_an_error_not_a_panic() {
    let bad = Argon2Params {
        m_cost_kib: 1,
        t_cost: 0,
        p_cost: 1,
    };
    assert!(matches!(
        hash(&new_password("correct horse battery"), bad),
        Err(PasswordError::Parameters(_))
    ));
}

#[test]
fn no_debug_shows_the_password_or_the_hash() {
    let password = new_password("correct horse battery");
    assert!(!format!("{password:?}").contains("horse"));
    let stored = hash(&password, CHEAP).unwrap();
    let shown = format!("{stored:?}");
    let digest = stored.as_phc().rsplit('$').next().unwrap();
    assert!(!shown.contains(digest), "{shown}");
    assert!(shown.contains("m=64,t=1,p=1"), "{shown}");
}
