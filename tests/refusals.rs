//! The worker refuses every grant that is not exactly right, with a reason, never a hang.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use common::dev::{curl, Dev};
use common::raw::{present, present_hello, Auth, ClientKey};
use portcullis_proto::grant::{self, GrantClaims, GRANT_ISSUER};
use portcullis_proto::proxy::{RefusalCode, WorkerReply};

struct Fixture {
    dev: Dev,
    worker_id: String,
    worker_addr: String,
    fingerprint: String,
    grant_kid: String,
    grant_pkcs8: Vec<u8>,
    echo: String,
}

fn fixture() -> Fixture {
    let dev = Dev::start(&[]);
    let worker_id = dev.ready["worker_id"].as_str().unwrap().to_owned();
    let (code, text) = curl(
        &dev,
        "GET",
        &format!("/v1/workers/{worker_id}"),
        Some(&dev.var("PORTCULLIS_TOKEN")),
        None,
    );
    assert_eq!(code, 200, "{text}");
    let worker: serde_json::Value = serde_json::from_str(&text).unwrap();
    // The controller's real grant key, read from the dev store with the dev master key.
    let state = dev.state_dir.clone();
    let (kid, pkcs8) = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async move {
            use portcullis_controller::secret::{ExposeSecret as _, SecretString};
            use portcullis_controller::{Keyset, MasterKey, Purpose};
            let store = portcullis_controller::Store::connect(
                &SecretString::from(format!(
                    "sqlite://{}",
                    state.join("portcullis.db").display()
                )),
                1,
            )
            .await
            .unwrap();
            let keys = Keyset::new(
                store,
                MasterKey::from_file(&state.join("master.key")).unwrap(),
            );
            let key = keys.active(Purpose::Grant).await.unwrap();
            (key.id, key.pkcs8.expose_secret().to_vec())
        });
    Fixture {
        worker_id,
        worker_addr: dev.ready["proxy"].as_str().unwrap().to_owned(),
        fingerprint: worker["key_fingerprint"].as_str().unwrap().to_owned(),
        grant_kid: kid,
        grant_pkcs8: pkcs8,
        echo: dev.ready["echo"].as_str().unwrap().to_owned(),
        dev,
    }
}

impl Fixture {
    fn claims(&self, client: &ClientKey) -> GrantClaims {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        GrantClaims {
            iss: GRANT_ISSUER.into(),
            aud: GrantClaims::audience_for(&self.worker_id),
            sub: "u_test".into(),
            sid: "s_000000000000000000000000".into(),
            tid: "t_test".into(),
            ckh: client.fingerprint(),
            src: "127.0.0.1".into(),
            dst: self.echo.clone(),
            lim: 0,
            iat: now,
            exp: now + 600,
            gw: None,
            pve: None,
        }
    }

    fn sign(&self, claims: &GrantClaims) -> String {
        grant::sign(claims, &self.grant_kid, &self.grant_pkcs8).unwrap()
    }

    fn refusal(&self, auth: Auth<'_>, grant: &str) -> (RefusalCode, String) {
        match present(&self.worker_addr, &self.fingerprint, auth, grant) {
            Ok((WorkerReply::Refused { code, reason }, _)) => (code, reason),
            Ok((other, _)) => panic!("expected a refusal, got {other:?}"),
            Err(e) => panic!("expected a refusal frame, got an error: {e}"),
        }
    }
}

