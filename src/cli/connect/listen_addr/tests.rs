#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|n| parse_cidr(n).unwrap()).collect()
}

#[test]
fn allow_takes_cidrs_and_single_addresses() {
    assert_eq!(
        parse_cidr("192.168.1.0/24").unwrap().to_string(),
        "192.168.1.0/24"
    );
    assert_eq!(
        parse_cidr("192.168.1.5").unwrap().to_string(),
        "192.168.1.5/32"
    );
    assert_eq!(parse_cidr("fd00::5").unwrap().to_string(), "fd00::5/128");
    // Host bits are dropped: 192.168.1.7/24 is the /24.
    assert_eq!(
        parse_cidr("192.168.1.7/24").unwrap().to_string(),
        "192.168.1.0/24"
    );
    for bad in ["192.168.1.0/33", "pve.lan", "", "10.0.0.0/8/8"] {
        assert!(parse_cidr(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn an_address_other_than_loopback_needs_an_allow_list() {
    let err = ListenOn::from_flags(Some(ip("0.0.0.0")), &[]).unwrap_err();
    assert!(err.to_string().contains("--allow"), "{err}");
    assert!(ListenOn::from_flags(Some(ip("192.168.1.2")), &[]).is_err());
    // Loopback needs none; the default is 127.0.0.1 for everyone.
    assert_eq!(
        ListenOn::from_flags(None, &[]).unwrap(),
        ListenOn::loopback()
    );
    let on = ListenOn::from_flags(Some(ip("127.0.0.2")), &[]).unwrap();
    assert!(on.admits(ip("127.0.0.9")));
    assert!(on.warning().is_none(), "loopback: no warning");

    let on =
        ListenOn::from_flags(Some(ip("0.0.0.0")), &nets(&["192.168.1.0/24", "10.0.0.7"])).unwrap();
    let warning = on.warning().unwrap();
    assert!(warning.contains("192.168.1.0/24, 10.0.0.7/32"), "{warning}");
    assert!(on.admits(ip("192.168.1.200")));
    assert!(on.admits(ip("10.0.0.7")));
    assert!(!on.admits(ip("10.0.0.8")));
    assert!(!on.admits(ip("192.168.2.1")));
    // An IPv4 client of a dual-stack listener arrives as ::ffff:a.b.c.d.
    assert!(on.admits(ip("::ffff:192.168.1.9")));
    assert!(!on.admits(ip("::ffff:172.16.0.1")));
}

#[test]
fn only_127_0_0_1_and_the_ipv6_loopback_are_not_exposed() {
    assert!(!ListenOn::loopback().is_exposed());
    assert!(!ListenOn::from_flags(Some(ip("::1")), &[])
        .unwrap()
        .is_exposed());
    assert!(ListenOn::from_flags(Some(ip("127.0.0.2")), &[])
        .unwrap()
        .is_exposed());
    assert!(
        ListenOn::from_flags(Some(ip("0.0.0.0")), &nets(&["10.0.0.0/8"]))
            .unwrap()
            .is_exposed()
    );
}

fn authorization(extra: serde_json::Value) -> SessionAuthorization {
    let mut v = serde_json::json!({
        "session_id": "s_1", "target_id": "t_1", "target_name": "web", "worker_id": "w_1",
        "worker_addr": "127.0.0.1:1", "worker_key_fingerprint": "00", "expires_at": 1,
        "connection_limit": 0, "grant": "g", "endpoint": "127.0.0.1:2",
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    serde_json::from_value(v).unwrap()
}

#[test]
fn sessions_that_inject_credentials_are_told_apart() {
    assert_eq!(session_injects(&authorization(serde_json::json!({}))), None);
    assert_eq!(
        session_injects(&authorization(
            serde_json::json!({"ssh_mode": "certificate"})
        )),
        None
    );
    let gateway = session_injects(&authorization(serde_json::json!({"ssh_mode": "gateway"})));
    assert!(gateway.unwrap().contains("gateway"));
    let secrets = authorization(serde_json::json!({"secrets": [{
        "path": "database/creds/ro", "lease_id": "l", "lease_duration_secs": 60, "data": {}
    }]}));
    assert!(session_injects(&secrets)
        .unwrap()
        .contains("leased secrets"));

    let target: Target = serde_json::from_value(serde_json::json!({
        "id": "t_1", "name": "db", "address": "db.lan:5432", "zone": null, "service": null,
        "vmid": null, "tags": [], "pool": null, "max_session_secs": 60, "connection_limit": 0,
        "created_at": 1, "updated_at": 1,
    }))
    .unwrap();
    assert_eq!(target_injects(&target), None);
    let mut with_secrets = target.clone();
    with_secrets.vault_secrets = vec!["database/creds/ro".into()];
    assert!(target_injects(&with_secrets)
        .unwrap()
        .contains("leased secrets"));
    let mut pve = target;
    pve.proxmox_cluster = Some("lab".into());
    assert!(target_injects(&pve).unwrap().contains("Proxmox"));
    let why = refusal(
        "db",
        &ListenOn::from_flags(Some(ip("0.0.0.0")), &nets(&["10.0.0.0/8"])).unwrap(),
        "its sessions carry leased secrets",
    );
    assert!(
        why.contains("0.0.0.0") && why.contains("127.0.0.1"),
        "{why}"
    );
}

/// A client outside the list is closed before accept returns; one inside is returned.
#[tokio::test]
async fn clients_outside_the_allow_list_are_closed_unseen() {
    use tokio::io::AsyncReadExt as _;
    let on = ListenOn::from_flags(Some(ip("127.0.0.2")), &nets(&["127.0.0.3"])).unwrap();
    let listener = GuardedListener::bind(on, 0).await.unwrap();
    let addr = listener.local_addr().unwrap();
    assert_eq!(addr.ip(), ip("127.0.0.2"));
    let from = |source: &str| {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(ip(source), 0)).unwrap();
        socket.connect(addr)
    };
    let mut outsider = from("127.0.0.1").await.unwrap();
    let insider = from("127.0.0.3").await.unwrap();
    let (accepted, peer) = listener.accept().await.unwrap();
    assert_eq!(peer.ip(), ip("127.0.0.3"));
    assert_eq!(accepted.peer_addr().unwrap(), insider.local_addr().unwrap());
    // The outsider's connection was closed: it reads EOF (or a reset).
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), outsider.read(&mut buf))
        .await
        .expect("the outsider's connection is closed, not left hanging");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert_eq!(listener.refused.load(Ordering::Relaxed), 1);
}
