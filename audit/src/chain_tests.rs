use serde_json::{json, Map, Value};

use super::*;
use crate::verify::{Problem, Verifier};

/// JCS of a JSON text, as a string.
fn jcs(text: &str) -> String {
    let value: Value = serde_json::from_str(text).unwrap();
    String::from_utf8(canonical(&value).unwrap()).unwrap()
}

/// The audit key of the fixed vectors below: the Ed25519 key with seed 07 07 .. 07, as a
/// PKCS#8 v1 document.
fn golden_signer() -> Signer {
    let mut pkcs8 = hex::decode("302e020100300506032b657004220420").unwrap();
    pkcs8.extend_from_slice(&[7; 32]);
    Signer::from_pkcs8("k_golden", &pkcs8).unwrap()
}

const GOLDEN_PUBLIC_KEY: &str = "6kpsY+KcUgq+9VB7Ey7F+ZVHdq6+vnuSQh7qaRRG0iw=";

fn golden_ring() -> KeyRing {
    KeyRing::new(&[PublicKeyInfo {
        id: "k_golden".into(),
        algorithm: "ed25519".into(),
        public_key: GOLDEN_PUBLIC_KEY.into(),
        state: None,
    }])
}

/// An event sealed by the schema 2 writer (before JCS), as it stored it but for non-ASCII
/// characters, escaped here so that no editor normalises them: a float written `10.0`,
/// `-0.0`, a 64-bit serial, members sorted by UTF-8 bytes (U+FB33 before U+1F600) and a
/// control character, which JCS would all write otherwise.
const SCHEMA_2_EVENT: &str = r#"{"actor":{"groups":["ops\u20ac","\ud83d\ude00"],"source":"127.0.0.1","user":"zo\u00eb","user_id":null},"decision":null,"details":{"a":1e+21,"b":-0.0,"ssh_certificates_revoked":[18446744073709551557],"window_secs":10.0,"\u00e9":3,"\ufb33":1,"\ud83d\ude00":2},"hash":"efe9b862bc9a57b3118509c58f646cee5199bc028de27b5bfb0970f3074cface","id":"e_golden","key_id":"k_golden","policy_hash":null,"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","reason":"closed\u001f\t\"","schema":2,"sequence":1,"session":"s_1","signature":"bYcgoWKvpX4yzcSfHeyoUB7KVHBdvv2hxj0C2V/R4AacvlkOGKoCHFyveovlhr2utSkOEE/5zxw1BYw+di+VBg==","target":"t_1","time":"2026-11-23T06:56:59.271Z","type":"session_terminated"}"#;

fn walk(keys: KeyRing, events: &[Value]) -> Result<u64, crate::verify::Failure> {
    let mut v = Verifier::new(keys, None);
    for e in events {
        v.push(e)?;
    }
    Ok(v.finish(None)?.events)
}

/// An unsealed event of `schema` at `sequence`, linked to `prev`.
fn body(schema: u64, sequence: u64, prev: &str) -> Map<String, Value> {
    json!({
        "schema": schema, "id": format!("e_{sequence}"), "sequence": sequence,
        "time": "2026-11-30T06:40:01.113Z", "type": "token_rejected",
        "actor": {"user": null, "user_id": null, "groups": [], "source": "203.0.113.9"},
        "decision": "deny", "reason": "unknown, expired or revoked token",
        "details": {"count": 3, "window_secs": 10.0, "€": "x", "\u{1f600}": "y", "\u{fb33}": "z"},
        "prev_hash": prev,
    })
    .as_object()
    .cloned()
    .unwrap()
}

#[test]
fn jcs_matches_the_sample_of_rfc_8785() {
    // RFC 8785 section 3.2.2.
    let input = r#"{
        "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
        "literals": [null, true, false]
    }"#;
    assert_eq!(
        jcs(input),
        r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
    );
}

#[test]
fn jcs_sorts_members_by_utf16_code_units() {
    // RFC 8785 section 3.2.3: the emoji (a surrogate pair, D83D DE00) sorts before U+FB33,
    // although its UTF-8 bytes (F0 ..) sort after (EF ..), as schema 2 sorted them.
    let input = r#"{
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\ud83d\ude00": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis"
    }"#;
    assert_eq!(
        jcs(input),
        "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
         \"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\
         \"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}"
    );
    let legacy = canonical_v2(&serde_json::from_str(input).unwrap());
    assert!(
        legacy.ends_with("\"\u{1f600}\":\"Emoji: Grinning Face\"}"),
        "{legacy}"
    );
}

