//! The fake's certificates, made as a Proxmox cluster makes them: a CA of its own
//! (`/etc/pve/pve-root-ca.pem`) issuing the node's server certificate (`pve-ssl.pem`), here
//! for 127.0.0.1 and localhost.

use std::sync::Arc;

pub(super) struct Tls {
    pub ca_pem: String,
    /// SHA-256 of the server certificate, `AB:CD:...` as `GET /nodes` reports it.
    pub fingerprint: String,
    cert: rustls_pki_types::CertificateDer<'static>,
    key: rustls_pki_types::PrivateKeyDer<'static>,
}

impl Tls {
    pub(super) fn new() -> Tls {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Proxmox Virtual Environment");
        ca_params
            .distinguished_name
            .push(rcgen::DnType::OrganizationalUnitName, "fake-pve-test-ca");
        let ca = ca_params.self_signed(&ca_key).expect("self-sign the CA");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().expect("server key");
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("server certificate");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "node1.fake-pve.test");
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params
            .signed_by(&key, &issuer)
            .expect("sign the server certificate");
        let fingerprint = portcullis_crypto::digest::sha256(cert.der())
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        Tls {
            ca_pem: ca.pem(),
            fingerprint,
            cert: cert.der().clone(),
            key: rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        }
    }

    pub(super) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let config = portcullis_crypto::tls::https_server_config(
            vec![self.cert.clone()],
            self.key.clone_key(),
            b"http/1.1",
        )
        .expect("server certificate and key");
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}