#[test]
fn crafted_grants_are_refused_each_with_its_reason() {
    let f = fixture();
    let client = ClientKey::generate();

    // Signed by another key under the real key id.
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let forged = grant::sign(&f.claims(&client), &f.grant_kid, &other.serialize_der()).unwrap();
    let (code, reason) = f.refusal(Auth::Key(&client), &forged);
    assert_eq!(code, RefusalCode::InvalidGrant, "{reason}");
    assert!(reason.contains("signature"), "{reason}");

    // Signed by an unknown key id.
    let unknown = grant::sign(&f.claims(&client), "k_unknown", &other.serialize_der()).unwrap();
    assert_eq!(
        f.refusal(Auth::Key(&client), &unknown).0,
        RefusalCode::InvalidGrant
    );

    // Expired.
    let mut c = f.claims(&client);
    c.exp = c.iat - 1;
    assert_eq!(
        f.refusal(Auth::Key(&client), &f.sign(&c)).0,
        RefusalCode::ExpiredGrant
    );

    // For another worker.
    let mut c = f.claims(&client);
    c.aud = GrantClaims::audience_for("w_000000000000000000000000");
    assert_eq!(
        f.refusal(Auth::Key(&client), &f.sign(&c)).0,
        RefusalCode::WrongWorker
    );

    // From another source address.
    let mut c = f.claims(&client);
    c.src = "10.9.9.9".into();
    let (code, reason) = f.refusal(Auth::Key(&client), &f.sign(&c));
    assert_eq!(code, RefusalCode::WrongSource, "{reason}");

    // A valid grant with a certificate for a different key.
    let stranger = ClientKey::generate();
    let valid = f.sign(&f.claims(&client));
    assert_eq!(
        f.refusal(Auth::Key(&stranger), &valid).0,
        RefusalCode::WrongClientKey
    );

    // Garbage instead of a grant.
    assert_eq!(
        f.refusal(Auth::Key(&client), "not.a.grant").0,
        RefusalCode::InvalidGrant
    );
    drop(f.dev);
}

#[test]
fn a_valid_grant_without_its_client_key_fails_the_handshake() {
    let f = fixture();
    let client = ClientKey::generate();
    let valid = f.sign(&f.claims(&client));
    // No client certificate at all: the handshake itself is refused.
    let Err(err) = present(&f.worker_addr, &f.fingerprint, Auth::None, &valid) else {
        panic!("a connection without a client certificate got a reply");
    };
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // The right certificate, but the client cannot sign with its key: the worker verifies the
    // handshake signature and refuses.
    let impostor = ClientKey::generate();
    let Err(err) = present(
        &f.worker_addr,
        &f.fingerprint,
        Auth::Forged {
            cert_of: &client,
            signer: &impostor,
        },
        &valid,
    ) else {
        panic!("a client without the certificate's private key got a reply");
    };
    // The worker checks the handshake signature against the certificate and aborts with
    // decrypt_error (RFC 8446, 4.4.3), which the client reads as the worker's alert.
    assert!(err.contains("received fatal alert: DecryptError"), "{err}");
    // And the genuine holder of the key gets through, to a session the controller does not
    // know, which the controller refuses online.
    let (code, reason) = f.refusal(Auth::Key(&client), &valid);
    assert_eq!(code, RefusalCode::SessionEnded, "{reason}");
    assert!(reason.contains("unknown session"), "{reason}");
}

#[test]
fn an_unknown_protocol_version_is_refused_with_its_own_code() {
    let f = fixture();
    let client = ClientKey::generate();
    let valid = f.sign(&f.claims(&client));
    for version in [0u64, 2, 999, u64::from(u32::MAX)] {
        let hello = serde_json::json!({"protocol_version": version, "grant": valid});
        let (reply, _) = present_hello(&f.worker_addr, &f.fingerprint, Auth::Key(&client), &hello)
            .unwrap_or_else(|e| panic!("version {version}: no reply: {e}"));
        assert_eq!(reply["status"], "refused", "version {version}: {reply}");
        assert_eq!(
            reply["code"], "unsupported_version",
            "version {version}: {reply}"
        );
        let reason = reply["reason"].as_str().unwrap();
        assert!(reason.contains(&version.to_string()), "{reason}");
    }
    // The version this release speaks gets past the version check (to the controller, which
    // does not know the session).
    let hello =
        serde_json::json!({"protocol_version": portcullis_proto::PROTOCOL_VERSION, "grant": valid});
    let (reply, _) =
        present_hello(&f.worker_addr, &f.fingerprint, Auth::Key(&client), &hello).unwrap();
    assert_eq!(reply["code"], "session_ended", "{reply}");
    drop(f.dev);
}
