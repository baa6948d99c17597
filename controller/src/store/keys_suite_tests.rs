//! The store suite for the keyset (as `suite_tests.rs`): the TLS CA's rotation with an
//! overlap, rotation and retirement of the other purposes, a keyset that gets a purpose
//! added later, and the clock the keyset reads.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use super::suite_tests::backends;
use crate::keys::{Keyset, MasterKey, Purpose};
use crate::secret::ExposeSecret as _;
use crate::store;

#[tokio::test]
async fn the_tls_ca_rotates_with_an_overlap_next_then_active_then_retired() {
    for b in backends().await {
        let master = MasterKey::generate_hex().unwrap();
        let keys = Keyset::new(b.store.clone(), MasterKey::from_hex(&master).unwrap());
        keys.ensure().await.unwrap();
        let old = keys.certificate_authority().await.unwrap();
        let before = keys.ca_bundle().await.unwrap();
        assert_eq!(before.certificates.len(), 1, "{}", b.name);
        // Rotate: the new CA is trusted (in the bundle) but the old one still signs.
        let new_id = keys.rotate(Purpose::TlsCa).await.unwrap();
        let overlap = keys.ca_bundle().await.unwrap();
        assert_eq!(overlap.signing_key_id, old.key_id, "{}", b.name);
        assert_eq!(overlap.certificates.len(), 2);
        assert_eq!(overlap.certificates[0], before.certificates[0]);
        assert_ne!(overlap.digest(), before.digest());
        assert_eq!(
            keys.certificate_authority().await.unwrap().key_id,
            old.key_id
        );
        let again = keys.rotate(Purpose::TlsCa).await.unwrap_err().to_string();
        assert!(again.contains("keys activate"), "{again}");
        assert!(
            keys.retire(&new_id).await.is_err(),
            "a next CA is not retired"
        );
        // Activate: the new CA signs and leads the bundle; the old one stays in it.
        keys.activate(&new_id).await.unwrap();
        let active = keys.ca_bundle().await.unwrap();
        assert_eq!(active.signing_key_id, new_id);
        assert_eq!(active.certificates.len(), 2);
        assert_eq!(active.certificates[1], before.certificates[0]);
        assert_eq!(keys.certificate_authority().await.unwrap().key_id, new_id);
        assert!(keys.activate(&new_id).await.is_err(), "already active");
        assert!(keys.activate(&old.key_id).await.is_err(), "previous");
        // Retire the old CA: it leaves the bundle.
        keys.retire(&old.key_id).await.unwrap();
        let after = keys.ca_bundle().await.unwrap();
        assert_eq!(after.certificates, vec![active.certificates[0].clone()]);
        let mut conn = b.store.conn().await.unwrap();
        let events = store::audit::after(&mut conn, 0, 100).await.unwrap();
        for (kind, key) in [
            ("key_rotated", &new_id),
            ("key_activated", &new_id),
            ("key_retired", &old.key_id),
        ] {
            assert!(
                events
                    .iter()
                    .any(|(_, body)| body.contains(&format!("\"{kind}\""))
                        && body.contains(key.as_str())),
                "{}: no {kind} event for {key}",
                b.name
            );
        }
    }
}

/// The algorithm the keyset lists for key `id`.
async fn algorithm_of(keys: &Keyset, id: &str) -> String {
    let rows = keys.list().await.unwrap();
    rows.into_iter().find(|k| k.id == id).unwrap().algorithm
}

#[tokio::test]
async fn a_new_tls_ca_is_ecdsa_p256_and_the_other_keys_ed25519() {
    for b in backends().await {
        let keys = Keyset::new(
            b.store.clone(),
            MasterKey::from_hex(&MasterKey::generate_hex().unwrap()).unwrap(),
        );
        keys.ensure().await.unwrap();
        let ca = keys.certificate_authority().await.unwrap();
        assert_eq!(ca.algorithm.as_str(), "ecdsa-p256", "{}", b.name);
        for row in keys.list().await.unwrap() {
            let expected = match row.purpose.as_str() {
                "tls-ca" => "ecdsa-p256",
                "recording" => "aes-256-gcm",
                _ => "ed25519",
            };
            assert_eq!(row.algorithm, expected, "{}: {}", b.name, row.purpose);
        }
    }
}

