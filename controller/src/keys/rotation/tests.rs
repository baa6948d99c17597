use super::*;

#[test]
fn only_the_tls_ca_waits_as_next() {
    assert_eq!(rotated_state(Purpose::TlsCa), NEXT);
    for purpose in Purpose::ALL.into_iter().filter(|p| *p != Purpose::TlsCa) {
        assert_eq!(rotated_state(purpose), ACTIVE, "{purpose:?}");
    }
}

#[test]
fn a_second_tls_ca_rotation_waits_for_the_first_activation() {
    assert!(may_rotate(Purpose::TlsCa, &[ACTIVE]).is_ok());
    assert!(may_rotate(Purpose::TlsCa, &[ACTIVE, "previous"]).is_ok());
    let refused = may_rotate(Purpose::TlsCa, &[NEXT, ACTIVE]).unwrap_err();
    assert!(refused.contains("keys activate"), "{refused}");
    // Other purposes have no next key: nothing to wait for.
    assert!(may_rotate(Purpose::Grant, &[ACTIVE, "previous"]).is_ok());
}

#[test]
fn only_a_next_key_is_activated() {
    assert!(may_activate("k_2", Some(NEXT)).is_ok());
    assert!(may_activate("k_1", Some(ACTIVE))
        .unwrap_err()
        .contains("already active"));
    assert!(may_activate("k_0", Some("previous"))
        .unwrap_err()
        .contains("not next"));
    assert!(may_activate("k_0", Some("retired"))
        .unwrap_err()
        .contains("not next"));
    assert!(may_activate("k_9", None)
        .unwrap_err()
        .contains("no key k_9"));
}

#[test]
fn the_bundle_leads_with_the_signing_ca_and_keeps_the_others() {
    let bundle = bundle([(NEXT, "NEW"), (ACTIVE, "OLD\n"), ("previous", "OLDER")]);
    assert_eq!(bundle, ["OLD\n", "NEW\n", "OLDER\n"]);
    assert!(super::bundle([]).is_empty());
}
