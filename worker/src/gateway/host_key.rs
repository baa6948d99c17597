//! The gateway's host key: an Ed25519 key made in the worker's memory at start (never
//! written anywhere), and its host certificate for [`HOST_ALIAS`], which the controller's
//! SSH host CA signs when asked over the link. The certificate is kept and renewed at its
//! half-life, when a connection needs it; while none is valid, gateway connections are
//! refused (fail closed): the user's client would not trust the gateway without it.

use std::sync::Arc;
use std::time::Duration;

use portcullis_proto::gateway::HOST_ALIAS;
use portcullis_proto::link::{Request, Response};
use russh::keys::ssh_key::certificate::CertType;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{Certificate, PrivateKey};
use tokio::sync::Mutex;

use super::config;
use crate::link::LinkClient;

/// How long the controller may take to certify the host key.
const CERTIFY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why no gateway connection can be served now.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NoHostCertificate {
    #[error("the SSH gateway has no host certificate: a controller signs it over the cluster link, and asking failed ({0}); try again once the worker is linked")]
    Unavailable(String),
    #[error("the controller's host certificate for the SSH gateway is unusable: {0}")]
    Unusable(String),
    #[error("cannot make the SSH gateway's host key: {0}")]
    NoKey(String),
}

/// Makes an Ed25519 key from the system's random source.
pub(crate) fn generate() -> Result<PrivateKey, NoHostCertificate> {
    let seed = portcullis_crypto::random::bytes::<32>()
        .map_err(|e| NoHostCertificate::NoKey(e.to_string()))?;
    Ok(PrivateKey::from(Ed25519Keypair::from_seed(&seed)))
}

/// The host key and the server configuration built with its current certificate.
pub(crate) struct HostKey {
    key: PrivateKey,
    current: Mutex<Option<Current>>,
}

struct Current {
    config: Arc<russh::server::Config>,
    /// Unix seconds: when it is due for renewal (half its life) and when it expires.
    renew_at: u64,
    valid_before: u64,
}

impl HostKey {
    pub(crate) fn new() -> Result<HostKey, NoHostCertificate> {
        Ok(HostKey {
            key: generate()?,
            current: Mutex::new(None),
        })
    }

    /// The server configuration to greet a user's client with, asking the controller for a
    /// new certificate when the current one is past its half-life (kept while still valid if
    /// asking fails) or missing.
    pub(crate) async fn server_config(
        &self,
        link: &LinkClient,
        now: u64,
    ) -> Result<Arc<russh::server::Config>, NoHostCertificate> {
        let mut current = self.current.lock().await;
        if let Some(c) = current.as_ref() {
            if now < c.renew_at {
                return Ok(c.config.clone());
            }
        }
        match self.certify(link, now).await {
            Ok(fresh) => {
                let config = fresh.config.clone();
                *current = Some(fresh);
                Ok(config)
            }
            Err(error) => match current.as_ref() {
                Some(c) if now < c.valid_before => {
                    tracing::warn!(%error, "cannot renew the SSH gateway's host certificate; the current one is still valid");
                    Ok(c.config.clone())
                }
                _ => Err(error),
            },
        }
    }

    async fn certify(&self, link: &LinkClient, now: u64) -> Result<Current, NoHostCertificate> {
        let public_key = self
            .key
            .public_key()
            .to_openssh()
            .map_err(|e| NoHostCertificate::NoKey(e.to_string()))?;
        let answer = link
            .request(
                Request::GatewayHostCertificate { public_key },
                CERTIFY_TIMEOUT,
            )
            .await
            .map_err(|e| NoHostCertificate::Unavailable(e.to_string()))?;
        let certificate = match answer {
            Response::SshCertificate { certificate, .. } => certificate,
            Response::Error { message, .. } | Response::Refused { reason: message } => {
                return Err(NoHostCertificate::Unavailable(message))
            }
            other => {
                return Err(NoHostCertificate::Unusable(format!(
                    "unexpected answer {other:?}"
                )))
            }
        };
        let certificate = self.accept(&certificate, now)?;
        let valid_before = certificate.valid_before();
        let issued = certificate.valid_after().max(now.min(valid_before));
        let renew_at = issued + valid_before.saturating_sub(issued) / 2;
        tracing::info!(
            valid_before,
            "the SSH gateway's host certificate was issued"
        );
        Ok(Current {
            config: config::server(self.key.clone(), certificate),
            renew_at,
            valid_before,
        })
    }

