use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

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

/// An HTTPS server on 127.0.0.1 with a certificate from `issuer`, answering every request
/// with `status` (a health body when 200); its address and how many requests it answered.
async fn answering(
    status: u16,
    issuer: &rcgen::Issuer<'_, rcgen::KeyPair>,
) -> (String, Arc<AtomicUsize>) {
    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, issuer)
        .unwrap();
    let config = portcullis_crypto::tls::https_server_config(
        vec![CertificateDer::from(cert.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        b"http/1.1",
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("https://{}", listener.local_addr().unwrap());
    let answered = Arc::new(AtomicUsize::new(0));
    let count = answered.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, count) = (acceptor.clone(), count.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let body = if status == 200 {
                    r#"{"status":"ok","version":"0","controller_id":"c","store":"ok"}"#
                } else {
                    r#"{"error":"x","message":"not here"}"#
                };
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                count.fetch_add(1, Ordering::SeqCst);
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, answered)
}

#[tokio::test]
async fn a_503_moves_on_to_the_next_controller_and_a_404_does_not() {
    let _ = crate::cli::tls::install_crypto_provider();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_cert.pem()).unwrap();
    let client = |addrs: Vec<String>| {
        ApiClient::new(ClientSettings {
            ca_managed: false,
            addrs,
            ca: ca.clone(),
            token: None,
            profile: None,
        })
        .unwrap()
    };

    let (unavailable, unavailable_count) = answering(503, &issuer).await;
    let (live, live_count) = answering(200, &issuer).await;
    let api = client(vec![unavailable.clone(), live.clone()]);
    let health: portcullis_proto::api::Health = api.get("/v1/health").await.unwrap();
    assert_eq!(health.controller_id, "c");
    assert_eq!(unavailable_count.load(Ordering::SeqCst), 1);
    assert_eq!(live_count.load(Ordering::SeqCst), 1);
    assert_eq!(api.addr(), live);
    // The one that answered goes first from now on.
    let _: portcullis_proto::api::Health = api.get("/v1/health").await.unwrap();
    assert_eq!(unavailable_count.load(Ordering::SeqCst), 1);
    assert_eq!(live_count.load(Ordering::SeqCst), 2);

    // A 4xx is the controller's word: the next one is not asked.
    let (missing, _) = answering(404, &issuer).await;
    let (other, other_count) = answering(200, &issuer).await;
    let err = client(vec![missing, other])
        .get::<portcullis_proto::api::Health>("/v1/health")
        .await
        .unwrap_err();
    assert_eq!(err.downcast_ref::<ApiError>().map(|e| e.status), Some(404));
    assert_eq!(other_count.load(Ordering::SeqCst), 0);
}