#[test]
fn jcs_writes_numbers_as_ecmascript_does() {
    // RFC 8785 appendix B: IEEE 754 bit patterns and their canonical text.
    let table = [
        (0x0000_0000_0000_0000_u64, "0"),
        (0x8000_0000_0000_0000, "0"),
        (0x0000_0000_0000_0001, "5e-324"),
        (0x8000_0000_0000_0001, "-5e-324"),
        (0x7fef_ffff_ffff_ffff, "1.7976931348623157e+308"),
        (0xffef_ffff_ffff_ffff, "-1.7976931348623157e+308"),
        (0x4340_0000_0000_0000, "9007199254740992"),
        (0xc340_0000_0000_0000, "-9007199254740992"),
        (0x4430_0000_0000_0000, "295147905179352830000"),
        (0x44b5_2d02_c7e1_4af5, "9.999999999999997e+22"),
        (0x44b5_2d02_c7e1_4af6, "1e+23"),
        (0x44b5_2d02_c7e1_4af7, "1.0000000000000001e+23"),
        (0x444b_1ae4_d6e2_ef4e, "999999999999999700000"),
        (0x444b_1ae4_d6e2_ef4f, "999999999999999900000"),
        (0x444b_1ae4_d6e2_ef50, "1e+21"),
        (0x3eb0_c6f7_a0b5_ed8c, "9.999999999999997e-7"),
        (0x3eb0_c6f7_a0b5_ed8d, "0.000001"),
        (0x41b3_de43_5555_5553, "333333333.3333332"),
        (0x41b3_de43_5555_5554, "333333333.33333325"),
        (0x41b3_de43_5555_5555, "333333333.3333333"),
        (0x41b3_de43_5555_5556, "333333333.3333334"),
        (0x41b3_de43_5555_5557, "333333333.33333343"),
        (0xbecb_f647_612f_3696, "-0.0000033333333333333333"),
        (0x4314_3ff3_c1cb_0959, "1424953923781206.2"),
    ];
    for (bits, text) in table {
        let value = Value::from(f64::from_bits(bits));
        assert_eq!(canonical(&value).unwrap(), text.as_bytes(), "{bits:016x}");
    }
    // The same read from JSON text, as the verifier reads stored events.
    assert_eq!(
        jcs("[1e21, -0, -0.0, 1.0, 10.0, 0.2, 1E+2]"),
        "[1e+21,0,0,1,10,0.2,100]"
    );
    // Only `"`, `\` and controls are escaped (the short forms where JSON has them,
    // otherwise lower-case \u00XX); DEL, U+2028 and non-ASCII are written as they are.
    assert_eq!(
        jcs(r#""\u0000\u0008\u0009\u000a\u000c\u000d\u001f\u007f\u2028\u00e9/""#),
        "\"\\u0000\\b\\t\\n\\f\\r\\u001f\u{7f}\u{2028}\u{e9}/\""
    );
}

#[test]
fn integers_a_double_cannot_hold_are_refused_and_sealed_as_strings() {
    let exact = json!({"n": 9_007_199_254_740_991_u64, "m": -9_007_199_254_740_991_i64});
    assert_eq!(
        canonical(&exact).unwrap(),
        br#"{"m":-9007199254740991,"n":9007199254740991}"#
    );
    let serial =
        json!({"details": {"ssh_certificate": {"serial": 18_446_744_073_709_551_557_u64}}});
    let err = canonical(&serial).unwrap_err();
    assert!(
        matches!(&err, ChainError::InexactInteger { path, value }
            if path == "details.ssh_certificate.serial" && value == "18446744073709551557"),
        "{err}"
    );
    assert!(canonical(&json!([-9_007_199_254_740_992_i64])).is_err());

    // The writer keeps the value, as a string, and the event verifies.
    let s = golden_signer();
    let mut event = body(SCHEMA, 1, GENESIS);
    event["details"]["serials"] = json!([18_446_744_073_709_551_557_u64, 7]);
    s.seal(&mut event).unwrap();
    assert_eq!(
        event["details"]["serials"],
        json!(["18446744073709551557", 7])
    );
    assert_eq!(walk(golden_ring(), &[Value::Object(event)]).unwrap(), 1);
}

#[test]
fn a_schema_2_event_written_before_jcs_still_verifies() {
    let event: Value = serde_json::from_str(SCHEMA_2_EVENT).unwrap();
    let map = event.as_object().unwrap();
    assert_eq!(
        walk(golden_ring(), std::slice::from_ref(&event)).unwrap(),
        1
    );
    assert_eq!(
        event_hash(map).unwrap(),
        "efe9b862bc9a57b3118509c58f646cee5199bc028de27b5bfb0970f3074cface"
    );
    // JCS cannot hold its serial, and without it JCS writes another text: the verifier
    // must choose the form by the schema.
    let mut covered = map.clone();
    covered.remove("hash");
    covered.remove("signature");
    let mut covered = Value::Object(covered);
    assert!(canonical(&covered).is_err());
    covered["details"]
        .as_object_mut()
        .unwrap()
        .remove("ssh_certificates_revoked");
    assert_ne!(
        canonical(&covered).unwrap(),
        canonical_v2(&covered).into_bytes()
    );
    // Edited, it fails as before.
    let mut edited = event.clone();
    edited["details"]["window_secs"] = json!(10);
    let failure = walk(golden_ring(), &[edited]).unwrap_err();
    assert_eq!(failure.problem, Problem::Edited);
}

#[test]
fn a_schema_2_checkpoint_still_verifies() {
    // Signed with the schema 2 message format by an independent Ed25519 implementation.
    let checkpoint: Checkpoint = serde_json::from_value(json!({
        "type": "audit_checkpoint", "schema": 2, "sequence": 1,
        "hash": "efe9b862bc9a57b3118509c58f646cee5199bc028de27b5bfb0970f3074cface",
        "time": "2026-11-23T06:57:00.000Z", "key_id": "k_golden",
        "signature": "w8OZC2y27X9gYp8A4sy3gdAulBlQqnwho0P9DGsZgFAFnRQyqxtwbXZk5N2lgrGJ3Xu57IX1QWhYjso391ydBQ==",
    }))
    .unwrap();
    assert!(checkpoint.verify(&golden_ring()));
    // A schema 3 writer makes the same signature over the same statement.
    let now = golden_signer().checkpoint(1, &checkpoint.hash, &checkpoint.time);
    assert_eq!((now.schema, &now.signature), (3, &checkpoint.signature));
}

#[test]
fn a_chain_of_schema_2_then_schema_3_verifies_end_to_end() {
    let s = golden_signer();
    let mut prev = GENESIS.to_owned();
    let mut events = Vec::new();
    for (sequence, schema) in [(1, 2), (2, 2), (3, 3), (4, 3)] {
        let mut event = body(schema, sequence, &prev);
        prev = s.seal(&mut event).unwrap();
        events.push(Value::Object(event));
    }
    // The two forms differ for these events (`10.0` against `10`, member order).
    let covered = |e: &Value| {
        let mut m = e.as_object().unwrap().clone();
        m.remove("hash");
        m.remove("signature");
        Value::Object(m)
    };
    assert_ne!(
        canonical(&covered(&events[2])).unwrap(),
        canonical_v2(&covered(&events[2])).into_bytes()
    );
    // Stored and read back, as the export and the sinks carry them.
    let reread: Vec<Value> = events
        .iter()
        .map(|e| serde_json::from_str(&e.to_string()).unwrap())
        .collect();
    assert_eq!(walk(golden_ring(), &reread).unwrap(), 4);

    // A schema 3 event relabelled as schema 2 is an edit, not a way to another form.
    let mut relabelled = reread.clone();
    relabelled[3]["schema"] = json!(2);
    let failure = walk(golden_ring(), &relabelled).unwrap_err();
    assert_eq!((failure.sequence, failure.problem), (4, Problem::Edited));
    // A schema this version does not know is named, not guessed.
    let mut future = reread;
    future[2]["schema"] = json!(4);
    let failure = walk(golden_ring(), &future).unwrap_err();
    assert_eq!(failure.sequence, 3);
    assert!(
        matches!(&failure.problem, Problem::Malformed(m) if m.contains("schema 4")),
        "{failure}"
    );
}

#[test]
fn public_keys_are_read_as_audit_keys_prints_them() {
    let printed =
        format!("k_golden:{GOLDEN_PUBLIC_KEY}  # active\nk_old:{GOLDEN_PUBLIC_KEY}  # retired\n");
    let keys = PublicKeyInfo::parse_flag_lines(&printed).unwrap();
    assert_eq!(
        keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
        ["k_golden", "k_old"]
    );
    assert!(keys.iter().all(|k| k.public_key == GOLDEN_PUBLIC_KEY));
    let one = PublicKeyInfo::parse_flag_lines(&format!("k_golden:{GOLDEN_PUBLIC_KEY}")).unwrap();
    assert_eq!(one.len(), 1);
    assert!(PublicKeyInfo::parse_flag_lines("  # nothing\n\n").is_err());
    let bad = PublicKeyInfo::parse_flag_lines("k_x:not-base64  # active").unwrap_err();
    assert!(bad.contains("k_x") && bad.contains("base64"), "{bad}");
}
