use secrecy::ExposeSecret as _;

use super::*;

/// RFC 6238 appendix B's SHA-1 seed: the ASCII of "12345678901234567890".
fn rfc_secret() -> TotpSecret {
    TotpSecret(Zeroizing::new(b"12345678901234567890".to_vec()))
}

/// RFC 6238 appendix B, SHA-1 rows: (time, 8-digit TOTP).
const RFC_6238_SHA1: [(u64, u32); 6] = [
    (59, 94_287_082),
    (1_111_111_109, 7_081_804),
    (1_111_111_111, 14_050_471),
    (1_234_567_890, 89_005_924),
    (2_000_000_000, 69_279_037),
    (20_000_000_000, 65_353_130),
];

#[test]
fn codes_match_rfc_6238_sha1_vectors() {
    let secret = rfc_secret();
    for (time, expected) in RFC_6238_SHA1 {
        assert_eq!(hotp(&secret.0, step_at(time), 8), expected, "T = {time}");
        // Six digits are the last six of the eight.
        let six = format!("{:06}", expected % 1_000_000);
        assert_eq!(*code_at_step(&secret, step_at(time)), six, "T = {time}");
        assert_eq!(
            verify(&secret, &six, time, None),
            TotpVerdict::Accepted {
                step: step_at(time)
            }
        );
    }
}

#[test]
fn codes_match_rfc_4226_hotp_vectors() {
    // RFC 4226 appendix D, counters 0 to 9.
    let expected = [
        755_224, 287_082, 359_152, 969_429, 338_314, 254_676, 287_922, 162_583, 399_871, 520_489,
    ];
    for (counter, code) in expected.into_iter().enumerate() {
        assert_eq!(hotp(&rfc_secret().0, counter as u64, 6), code);
    }
}

#[test]
fn one_step_of_skew_either_side_is_accepted_and_no_more() {
    let secret = rfc_secret();
    let now = 1_111_111_111;
    let step = step_at(now);
    for accepted in [step - 1, step, step + 1] {
        assert_eq!(
            verify(&secret, &code_at_step(&secret, accepted), now, None),
            TotpVerdict::Accepted { step: accepted }
        );
    }
    for refused in [step - 2, step + 2] {
        assert_eq!(
            verify(&secret, &code_at_step(&secret, refused), now, None),
            TotpVerdict::Wrong
        );
    }
}

#[test]
fn a_code_is_single_use_per_step() {
    let secret = rfc_secret();
    let now = 1_111_111_111;
    let step = step_at(now);
    let code = code_at_step(&secret, step);
    let TotpVerdict::Accepted { step: used } = verify(&secret, &code, now, None) else {
        panic!("the first use is accepted");
    };
    // The same code again, even a few seconds later in the same step: a replay.
    assert_eq!(
        verify(&secret, &code, now + 5, Some(used)),
        TotpVerdict::Reused { step }
    );
    // The previous step's code is within the skew, but before the used step: refused too.
    assert_eq!(
        verify(&secret, &code_at_step(&secret, step - 1), now, Some(used)),
        TotpVerdict::Reused { step: step - 1 }
    );
    // The next step's code is fresh.
    assert_eq!(
        verify(
            &secret,
            &code_at_step(&secret, step + 1),
            now + 30,
            Some(used)
        ),
        TotpVerdict::Accepted { step: step + 1 }
    );
}

#[test]
fn a_code_used_ahead_refuses_the_current_step() {
    // A code of the next step (the phone's clock is ahead) was used: the current step's code
    // is now older than the last used step and is refused.
    let secret = rfc_secret();
    let now = 1_111_111_111;
    let step = step_at(now);
    assert_eq!(
        verify(&secret, &code_at_step(&secret, step), now, Some(step + 1)),
        TotpVerdict::Reused { step }
    );
}

#[test]
fn malformed_codes_are_wrong() {
    let secret = rfc_secret();
    for code in ["", "12345", "1234567", "12345a", "+12345", "１２３４５６"] {
        assert_eq!(
            verify(&secret, code, 59, None),
            TotpVerdict::Wrong,
            "{code:?}"
        );
    }
    // Spaces, as some apps group the digits, are ignored.
    assert_eq!(
        verify(&secret, "287 082", 59, None),
        TotpVerdict::Accepted { step: 1 }
    );
}

#[test]
fn the_first_steps_do_not_underflow() {
    let secret = rfc_secret();
    assert_eq!(
        verify(&secret, &code_at_step(&secret, 0), 0, None),
        TotpVerdict::Accepted { step: 0 }
    );
}

#[test]
fn generated_secrets_are_20_random_bytes_that_round_trip_through_base32() {
    let a = TotpSecret::generate().unwrap();
    let b = TotpSecret::generate().unwrap();
    assert_eq!(a.0.len(), SECRET_LEN);
    assert_ne!(*a.0, *b.0);
    let text = a.to_base32();
    assert_eq!(
        text.expose_secret().len(),
        32,
        "20 bytes are 32 base32 characters"
    );
    let back = TotpSecret::from_base32(&text.expose_secret().to_lowercase()).unwrap();
    assert_eq!(*back.0, *a.0);
}

#[test]
fn a_stored_secret_that_is_not_base32_or_too_short_is_refused() {
    assert!(matches!(
        TotpSecret::from_base32("not base32!"),
        Err(TotpError::SecretEncoding)
    ));
    assert!(matches!(
        TotpSecret::from_base32("GEZDGNBV"),
        Err(TotpError::SecretTooShort(5))
    ));
}

#[test]
fn the_provisioning_uri_names_the_issuer_and_the_user() {
    let secret = rfc_secret();
    assert_eq!(
        secret.provisioning_uri("alice").expose_secret(),
        "otpauth://totp/Portcullis:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Portcullis"
    );
    // A name cannot add a parameter or change the label.
    let uri = secret.provisioning_uri("bob smith&issuer=Evil:x");
    assert!(
        uri.expose_secret()
            .starts_with("otpauth://totp/Portcullis:bob%20smith%26issuer%3DEvil%3Ax?secret="),
        "{}",
        uri.expose_secret()
    );
}

#[test]
fn no_debug_shows_the_secret() {
    let secret = rfc_secret();
    let shown = format!("{secret:?} {:?}", secret.to_base32());
    assert!(!shown.contains("GEZDGNBV"), "{shown}");
    assert!(!shown.contains("49"), "{shown}");
}

/// Cross-checks the codes with Debian's `oathtool` (package `oathtool`), an independent
/// implementation, when it is installed; otherwise says why it did not run.
#[test]
fn codes_match_oathtool_when_installed() {
    let secret = TotpSecret::generate().unwrap();
    let base32 = secret.to_base32();
    for time in [59u64, 1_111_111_109, 1_700_000_000, 2_000_000_000] {
        let output = match std::process::Command::new("oathtool")
            .args(["--totp", "--base32", "--now"])
            .arg(format!("@{time}"))
            .arg(base32.expose_secret())
            .output()
        {
            Ok(output) => output,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("skipped: oathtool is not installed (apt-get install oathtool)");
                return;
            }
            Err(e) => panic!("cannot run oathtool: {e}"),
        };
        assert!(output.status.success(), "oathtool failed: {output:?}");
        let theirs = String::from_utf8(output.stdout).unwrap();
        assert_eq!(
            theirs.trim(),
            code_at_step(&secret, step_at(time)).as_str(),
            "T = {time}"
        );
    }
}
