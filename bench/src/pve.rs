//! `portcullis-bench pve ADDR DIR`: a minimal stand-in for the Proxmox VE API over HTTPS, as
//! fast as the machine allows, for the injecting proxy's bench (scripts/bench, part `pve`).
//!
//! It writes its CA to `DIR/ca.pem` (the controller's `ca_file`), prints `{"ready": ADDR}`,
//! and answers what a session needs: token creation (`{"full-tokenid", "info", "value"}`),
//! ACL reads (`[]`) and writes, token deletion, `GET /version` (the small GET measured), and
//! an empty list for anything else (the catalog's discovery reads). It checks no token: the
//! bench measures the proxy, not Proxmox.

use std::convert::Infallible;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use tokio::net::TcpListener;

/// The certificate authority and the server certificate (for 127.0.0.1 and localhost).
fn tls(dir: &std::path::Path) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "bench Proxmox CA");
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate()?;
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
    params.use_authority_key_identifier_extension = true;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer)?;
    std::fs::write(dir.join("ca.pem"), ca.pem()).context("write ca.pem")?;
    let config = portcullis_crypto::tls::https_server_config(
        vec![cert.der().clone()],
        rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        b"http/1.1",
    )?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The answer's body for `method path` (after `/api2/json`).
fn answer(method: &hyper::Method, path: &str) -> String {
    let segments: Vec<&str> = path
        .split('?')
        .next()
        .unwrap_or_default()
        .split('/')
        .collect();
    match (method.as_str(), segments.as_slice()) {
        ("POST", ["", "access", "users", user, "token", name]) => {
            let user = user.replace("%40", "@");
            format!(
                r#"{{"data":{{"full-tokenid":"{user}!{name}","info":{{"privsep":1,"expire":0,"comment":""}},"value":"5b1e8a52-3f1c-4d3e-9a8b-bench0000001"}}}}"#
            )
        }
        ("GET", ["", "version"]) => {
            r#"{"data":{"version":"9.1.1","release":"9.1","repoid":"bench"}}"#.to_owned()
        }
        ("GET", _) => r#"{"data":[]}"#.to_owned(),
        _ => r#"{"data":null}"#.to_owned(),
    }
}

pub(crate) async fn serve(addr: &str, dir: &str) -> anyhow::Result<()> {
    let acceptor = tls(std::path::Path::new(dir))?;
    let listener = TcpListener::bind(addr).await?;
    println!("{{\"ready\":\"{}\"}}", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(|req: Request<hyper::body::Incoming>| {
                let path = req.uri().path_and_query().map_or("", |p| p.as_str());
                let path = path.strip_prefix("/api2/json").unwrap_or(path);
                let body = answer(req.method(), path);
                let mut response = Response::new(Full::new(Bytes::from(body)));
                response.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static("application/json;charset=UTF-8"),
                );
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
