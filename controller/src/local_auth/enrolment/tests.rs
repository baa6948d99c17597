use secrecy::ExposeSecret as _;

use super::*;
use crate::local_auth::totp::{code_at_step, step_at};

const NOW: u64 = 1_800_000_000;

fn master() -> MasterKey {
    MasterKey::from_hex(&crate::secret::SecretString::from("ab".repeat(32))).unwrap()
}

#[test]
fn a_ticket_opens_to_the_offered_secret_for_its_user_until_it_expires() {
    let key = master();
    let offer = offer(&key, "usr_1", "alice", NOW).unwrap();
    assert_eq!(offer.expires_at, NOW + TICKET_LIFETIME_SECS);
    let opened = open(&key, &offer.ticket, "usr_1", NOW + TICKET_LIFETIME_SECS).unwrap();
    let step = step_at(NOW);
    assert_eq!(
        *code_at_step(&opened, step),
        *code_at_step(&offer.secret, step)
    );
    assert!(matches!(
        open(&key, &offer.ticket, "usr_1", NOW + TICKET_LIFETIME_SECS + 1),
        Err(EnrolmentError::Expired)
    ));
}

#[test]
fn another_users_or_an_altered_ticket_is_refused() {
    let key = master();
    let offer = offer(&key, "usr_1", "alice", NOW).unwrap();
    assert!(matches!(
        open(&key, &offer.ticket, "usr_2", NOW),
        Err(EnrolmentError::Invalid)
    ));
    // A later expiry written over the first 8 bytes does not open.
    let mut raw = URL_SAFE_NO_PAD.decode(&offer.ticket).unwrap();
    raw[..8].copy_from_slice(&(NOW + 86_400).to_be_bytes());
    let stretched = URL_SAFE_NO_PAD.encode(raw);
    assert!(matches!(
        open(&key, &stretched, "usr_1", NOW),
        Err(EnrolmentError::Invalid)
    ));
    for junk in ["", "not base64!", "AAAA"] {
        assert!(matches!(
            open(&key, junk, "usr_1", NOW),
            Err(EnrolmentError::Invalid)
        ));
    }
    let other_key =
        MasterKey::from_hex(&crate::secret::SecretString::from("cd".repeat(32))).unwrap();
    assert!(matches!(
        open(&other_key, &offer.ticket, "usr_1", NOW),
        Err(EnrolmentError::Invalid)
    ));
}

#[test]
fn the_uri_names_the_issuer_and_the_encoded_user() {
    let key = master();
    let offer = offer(&key, "usr_1", "ann marie@x", NOW).unwrap();
    let secret = offer.secret.to_base32();
    assert_eq!(
        offer.otpauth_uri,
        format!(
            "otpauth://totp/Portcullis:ann%20marie%40x?secret={}&issuer=Portcullis\
             &algorithm=SHA1&digits=6&period=30",
            secret.expose_secret()
        )
    );
    assert!(!offer.ticket.contains(secret.expose_secret()));
}
