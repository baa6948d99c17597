use super::*;

const OFF: RecordingRule = RecordingRule {
    required: false,
    input: false,
};
const REQUIRED: RecordingRule = RecordingRule {
    required: true,
    input: false,
};
const WITH_INPUT: RecordingRule = RecordingRule {
    required: true,
    input: true,
};

fn zone(rule: RecordingRule, unrecorded_fallback: bool) -> ZoneRecording {
    ZoneRecording {
        rule,
        unrecorded_fallback,
    }
}

#[test]
fn the_default_records_nothing_and_would_close_the_channel() {
    let r = Recording::default();
    assert!(!r.required && !r.input);
    assert_eq!(r.fallback, Fallback::CloseChannel);
    assert_eq!(Recording::for_zone(&ZoneRecording::default()), r);
    assert_eq!(r.describe(), "not required");
    // An older decision without the field reads as the default.
    let parsed: Recording = toml::from_str("").unwrap();
    assert_eq!(parsed, r);
}

#[test]
fn the_zone_or_any_role_requires_it_and_no_role_waives_it() {
    let by_zone = Recording::for_zone(&zone(REQUIRED, false));
    assert!(by_zone.required);
    assert_eq!(by_zone.with_role(&OFF), by_zone, "a role that says nothing");
    let by_role = Recording::for_zone(&zone(OFF, false)).with_role(&REQUIRED);
    assert!(by_role.required && !by_role.input);
    assert_eq!(by_role.fallback, Fallback::CloseChannel);
    // Order does not matter and a later role that requires nothing undoes nothing.
    assert_eq!(by_role.with_role(&OFF), by_role);
}

#[test]
fn input_is_captured_only_when_a_requiring_place_asks_for_it() {
    let zone_only = Recording::for_zone(&zone(REQUIRED, false));
    assert!(!zone_only.input);
    assert!(
        zone_only.with_role(&WITH_INPUT).input,
        "a requiring role asks"
    );
    assert!(Recording::for_zone(&zone(WITH_INPUT, false)).input);
    // A rule with input but no requirement (the compiler refuses it) captures nothing.
    let not_required = RecordingRule {
        required: false,
        input: true,
    };
    let r = Recording::for_zone(&zone(not_required, false)).with_role(&not_required);
    assert_eq!(r, Recording::default());
    // A role asking for input cannot turn it off again: the union wins.
    assert!(
        Recording::for_zone(&zone(WITH_INPUT, false))
            .with_role(&REQUIRED)
            .input
    );
}

#[test]
fn going_on_unrecorded_comes_only_from_the_zone_and_only_for_its_own_requirement() {
    let opted_in = Recording::for_zone(&zone(REQUIRED, true));
    assert_eq!(opted_in.fallback, Fallback::ContinueUnrecorded);
    assert!(opted_in.describe().contains("goes on unrecorded"));
    assert_eq!(
        opted_in.with_role(&OFF).fallback,
        Fallback::ContinueUnrecorded
    );
    // A role that requires the recording makes it a hard requirement again.
    assert_eq!(
        opted_in.with_role(&REQUIRED).fallback,
        Fallback::CloseChannel
    );
    // An opt-in without the zone's own requirement (the compiler refuses it) does nothing.
    let r = Recording::for_zone(&zone(OFF, true)).with_role(&REQUIRED);
    assert_eq!(r.fallback, Fallback::CloseChannel);
    assert!(
        r.describe().contains("the channel is closed"),
        "{}",
        r.describe()
    );
}

#[test]
fn no_sequence_of_roles_relaxes_the_zone() {
    let rules = [OFF, REQUIRED, WITH_INPUT];
    for zone_rule in rules {
        for fallback in [false, true] {
            let start = Recording::for_zone(&zone(zone_rule, fallback));
            for a in rules {
                for b in rules {
                    let end = start.with_role(&a).with_role(&b);
                    assert!(end.required >= start.required);
                    assert!(end.input >= start.input);
                    assert!(
                        start.fallback == Fallback::ContinueUnrecorded
                            || end.fallback == Fallback::CloseChannel
                    );
                    assert_eq!(end, start.with_role(&b).with_role(&a), "order");
                }
            }
        }
    }
}

#[test]
fn it_round_trips_through_serde_with_snake_case_names() {
    let r = Recording {
        required: true,
        input: true,
        fallback: Fallback::ContinueUnrecorded,
    };
    let text = toml::to_string(&r).unwrap();
    assert!(text.contains("\"continue_unrecorded\""), "{text}");
    assert_eq!(toml::from_str::<Recording>(&text).unwrap(), r);
}
