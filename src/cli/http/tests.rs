use super::*;

#[test]
fn segments_are_escaped() {
    assert_eq!(segment("web-1.prod_x~").unwrap(), "web-1.prod_x~");
    assert_eq!(segment("a/b c?").unwrap(), "a%2Fb%20c%3F");
    assert!(segment("..").is_err());
    assert!(segment("").is_err());
}

#[tokio::test]
async fn unreachable_controller_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["ca".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, cert.pem()).unwrap();
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = ApiClient::new(ClientSettings {
        ca_managed: false,
        addrs: vec![format!("https://127.0.0.1:{port}")],
        ca,
        token: None,
        profile: None,
    })
    .unwrap();
    let err = client
        .get::<portcullis_proto::api::Health>("/v1/health")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("cannot reach the controller at https://127.0.0.1"),
        "{text}"
    );
    assert!(text.contains("PORTCULLIS_ADDR"), "{text}");
}

#[tokio::test]
async fn when_every_controller_fails_each_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["ca".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, cert.pem()).unwrap();
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let addrs = vec![
        format!("https://127.0.0.1:{}", free()),
        format!("https://127.0.0.1:{}", free()),
    ];
    let client = ApiClient::new(ClientSettings {
        ca_managed: false,
        addrs: addrs.clone(),
        ca,
        token: None,
        profile: None,
    })
    .unwrap();
    let err = client
        .get::<portcullis_proto::api::Health>("/v1/health")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("no controller answered"), "{text}");
    for addr in &addrs {
        assert!(text.contains(&format!("{addr}: cannot reach")), "{text}");
    }
    assert!(err
        .downcast_ref::<crate::cli::exit::Unreachable>()
        .is_some());
}
