use super::*;

#[test]
fn every_reason_round_trips_through_its_text_and_serde() {
    for &reason in EndReason::ALL {
        let text = reason.as_str();
        assert_eq!(text.parse::<EndReason>(), Ok(reason));
        assert_eq!(reason.to_string(), text);
        // The serde form is the same string: stored rows and frames keep their bytes.
        let json = serde_json::to_string(&reason).unwrap();
        assert_eq!(json, format!("\"{text}\""));
        assert_eq!(serde_json::from_str::<EndReason>(&json).unwrap(), reason);
    }
}

#[test]
fn the_texts_are_the_ones_already_stored_and_sent() {
    let texts: Vec<&str> = EndReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        texts,
        [
            "closed",
            "expired",
            "canceled",
            "connection_limit",
            "worker_lost",
            "worker_deleted",
            "policy_changed",
            "shutdown",
            "logout",
            "user_revoked",
            "controller_unreachable",
            "target_unreachable",
            "credential_mint_failed",
            "credential_mint_abandoned",
            "idle",
            "terminated",
            "unknown_session",
        ]
    );
}

#[test]
fn an_unknown_reason_is_refused_with_its_text_and_the_known_ones() {
    let err = "gone_fishing\n".parse::<EndReason>().unwrap_err();
    assert_eq!(err, UnknownEndReason("gone_fishing\n".into()));
    let message = err.to_string();
    assert!(message.contains(r#""gone_fishing\n""#), "{message}");
    assert!(message.contains("closed, expired, canceled"), "{message}");
    // Case and spelling are exact: the stored text is the only form.
    assert!("Expired".parse::<EndReason>().is_err());
    assert!("".parse::<EndReason>().is_err());
    let serde_err = serde_json::from_str::<EndReason>(r#""gone_fishing""#).unwrap_err();
    assert!(
        serde_err.to_string().contains("gone_fishing"),
        "{serde_err}"
    );
}

#[test]
fn every_reason_is_explained_in_the_audit_documentation() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/audit.md");
    let doc = std::fs::read_to_string(path).unwrap();
    for reason in EndReason::ALL {
        let row = format!("| `{reason}` |");
        assert!(doc.contains(&row), "docs/audit.md has no row {row}");
    }
}