#[tokio::test]
async fn an_ed25519_tls_ca_keeps_signing_until_a_p256_one_rotated_in_is_activated() {
    for b in backends().await {
        let master = MasterKey::generate_hex().unwrap();
        // A keyset as releases before P-256 made it.
        Keyset::new(b.store.clone(), MasterKey::from_hex(&master).unwrap())
            .with_legacy_ed25519_tls_ca()
            .ensure()
            .await
            .unwrap();
        // Today's keyset on that store: the Ed25519 CA loads (its algorithm read from its
        // key) and issues.
        let keys = Keyset::new(b.store.clone(), MasterKey::from_hex(&master).unwrap());
        keys.ensure().await.unwrap();
        let old = keys.certificate_authority().await.unwrap();
        assert_eq!(old.algorithm.as_str(), "ed25519", "{}", b.name);
        assert_eq!(algorithm_of(&keys, &old.key_id).await, "ed25519");
        let names = ["localhost".to_owned()];
        let (chain, _) = old
            .issue_server_identity(&names, std::time::Duration::from_secs(60))
            .unwrap();
        portcullis_crypto::tls::verify::chains_to(
            &chain[0],
            &old.cert_der,
            portcullis_crypto::tls::verify::Usage::ServerAuth,
            rustls_pki_types::UnixTime::now(),
        )
        .unwrap();
        // Its rotation makes a P-256 next CA, which signs once activated.
        let new_id = keys.rotate(Purpose::TlsCa).await.unwrap();
        assert_eq!(
            algorithm_of(&keys, &new_id).await,
            "ecdsa-p256",
            "{}",
            b.name
        );
        assert_eq!(
            keys.certificate_authority().await.unwrap().key_id,
            old.key_id
        );
        keys.activate(&new_id).await.unwrap();
        let new = keys.certificate_authority().await.unwrap();
        assert_eq!(new.key_id, new_id);
        assert_eq!(new.algorithm.as_str(), "ecdsa-p256");
        // Both stay in the bundle until the Ed25519 one is retired.
        assert_eq!(keys.ca_bundle().await.unwrap().certificates.len(), 2);
        keys.retire(&old.key_id).await.unwrap();
        assert_eq!(
            keys.ca_bundle().await.unwrap().certificates,
            vec![new.cert_pem.trim_end().to_owned() + "\n"]
        );
    }
}

#[tokio::test]
async fn keyset_rotation_keeps_previous_keys_until_retired() {
    for b in backends().await {
        let master = MasterKey::generate_hex().unwrap();
        let keys = Keyset::new(b.store.clone(), MasterKey::from_hex(&master).unwrap());
        keys.ensure().await.unwrap();
        keys.ensure().await.unwrap(); // idempotent
        let first = keys.active(Purpose::Grant).await.unwrap();
        let second_id = keys.rotate(Purpose::Grant).await.unwrap();
        assert_ne!(first.id, second_id);
        assert_eq!(
            keys.active(Purpose::Grant).await.unwrap().id,
            second_id,
            "{}",
            b.name
        );
        let accepted: Vec<String> = keys
            .verification_keys(Purpose::Grant)
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.id)
            .collect();
        assert!(
            accepted.contains(&first.id) && accepted.contains(&second_id),
            "{accepted:?}"
        );
        assert!(
            keys.retire(&second_id).await.is_err(),
            "the active key cannot be retired"
        );
        keys.retire(&first.id).await.unwrap();
        let accepted: Vec<String> = keys
            .verification_keys(Purpose::Grant)
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.id)
            .collect();
        assert_eq!(accepted, vec![second_id.clone()]);
        // A keyset sealed under one master key does not open under another.
        let other = Keyset::new(
            b.store.clone(),
            MasterKey::from_hex(&MasterKey::generate_hex().unwrap()).unwrap(),
        );
        assert!(
            other.ensure().await.is_err(),
            "{}: wrong master key accepted",
            b.name
        );
        // Private keys are sealed: the stored bytes are not the PKCS#8 key.
        let active = keys.active(Purpose::Grant).await.unwrap();
        let mut conn = b.store.conn().await.unwrap();
        let rows = store::keys::usable(&mut conn, "grant").await.unwrap();
        assert_eq!(rows.len(), 1);
        let private = active.pkcs8.expose_secret();
        assert!(!rows[0]
            .sealed_private
            .windows(16)
            .any(|w| private.windows(16).any(|x| x == w)));
    }
}

