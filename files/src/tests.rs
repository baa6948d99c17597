#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt as _;

use super::*;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Names in `dir` other than `keep`: temporary files left behind.
fn others(dir: &Path, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !keep.contains(&name.as_str()))
        .collect()
}

#[test]
fn a_private_file_is_0600_even_over_a_readable_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    write_private_atomic(&path, b"one").unwrap();
    assert_eq!(mode(&path), 0o600);
    std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
    write_private_atomic(&path, b"two").unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(std::fs::read(&path).unwrap(), b"two");
    assert!(others(dir.path(), &["token"]).is_empty());
}

#[test]
fn the_content_is_replaced_by_a_new_file_never_rewritten_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    write_private_atomic(&path, b"old key").unwrap();
    // A reader that opened the old file keeps reading the old content, whole: the new
    // content went to another file, renamed over the name.
    let mut reader = std::fs::File::open(&path).unwrap();
    write_private_atomic(&path, b"the new, longer key").unwrap();
    let mut old = String::new();
    std::io::Read::read_to_string(&mut reader, &mut old).unwrap();
    assert_eq!(old, "old key");
    assert_eq!(std::fs::read(&path).unwrap(), b"the new, longer key");
}

#[test]
fn a_planted_file_or_symlink_is_never_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere");
    std::fs::write(&elsewhere, "untouched").unwrap();
    let path = dir.path().join("token");
    // Whatever name a writer might guess for its temporary file is planted.
    for guess in ["token.tmp", ".token.tmp", "token.new"] {
        std::os::unix::fs::symlink(&elsewhere, dir.path().join(guess)).unwrap();
    }
    write_private_atomic(&path, b"secret").unwrap();
    assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "untouched");
    assert_eq!(std::fs::read(&path).unwrap(), b"secret");
    assert!(!path.symlink_metadata().unwrap().file_type().is_symlink());
}

#[test]
fn a_missing_directory_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent").join("token");
    let err = write_private_atomic(&path, b"x").unwrap_err();
    assert!(matches!(err, WriteError::NoDirectory { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "cannot write {}: its directory {} does not exist; create it first",
            path.display(),
            dir.path().join("absent").display()
        )
    );
}

#[test]
fn create_refuses_an_existing_file_and_leaves_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    create_private_atomic(&path, b"first").unwrap();
    assert_eq!(mode(&path), 0o600);
    let err = create_private_atomic(&path, b"second").unwrap_err();
    assert!(matches!(err, WriteError::Exists { .. }), "{err:?}");
    assert_eq!(std::fs::read(&path).unwrap(), b"first");
    assert!(others(dir.path(), &["master.key"]).is_empty());
}

#[test]
fn a_public_file_gets_its_mode_only_when_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    write_atomic(&path, b"CERT", 0o644).unwrap();
    assert_eq!(mode(&path), 0o644);
    assert_eq!(std::fs::read(&path).unwrap(), b"CERT");
}

#[test]
fn a_failed_write_leaves_the_old_file_and_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    // A directory at the path: the rename fails after the temporary file was written.
    let path = dir.path().join("token");
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("inside"), "kept").unwrap();
    let err = write_private_atomic(&path, b"x").unwrap_err();
    assert!(matches!(err, WriteError::Io { .. }), "{err:?}");
    assert_eq!(
        std::fs::read_to_string(path.join("inside")).unwrap(),
        "kept"
    );
    assert!(others(dir.path(), &["token"]).is_empty());
}

#[test]
fn an_owner_only_file_is_read_without_its_trailing_newline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("password");
    write_private_atomic(&path, b"hunter2\r\n").unwrap();
    assert_eq!(read_owner_only(&path).unwrap(), "hunter2");
    write_private_atomic(&path, b"two\nlines\n\n").unwrap();
    assert_eq!(read_owner_only(&path).unwrap(), "two\nlines\n");
}

#[test]
fn a_file_others_may_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("password");
    write_atomic(&path, b"hunter2", 0o640).unwrap();
    let err = read_owner_only(&path).unwrap_err();
    assert!(
        matches!(err, ReadError::ReadableByOthers { mode: 0o640 }),
        "{err}"
    );
    assert!(err.to_string().contains("chmod 600"), "{err}");
}
