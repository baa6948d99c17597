use super::*;
use clap::Parser;

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    client: ClientArgs,
}

fn parse(args: &[&str]) -> ClientArgs {
    let mut all = vec!["test"];
    all.extend_from_slice(args);
    Cli::try_parse_from(all).unwrap().client
}

#[test]
fn flags_win_over_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("addr"), "https://file:1\n").unwrap();
    let args = parse(&[
        "--addr",
        "https://flag:9200/",
        "--ca",
        "/x/ca.pem",
        "--token",
        "t0k",
    ]);
    let settings = args.resolve_in(Some(dir.path())).unwrap();
    assert_eq!(settings.addrs, ["https://flag:9200"]);
    assert_eq!(settings.ca, PathBuf::from("/x/ca.pem"));
    assert_eq!(settings.token, Some("t0k".parse().unwrap()));
}

#[test]
fn files_fill_in_what_flags_leave_out() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("addr"), "127.0.0.1:9200\n").unwrap();
    std::fs::write(dir.path().join("ca.pem"), "x").unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "secret-token\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let settings = parse(&[]).resolve_in(Some(dir.path())).unwrap();
    assert_eq!(settings.addrs, ["https://127.0.0.1:9200"]);
    assert_eq!(settings.ca, dir.path().join("ca.pem"));
    assert_eq!(settings.token, Some("secret-token".parse().unwrap()));

    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = parse(&[]).resolve_in(Some(dir.path())).unwrap_err();
    assert!(format!("{err:#}").contains("chmod 600"), "{err:#}");
}

#[test]
fn missing_settings_say_what_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let err = parse(&[]).resolve_in(Some(dir.path())).unwrap_err();
    assert!(err.to_string().contains("PORTCULLIS_ADDR"), "{err}");
    let err = parse(&["--addr", "https://a:1"])
        .resolve_in(None)
        .unwrap_err();
    assert!(err.to_string().contains("PORTCULLIS_CA"), "{err}");
    let settings = parse(&["--addr", "https://a:1", "--ca", "c"])
        .resolve_in(None)
        .unwrap();
    assert_eq!(settings.token, None);
    let err = parse(&["--addr", "http://a:1", "--ca", "c"])
        .resolve_in(None)
        .unwrap_err();
    assert!(err.to_string().contains("HTTPS"), "{err}");
}

#[test]
fn a_profile_fills_in_what_flags_leave_out_and_keeps_its_token() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let p = Profile::save(
        dir.path(),
        profile::DEFAULT,
        &["https://a:1".into(), "b:2".into()],
    )
    .unwrap();
    std::fs::write(p.ca_path(), "x").unwrap();
    std::fs::write(p.token_path(), "profile-token\n").unwrap();
    std::fs::set_permissions(p.token_path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    // The older files are not read while a profile is in use.
    std::fs::write(dir.path().join("addr"), "https://legacy:1\n").unwrap();
    let s = parse(&[]).resolve_in(Some(dir.path())).unwrap();
    assert_eq!(s.addrs, ["https://a:1", "https://b:2"]);
    assert_eq!(s.ca, p.ca_path());
    assert!(s.ca_managed);
    assert_eq!(s.token, Some("profile-token".parse().unwrap()));
    assert_eq!(s.profile.as_ref().map(|p| p.name.as_str()), Some("default"));
    // Another address: the profile's token is not sent there.
    let s = parse(&["--profile", "default", "--addr", "https://other:3"])
        .resolve_in(Some(dir.path()))
        .unwrap();
    assert_eq!(s.addrs, ["https://other:3"]);
    assert_eq!(s.ca, p.ca_path());
    assert_eq!(s.token, None);
    // An address without a profile named: the settings of before profiles.
    let s = parse(&["--addr", "https://other:3", "--ca", "c"])
        .resolve_in(Some(dir.path()))
        .unwrap();
    assert!(s.profile.is_none());
    let err = parse(&["--profile", "nope"])
        .resolve_in(Some(dir.path()))
        .unwrap_err();
    assert!(err.to_string().contains("no profile"), "{err}");
}

#[test]
fn several_addresses_separated_by_commas() {
    let s = parse(&["--addr", "https://x:1, y:2,", "--ca", "c"])
        .resolve_in(None)
        .unwrap();
    assert_eq!(s.addrs, ["https://x:1", "https://y:2"]);
    assert!(parse(&["--addr", " , ", "--ca", "c"])
        .resolve_in(None)
        .is_err());
}

#[test]
fn token_never_shows() {
    let args = parse(&["--token", "hunter2"]);
    assert!(!format!("{args:?}").contains("hunter2"));
    let settings = parse(&["--addr", "https://a:1", "--ca", "c", "--token", "hunter2"])
        .resolve_in(None)
        .unwrap();
    assert!(!format!("{settings:?}").contains("hunter2"));
    assert_eq!(
        "hunter2".parse::<Token>().unwrap().to_string(),
        "<redacted>"
    );
    assert!("".parse::<Token>().is_err());
    assert!("a b".parse::<Token>().is_err());
}