#[tokio::test]
async fn a_keyset_made_before_the_ssh_host_ca_gets_one_at_its_next_start() {
    for b in backends().await {
        let master = MasterKey::generate_hex().unwrap();
        let keys = Keyset::new(b.store.clone(), MasterKey::from_hex(&master).unwrap());
        keys.ensure().await.unwrap();
        let host_ca = keys.active(Purpose::SshHostCa).await.unwrap();
        let user_ca = keys.active(Purpose::SshCa).await.unwrap();
        assert_ne!(host_ca.public_key, user_ca.public_key, "{}", b.name);
        // A store from before the purpose existed: no ssh-host-ca row.
        let mut conn = b.store.conn().await.unwrap();
        sqlx::query("DELETE FROM keys WHERE purpose = 'ssh-host-ca'")
            .execute(&mut *conn)
            .await
            .unwrap();
        drop(conn);
        let restarted = Keyset::new(b.store.clone(), MasterKey::from_hex(&master).unwrap());
        assert!(
            restarted.active(Purpose::SshHostCa).await.is_err(),
            "{}",
            b.name
        );
        restarted.ensure().await.unwrap();
        let created = restarted.active(Purpose::SshHostCa).await.unwrap();
        assert_ne!(created.id, host_ca.id);
        // The other keys stay; the new one is created with its event.
        assert_eq!(
            restarted.active(Purpose::SshCa).await.unwrap().id,
            user_ca.id
        );
        let mut conn = b.store.conn().await.unwrap();
        let events = store::audit::after(&mut conn, 0, 100).await.unwrap();
        let created_events = events
            .iter()
            .filter(|(_, body)| body.contains("key_created") && body.contains(&created.id))
            .count();
        assert_eq!(created_events, 1, "{}", b.name);
        assert_eq!(Purpose::parse("ssh-host-ca"), Some(Purpose::SshHostCa));
    }
}

#[tokio::test]
async fn the_keyset_and_the_events_it_signs_read_the_clock_they_are_given() {
    use crate::clock::SharedClock;
    use portcullis_proto::clock::ManualClock;
    for b in backends().await {
        // 2001-09-09T01:46:40Z, then a minute later: far from the machine's own time.
        let clock = std::sync::Arc::new(ManualClock::at_unix(1_000_000_000));
        let shared: SharedClock = clock.clone();
        let master = MasterKey::generate_hex().unwrap();
        let keys =
            Keyset::new(b.store.clone(), MasterKey::from_hex(&master).unwrap()).with_clock(shared);
        keys.ensure().await.unwrap();
        clock.advance(std::time::Duration::from_secs(60));
        let rotated = keys.rotate(Purpose::Grant).await.unwrap();
        let mut conn = b.store.conn().await.unwrap();
        for key in store::keys::list(&mut conn).await.unwrap() {
            let expected = if key.id == rotated {
                1_000_000_060
            } else {
                1_000_000_000
            };
            assert_eq!(key.created_at, expected, "{}: key {}", b.name, key.purpose);
        }
        let events = store::audit::after(&mut conn, 0, 100).await.unwrap();
        let times: Vec<String> = events
            .iter()
            .map(|(_, body)| {
                let body: serde_json::Value = serde_json::from_str(body).unwrap();
                body["time"].as_str().unwrap().to_owned()
            })
            .collect();
        let (last, first) = times.split_last().unwrap();
        assert!(
            first.iter().all(|t| t == "2001-09-09T01:46:40.000Z"),
            "{}: {times:?}",
            b.name
        );
        assert_eq!(last, "2001-09-09T01:47:40.000Z", "{}", b.name);
    }
}
