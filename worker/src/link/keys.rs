//! Learning a grant key on demand. The controllers hand workers the grant-verification keys
//! with every heartbeat's answer; after `controller keys rotate grant` a controller signs
//! with the new key at once, so a client may bring a grant signed by a key this worker has
//! not heard of yet. Rather than refuse it until the next heartbeat, the worker asks for a
//! sync at once and then checks the grant as usual (an unknown key is still refused).
//!
//! At most one such sync is in flight, and at most one starts per [`MIN_INTERVAL`]: grants
//! naming made-up key ids cost a client a refusal, never a flood of requests to the
//! controllers.

use std::time::Duration;

use portcullis_proto::link::Response;

use super::protocol;
use crate::Shared;

/// The least time between two on-demand syncs.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// How long a connection waits for the sync's answer.
const SYNC_TIMEOUT: Duration = Duration::from_secs(2);

/// Makes sure the worker has heard of the key that signed `grant`, if a controller knows it:
/// when the key id is not among the keys heard, asks a linked controller for a sync (unless
/// one started less than [`MIN_INTERVAL`] ago) and applies its answer. Never fails: the
/// grant's check that follows says what is wrong.
pub async fn learn_grant_key(shared: &Shared, grant: &str) {
    let Some(kid) = portcullis_proto::grant::key_id(grant) else {
        return;
    };
    let known = || shared.table.knows_key(&kid);
    if known() {
        return;
    }
    let mut last = shared.link.key_sync.lock().await;
    // The sync another connection waited for may have brought it.
    if known() {
        return;
    }
    let now = shared.clock.instant();
    if last.is_some_and(|at| now.saturating_duration_since(at) < MIN_INTERVAL) {
        return;
    }
    *last = Some(now);
    let asked = shared
        .link
        .request(protocol::heartbeat(shared), SYNC_TIMEOUT)
        .await;
    match asked {
        Ok(Response::Sync(sync)) => {
            protocol::apply_sync(shared, sync);
            tracing::info!(
                key = %kid,
                learned = known(),
                "a grant named a key not heard of yet: asked the controller for its keys"
            );
        }
        Ok(other) => {
            tracing::warn!(answer = ?other, "the controller answered a key sync without its keys")
        }
        Err(error) => {
            tracing::info!(%error, "could not ask a controller for the grant keys")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use portcullis_proto::grant::GrantKey;
    use portcullis_proto::link::{Request, Sync};

    use super::*;

    /// A grant-shaped token whose header names `kid` (the signature is not looked at).
    fn grant_by(kid: &str) -> String {
        let header = serde_json::json!({ "alg": "EdDSA", "typ": "JWT", "kid": kid });
        let b64 = |v: &[u8]| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
        };
        format!("{}.{}.sig", b64(header.to_string().as_bytes()), b64(b"{}"))
    }

    fn key(kid: &str) -> GrantKey {
        GrantKey {
            kid: kid.to_owned(),
            public_key: "AAAA".to_owned(),
        }
    }

    fn sync_with(kids: &[&str]) -> Response {
        Response::Sync(Sync {
            grant_keys: kids.iter().map(|k| key(k)).collect(),
            ended: Vec::new(),
            heartbeat_ms: 1000,
            controller_id: "c".to_owned(),
            tls_ca: None,
        })
    }

    #[tokio::test]
    async fn an_unknown_key_id_asks_for_a_sync_once_per_interval_and_a_known_one_never() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Shared::for_tests(dir.path());
        shared.table.heard(vec![key("k_old")]);
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = asked.clone();
        let _link = shared.link.fake_link(move |request| {
            assert!(matches!(request, Request::Heartbeat { .. }), "{request:?}");
            counter.fetch_add(1, Ordering::SeqCst);
            sync_with(&["k_old", "k_new"])
        });

        // A key heard already: nothing asked.
        learn_grant_key(&shared, &grant_by("k_old")).await;
        assert_eq!(asked.load(Ordering::SeqCst), 0);

        // The rotated key: one sync, and the worker knows it.
        learn_grant_key(&shared, &grant_by("k_new")).await;
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        assert!(shared.table.keys().iter().any(|k| k.kid == "k_new"));

        // Made-up key ids, many at once: at most one more sync within the interval.
        let made_up: Vec<_> = (0..20).map(|i| grant_by(&format!("k_bogus{i}"))).collect();
        futures_util::future::join_all(made_up.iter().map(|g| learn_grant_key(&shared, g))).await;
        assert_eq!(
            asked.load(Ordering::SeqCst),
            1,
            "the last sync was just now"
        );

        // Not a JWS at all: nothing asked.
        learn_grant_key(&shared, "not a token").await;
        assert_eq!(asked.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn without_a_link_an_unknown_key_is_left_to_the_grants_check() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Shared::for_tests(dir.path());
        learn_grant_key(&shared, &grant_by("k_new")).await;
        assert!(shared.table.keys().is_empty());
    }
}
