use super::*;
use crate::secret::SecretString;
use crate::store::connections::{connections, COLUMNS as CONN_COLUMNS};
use crate::store::{Store, StoreError};

#[test]
fn every_state_round_trips_through_its_stored_text() {
    let texts: Vec<&str> = SessionState::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(texts, ["minting", "pending", "active", "terminated"]);
    for &state in SessionState::ALL {
        assert_eq!(state.as_str().parse::<SessionState>(), Ok(state));
        assert_eq!(state.to_string(), state.as_str());
        assert_eq!(state.is_live(), state != SessionState::Terminated);
    }
}

#[test]
fn an_unknown_state_is_refused_with_its_text() {
    let err = "hovering".parse::<SessionState>().unwrap_err();
    assert_eq!(
        err.to_string(),
        r#""hovering" is not a session state (minting, pending, active or terminated)"#
    );
    assert!("Active".parse::<SessionState>().is_err());
}

/// A store holding one session `s_1` (and its connection `c_1`) whose state, termination
/// reason and close reason are written as given, as another version or a hand edit might.
async fn store_with(state: &str, reason: Option<&str>, close: &str) -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::connect(&SecretString::from(url), 1).await.unwrap();
    store.migrate().await.unwrap();
    let mut conn = store.conn().await.unwrap();
    // The session's user need not exist for what is tested here.
    sqlx::query("PRAGMA foreign_keys = OFF")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query(&format!(
        "INSERT INTO sessions ({COLUMNS}) VALUES ('s_1', 'u_1', 't_1', 'w_1', $1, $2, \
         '127.0.0.1', 'h', '10.0.0.1:22', 0, 1, 'p', 100, 200, 110, NULL, NULL, NULL)"
    ))
    .bind(state)
    .bind(reason)
    .execute(&mut *conn)
    .await
    .unwrap();
    sqlx::query(&format!(
        "INSERT INTO connections ({CONN_COLUMNS}) VALUES ('c_1', 's_1', 'w_1', '127.0.0.1', \
         'closed', 1, 2, 110, 120, $1)"
    ))
    .bind(close)
    .execute(&mut *conn)
    .await
    .unwrap();
    drop(conn);
    (store, dir)
}

fn corrupt(result: Result<impl std::fmt::Debug>) -> String {
    match result {
        Err(StoreError::Corrupt(message)) => message,
        other => panic!("expected a corrupt-row error, got {other:?}"),
    }
}

#[tokio::test]
async fn stored_states_and_reasons_read_back_as_their_variants() {
    let (store, _dir) =
        store_with("terminated", Some("user_revoked"), "controller_unreachable").await;
    let mut conn = store.conn().await.unwrap();
    let s = get(&mut conn, "s_1").await.unwrap().unwrap();
    assert_eq!(s.state, SessionState::Terminated);
    assert_eq!(s.termination_reason, Some(EndReason::UserRevoked));
    let c = connections(&mut conn, "s_1").await.unwrap();
    assert_eq!(c[0].close_reason, Some(EndReason::ControllerUnreachable));
    let found = states(&mut conn, &["s_1".into()]).await.unwrap();
    assert_eq!(
        found,
        [(
            "s_1".to_string(),
            SessionState::Terminated,
            Some(EndReason::UserRevoked)
        )]
    );
}

#[tokio::test]
async fn a_stored_row_with_an_unknown_state_is_corrupt() {
    let (store, _dir) = store_with("hovering", None, "closed").await;
    let mut conn = store.conn().await.unwrap();
    let message = corrupt(get(&mut conn, "s_1").await);
    assert!(
        message.contains(r#"sessions.state of "s_1": "hovering" is not a session state"#),
        "{message}"
    );
    corrupt(list(&mut conn, None, 10).await);
    corrupt(states(&mut conn, &["s_1".into()]).await);
}

#[tokio::test]
async fn a_stored_row_with_an_unknown_reason_is_corrupt() {
    let (store, _dir) = store_with("terminated", Some("gone_fishing"), "closed").await;
    let mut conn = store.conn().await.unwrap();
    let message = corrupt(get(&mut conn, "s_1").await);
    assert!(
        message.contains(r#"sessions.termination_reason of "s_1": "gone_fishing""#),
        "{message}"
    );
    let (store, _dir) = store_with("active", None, "gone_fishing").await;
    let mut conn = store.conn().await.unwrap();
    let message = corrupt(connections(&mut conn, "s_1").await);
    assert!(
        message.contains(r#"connections.close_reason of "c_1""#),
        "{message}"
    );
}

#[tokio::test]
async fn the_ssh_mode_reads_back_null_as_certificate_and_refuses_an_unknown_mode() {
    use portcullis_policy::SshMode;
    let (store, _dir) = store_with("active", None, "closed").await;
    let mut conn = store.conn().await.unwrap();
    assert_eq!(
        get(&mut conn, "s_1").await.unwrap().unwrap().ssh_mode,
        SshMode::Certificate
    );
    for (text, mode) in [
        ("gateway", SshMode::Gateway),
        ("certificate", SshMode::Certificate),
    ] {
        sqlx::query("UPDATE sessions SET ssh_mode = $1")
            .bind(text)
            .execute(&mut *conn)
            .await
            .unwrap();
        assert_eq!(get(&mut conn, "s_1").await.unwrap().unwrap().ssh_mode, mode);
    }
    sqlx::query("UPDATE sessions SET ssh_mode = 'telepathy'")
        .execute(&mut *conn)
        .await
        .unwrap();
    let message = corrupt(get(&mut conn, "s_1").await);
    assert!(
        message.contains(r#"sessions.ssh_mode of "s_1": "telepathy""#),
        "{message}"
    );
}
