use super::manifest::{self, FileEntry, Manifest, StoreKind};
use super::sealed::{self, Cost, SealError};
use super::*;
use portcullis_audit::verify::Head;

/// The cheapest cost a sealed file may name: the tests' argon2 runs stay quick.
const CHEAP: Cost = Cost {
    m_cost_kib: 19 * 1024,
    t_cost: 2,
    p_cost: 1,
};

fn pass(text: &str) -> Passphrase {
    Passphrase::new(SecretString::from(text.to_owned())).unwrap()
}

#[test]
fn a_sealed_master_key_opens_with_its_passphrase_only() {
    let key = [7u8; 32];
    let text = sealed::seal(&key, &pass("correct horse battery"), CHEAP).unwrap();
    // Neither the key's bytes nor its hex are in the file.
    assert!(!text.contains(&hex::encode(key)));
    assert!(!text.as_bytes().windows(32).any(|w| w == key));
    let opened = sealed::open(&text, &pass("correct horse battery")).unwrap();
    assert_eq!(opened.as_slice(), key);
    assert_eq!(
        sealed::open(&text, &pass("correct horse battery!")).unwrap_err(),
        SealError::WrongPassphrase
    );
    // A new salt and nonce each time.
    let again = sealed::seal(&key, &pass("correct horse battery"), CHEAP).unwrap();
    assert_ne!(text, again);
}

#[test]
fn a_changed_header_or_sealed_byte_does_not_open() {
    let key = [9u8; 32];
    let text = sealed::seal(&key, &pass("twelve chars ok"), CHEAP).unwrap();
    let mut file: serde_json::Value = serde_json::from_str(&text).unwrap();

    // The salt changed (still valid hex of the right length): the derived key differs.
    let mut salt_changed = file.clone();
    let salt = salt_changed["header"]["salt"].as_str().unwrap().to_owned();
    let flipped = if salt.starts_with('0') { "1" } else { "0" };
    salt_changed["header"]["salt"] = format!("{flipped}{}", &salt[1..]).into();
    assert_eq!(
        sealed::open(&salt_changed.to_string(), &pass("twelve chars ok")).unwrap_err(),
        SealError::WrongPassphrase
    );

    // One bit of the ciphertext.
    let sealed_hex = file["sealed"].as_str().unwrap().to_owned();
    let mut bytes = hex::decode(&sealed_hex).unwrap();
    bytes[20] ^= 1;
    file["sealed"] = hex::encode(&bytes).into();
    assert_eq!(
        sealed::open(&file.to_string(), &pass("twelve chars ok")).unwrap_err(),
        SealError::WrongPassphrase
    );

    // A cost outside the bounds is refused before any work.
    let mut huge: serde_json::Value = serde_json::from_str(&text).unwrap();
    huge["header"]["cost"]["m_cost_kib"] = (u32::MAX).into();
    assert!(matches!(
        sealed::open(&huge.to_string(), &pass("twelve chars ok")),
        Err(SealError::Malformed(_))
    ));
    // An unknown member, another format: not a file of ours.
    let mut extra: serde_json::Value = serde_json::from_str(&text).unwrap();
    extra["plain"] = "x".into();
    assert!(matches!(
        sealed::open(&extra.to_string(), &pass("twelve chars ok")),
        Err(SealError::Malformed(_))
    ));
    assert!(matches!(
        sealed::open("not json", &pass("twelve chars ok")),
        Err(SealError::Malformed(_))
    ));
}

#[test]
fn a_passphrase_needs_twelve_characters() {
    let err = Passphrase::new(SecretString::from("short".to_owned())).unwrap_err();
    assert!(err.to_string().contains("at least 12"), "{err}");
    assert!(Passphrase::new(SecretString::from("x".repeat(2000))).is_err());
    // Characters, not bytes.
    assert!(Passphrase::new(SecretString::from("ééééééééééé".to_owned())).is_err());
    assert!(Passphrase::new(SecretString::from("éééééééééééé".to_owned())).is_ok());
    assert_eq!(
        format!("{:?}", pass("a secret phrase")),
        "Passphrase(<secret>)"
    );
}

fn entry(name: &str) -> FileEntry {
    FileEntry {
        name: name.into(),
        sha256: "ab".repeat(32),
        size: 3,
    }
}

fn sqlite_manifest() -> Manifest {
    Manifest::new(
        15,
        "2026-12-01T00:00:00Z".into(),
        StoreKind::Sqlite,
        vec![entry(manifest::STORE_FILE), entry(sealed::FILE)],
        Head {
            sequence: 4,
            hash: "cd".repeat(32),
        },
        None,
    )
}

#[test]
fn a_manifest_round_trips_and_its_files_are_checked() {
    let m = sqlite_manifest();
    let text = m.to_text().unwrap();
    assert_eq!(Manifest::parse(&text).unwrap(), m);
    assert!(text.contains("\"store\": \"sqlite\""), "{text}");

    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        f(&mut v);
        Manifest::parse(&v.to_string()).unwrap_err()
    };
    assert!(edit(&|v| v["format"] = "other".into()).contains("format"));
    assert!(edit(&|v| v["version"] = 2.into()).contains("version 2"));
    assert!(edit(&|v| {
        let mut odd = v["files"][0].clone();
        odd["name"] = "../../etc/passwd".into();
        v["files"].as_array_mut().unwrap().push(odd);
    })
    .contains("unexpected"));
    assert!(edit(&|v| v["files"][0]["name"] = "other.db".into()).contains("lists no store.db"));
    assert!(edit(&|v| v["files"][0]["sha256"] = "zz".into()).contains("hex"));
    assert!(edit(&|v| {
        v["files"].as_array_mut().unwrap().remove(1);
    })
    .contains(sealed::FILE));
    assert!(edit(&|v| {
        let first = v["files"][0].clone();
        v["files"].as_array_mut().unwrap().push(first);
    })
    .contains("twice"));
    assert!(edit(&|v| v["unknown"] = 1.into()).contains("unknown"));

    // A PostgreSQL backup has no snapshot, only the sealed key.
    let pg = Manifest::new(
        15,
        "2026-12-01T00:00:00Z".into(),
        StoreKind::Postgres,
        vec![entry(sealed::FILE)],
        Head {
            sequence: 0,
            hash: "00".repeat(32),
        },
        Some(PostgresSteps {
            dump: "pg_dump".into(),
            restore: "pg_restore".into(),
        }),
    );
    assert_eq!(Manifest::parse(&pg.to_text().unwrap()).unwrap(), pg);
}

#[test]
fn shell_quoting_leaves_plain_words_and_quotes_the_rest() {
    use super::files::shell_quote;
    assert_eq!(
        shell_quote("postgres://u@h:5432/db"),
        "postgres://u@h:5432/db"
    );
    assert_eq!(shell_quote("/tmp/a b"), "'/tmp/a b'");
    assert_eq!(shell_quote("it's"), "'it'\\''s'");
    assert_eq!(shell_quote("a?b&c"), "'a?b&c'");
}