    /// Parses a certificate and checks that it certifies this key as a host, for
    /// [`HOST_ALIAS`], now.
    fn accept(&self, text: &str, now: u64) -> Result<Certificate, NoHostCertificate> {
        let unusable = |why: &str| NoHostCertificate::Unusable(why.to_owned());
        let cert = Certificate::from_openssh(text.trim())
            .map_err(|e| NoHostCertificate::Unusable(e.to_string()))?;
        if cert.public_key() != self.key.public_key().key_data() {
            return Err(unusable("it certifies another key"));
        }
        if cert.cert_type() != CertType::Host {
            return Err(unusable("it is not a host certificate"));
        }
        if !cert.valid_principals().iter().any(|p| p == HOST_ALIAS) {
            return Err(unusable("it is not issued for the gateway's name"));
        }
        if now >= cert.valid_before() {
            return Err(unusable("it has expired"));
        }
        Ok(cert)
    }

    #[cfg(test)]
    pub(crate) fn key(&self) -> &PrivateKey {
        &self.key
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::testing::{certificate, key};

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn only_a_host_certificate_of_this_key_for_the_gateway_name_is_taken() {
        let host = HostKey::new().unwrap();
        let ca = key(50);
        let text = |cert: Certificate| cert.to_openssh().unwrap();
        let good = certificate(
            &ca,
            host.key(),
            CertType::Host,
            &[HOST_ALIAS],
            NOW,
            NOW + 60,
        );
        assert!(host.accept(&text(good.clone()), NOW).is_ok());
        assert!(host.accept(&text(good), NOW + 60).is_err(), "expired");
        let other = certificate(&ca, &key(51), CertType::Host, &[HOST_ALIAS], NOW, NOW + 60);
        assert!(host.accept(&text(other), NOW).is_err(), "another key");
        let user = certificate(
            &ca,
            host.key(),
            CertType::User,
            &[HOST_ALIAS],
            NOW,
            NOW + 60,
        );
        assert!(host.accept(&text(user), NOW).is_err(), "a user certificate");
        let wildcard = certificate(&ca, host.key(), CertType::Host, &[], NOW, NOW + 60);
        assert!(host.accept(&text(wildcard), NOW).is_err(), "for any name");
        assert!(host
            .accept("ssh-ed25519-cert-v01@openssh.com AAAA", NOW)
            .is_err());
    }

    #[tokio::test]
    async fn the_certificate_is_asked_for_once_and_renewed_at_half_life() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;

        let host = HostKey::new().unwrap();
        let asked = Arc::new(AtomicUsize::new(0));
        let link = LinkClient::default();
        let counter = asked.clone();
        let _link = link.fake_link(move |request| {
            let Request::GatewayHostCertificate { public_key } = request else {
                return Response::error("unexpected");
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let subject = russh::keys::PublicKey::from_openssh(&public_key).unwrap();
            let mut builder = russh::keys::ssh_key::certificate::Builder::new(
                [1u8; 16],
                subject.key_data().clone(),
                NOW - 60,
                NOW + 1000,
            )
            .unwrap();
            builder.cert_type(CertType::Host).unwrap();
            builder.valid_principal(HOST_ALIAS).unwrap();
            let cert = builder.sign(&key(60)).unwrap();
            Response::SshCertificate {
                certificate: cert.to_openssh().unwrap(),
                valid_before: NOW + 1000,
            }
        });
        let config = host.server_config(&link, NOW).await.unwrap();
        assert_eq!(config.certificates.len(), 1);
        assert_eq!(&config.methods[..], &[russh::MethodKind::PublicKey]);
        host.server_config(&link, NOW + 400).await.unwrap();
        assert_eq!(asked.load(Ordering::Relaxed), 1, "cached before half-life");
        host.server_config(&link, NOW + 500).await.unwrap();
        assert_eq!(asked.load(Ordering::Relaxed), 2, "renewed at half-life");
    }

    #[tokio::test]
    async fn a_certificate_still_valid_is_kept_when_renewal_fails() {
        let host = HostKey::new().unwrap();
        let ca = key(61);
        let cert = certificate(
            &ca,
            host.key(),
            CertType::Host,
            &[HOST_ALIAS],
            NOW,
            NOW + 100,
        );
        *host.current.lock().await = Some(Current {
            config: config::server(host.key.clone(), cert),
            renew_at: NOW + 50,
            valid_before: NOW + 100,
        });
        let link = LinkClient::default();
        assert!(host.server_config(&link, NOW + 60).await.is_ok());
        assert!(host.server_config(&link, NOW + 100).await.is_err());
    }

    #[tokio::test]
    async fn without_a_link_there_is_no_certificate_and_no_gateway() {
        let host = HostKey::new().unwrap();
        let link = LinkClient::default();
        let err = host.server_config(&link, NOW).await.unwrap_err();
        assert!(err.to_string().contains("no host certificate"), "{err}");
    }
}
