#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use portcullis_proto::link::EndReason;
use serde_json::json;

use super::*;
use crate::keys::MasterKey;
use crate::secret::SecretString;
use crate::store::Store;

async fn keyset() -> (Keyset, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("k.db").display());
    let store = Store::connect(&SecretString::from(url), 1).await.unwrap();
    let master = MasterKey::from_hex(&MasterKey::generate_hex().unwrap()).unwrap();
    (Keyset::new(store, master), dir)
}

fn secrets() -> Vec<LeasedSecret> {
    vec![LeasedSecret {
        path: "database/creds/readonly".into(),
        lease_id: "database/creds/readonly/abc".into(),
        lease_duration_secs: 3600,
        data: json!({"username": "v-token-readonly-x1", "password": "A1a-very-secret"}),
    }]
}

#[tokio::test]
async fn sealed_secrets_open_only_for_their_own_session() {
    let (keys, _dir) = keyset().await;
    let row = seal(&keys, "s_1", &secrets(), 100).unwrap();
    assert_eq!(row.paths, ["database/creds/readonly"]);
    assert!(
        !row.sealed.windows(9).any(|w| w == b"A1a-very-"),
        "the password is not in the sealed bytes"
    );
    let opened = open(&keys, &row).unwrap();
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].data["password"], "A1a-very-secret");
    assert_eq!(opened[0].lease_id, "database/creds/readonly/abc");
    // The same bytes in another session's row do not open (associated data).
    let moved = SealedSecrets {
        session_id: "s_2".into(),
        ..row.clone()
    };
    assert!(matches!(open(&keys, &moved), Err(SecretsError::Crypt(_))));
    // Nor under another master key.
    let (other, _dir2) = keyset().await;
    assert!(open(&other, &row).is_err());
    // Debug of the secret names fields, never values.
    let shown = format!("{:?}", opened[0]);
    assert!(
        shown.contains("password") && !shown.contains("A1a"),
        "{shown}"
    );
}

fn session(state: SessionState) -> SessionRecord {
    SessionRecord {
        id: "s_1".into(),
        user_id: "u_alice".into(),
        target_id: "t_db".into(),
        worker_id: "w_1".into(),
        state,
        termination_reason: (state == SessionState::Terminated).then_some(EndReason::Closed),
        client_addr: "127.0.0.1".into(),
        client_key_hash: "h".into(),
        endpoint: "127.0.0.1:5432".into(),
        connection_limit: 0,
        connections_count: 0,
        policy_hash: "p".into(),
        created_at: 100,
        expires_at: 200,
        activated_at: None,
        terminated_at: None,
        ssh_mode: portcullis_policy::SshMode::Certificate,
        parent_session_id: None,
    }
}

#[test]
fn only_the_sessions_own_user_reads_and_only_while_it_lives() {
    let live = session(SessionState::Active);
    assert!(may_read(&live, "u_alice", 150).is_ok());
    assert!(may_read(&session(SessionState::Pending), "u_alice", 150).is_ok());
    // Anyone else, admins included (the caller's permissions are not even asked).
    assert!(matches!(
        may_read(&live, "u_admin", 150),
        Err(SecretsError::NotOwner(_))
    ));
    let ended = may_read(&session(SessionState::Terminated), "u_alice", 150).unwrap_err();
    assert!(matches!(ended, SecretsError::Ended { .. }));
    assert!(ended.to_string().contains("closed"), "{ended}");
    // Past its expiry, before the sweeper ended it: ended all the same.
    assert!(matches!(
        may_read(&live, "u_alice", 200),
        Err(SecretsError::Ended { .. })
    ));
    assert!(matches!(
        may_read(&session(SessionState::Minting), "u_alice", 150),
        Err(SecretsError::Minting(_))
    ));
}
