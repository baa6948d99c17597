#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::cli::connect::args::tests::parse;
use crate::cli::connect::args::ConnectKind;

fn rdp_args(args: &[&str]) -> RdpArgs {
    let mut all = vec!["rdp"];
    all.extend_from_slice(args);
    match parse(&all).unwrap().kind {
        Some(ConnectKind::Rdp(rdp)) => rdp,
        other => panic!("not connect rdp: {other:?}"),
    }
}

fn resolved(client: RdpClient, program: &str, user: &[&str]) -> (String, Vec<String>) {
    let user: Vec<String> = user.iter().map(|s| (*s).to_owned()).collect();
    client_command(client, program, &user)
        .resolved("127.0.0.1", 40389)
        .unwrap()
}

#[test]
fn each_client_is_pointed_at_the_local_listener_with_the_users_arguments() {
    assert_eq!(
        resolved(
            RdpClient::Xfreerdp,
            "xfreerdp",
            &["/u:alice", "/port-{port}"]
        ),
        (
            "xfreerdp".into(),
            vec![
                "/v:127.0.0.1:40389".into(),
                "/u:alice".into(),
                "/port-40389".into()
            ]
        )
    );
    assert_eq!(
        resolved(RdpClient::Wlfreerdp, "wlfreerdp3", &["/f"]).1,
        ["/v:127.0.0.1:40389", "/f"]
    );
    assert_eq!(
        resolved(RdpClient::Remmina, "remmina", &[]).1,
        ["-c", "rdp://127.0.0.1:40389"]
    );
    assert_eq!(
        resolved(RdpClient::Mstsc, "mstsc.exe", &["/f"]),
        (
            "mstsc.exe".into(),
            vec!["/v:127.0.0.1:40389".into(), "/f".into()]
        )
    );
    // open's options come before the URL it opens.
    assert_eq!(
        resolved(RdpClient::Open, "open", &["-a", "Windows App"]).1,
        [
            "-W",
            "-a",
            "Windows App",
            "rdp://full%20address=s:127.0.0.1:40389"
        ]
    );
}

#[test]
fn the_default_client_is_the_first_found_and_wlfreerdp_only_under_wayland() {
    fn found(names: &'static [&'static str]) -> impl Fn(&str) -> bool {
        move |p| names.contains(&p)
    }
    fn pick(
        macos: bool,
        wayland: bool,
        on_path: &dyn Fn(&str) -> bool,
    ) -> Option<(RdpClient, &'static str)> {
        default_client(&Platform {
            macos,
            wayland,
            on_path,
        })
    }
    let all = found(&["xfreerdp", "wlfreerdp", "remmina"]);
    assert_eq!(
        pick(false, true, &all),
        Some((RdpClient::Xfreerdp, "xfreerdp"))
    );
    let no_x = found(&["wlfreerdp", "remmina"]);
    assert_eq!(
        pick(false, true, &no_x),
        Some((RdpClient::Wlfreerdp, "wlfreerdp"))
    );
    assert_eq!(
        pick(false, false, &no_x),
        Some((RdpClient::Remmina, "remmina")),
        "no Wayland, no wlfreerdp"
    );
    let freerdp3 = found(&["xfreerdp3"]);
    assert_eq!(
        pick(false, false, &freerdp3),
        Some((RdpClient::Xfreerdp, "xfreerdp3"))
    );
    assert_eq!(pick(false, true, &found(&[])), None);
    assert_eq!(
        pick(true, false, &found(&[])),
        Some((RdpClient::Open, "open"))
    );
    // A client named: its first name on PATH, else none (refused before any session).
    assert_eq!(
        named_client(RdpClient::Xfreerdp, &freerdp3),
        Some("xfreerdp3")
    );
    assert_eq!(named_client(RdpClient::Remmina, &found(&[])), None);
}

#[test]
fn connect_rdp_is_connect_exec_or_a_listen_port() {
    let args = rdp_args(&[
        "win-01",
        "--client",
        "xfreerdp",
        "--",
        "/u:alice",
        "/cert:ignore",
    ]);
    assert_eq!(args.client_kind, Some(RdpClient::Xfreerdp));
    let connect = connect_args(args, Some("xfreerdp"), Some(RdpClient::Xfreerdp)).unwrap();
    assert_eq!(connect.target.as_deref(), Some("win-01"));
    assert_eq!(connect.exec.as_deref(), Some("xfreerdp"));
    assert_eq!(
        connect.args,
        ["/v:{host}:{port}", "/u:alice", "/cert:ignore"]
    );
    assert_eq!(connect.listen_port, Some(0));
    assert!(!connect.json);

    let args = rdp_args(&["win-01", "--no-launch", "--listen-port", "13389", "--json"]);
    let connect = connect_args(args, None, None).unwrap();
    assert_eq!(connect.exec, None);
    assert_eq!(connect.listen_port, Some(13389));
    assert!(connect.json);

    let args = rdp_args(&["win-01", "--no-launch", "--", "/u:alice"]);
    let err = connect_args(args, None, None).unwrap_err().to_string();
    assert!(err.contains("--no-launch runs none"), "{err}");

    // --json only describes --no-launch's listening line; --client and --no-launch exclude.
    assert!(parse(&["rdp", "win-01", "--json"]).is_err());
    assert!(parse(&["rdp", "win-01", "--no-launch", "--client", "remmina"]).is_err());
    assert!(parse(&["rdp", "win-01", "--client", "vnc"]).is_err());
}

#[test]
fn only_rdp_targets_or_targets_without_a_service_are_accepted() {
    let target = |service: Option<&str>| -> Target {
        serde_json::from_value(serde_json::json!({
            "id": "t_1", "name": "web-01", "address": "10.0.0.5:22", "zone": "APPS",
            "service": service, "vmid": null, "tags": [], "pool": null,
            "max_session_secs": 3600, "connection_limit": 0, "created_at": 0, "updated_at": 0,
        }))
        .unwrap()
    };
    check_service(&target(Some("rdp"))).unwrap();
    check_service(&target(None)).unwrap();
    let err = check_service(&target(Some("ssh"))).unwrap_err().to_string();
    assert!(
        err.contains("\"ssh\"") && err.contains("portcullis connect web-01 --listen-port 0"),
        "{err}"
    );
}
