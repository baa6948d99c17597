//! The controller's own TLS identities, issued by the signing TLS CA, and the CAs it trusts
//! for workers, kept in step with the keyset while the controller runs.
//!
//! A TLS CA rotation (see [`super::rotation`]) changes two things that a running controller
//! holds in its TLS configurations: the bundle of trusted CAs (a `next` CA joins it, a
//! retired one leaves it) and the signing CA (an activation). Every configuration therefore
//! holds a resolver or a [`TrustBundle`] that [`CaIdentities::refresh`] updates in place;
//! [`watch`] calls it every second, so every controller sharing the keyset follows within
//! the keyset's cache time plus a second, without a restart.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_crypto::tls::verify::TrustBundle;
use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

use super::ca::CertificateAuthority;
use super::{CaBundle, KeyError, Keyset};
use crate::api::certificate::ReloadingCertificate;

/// How long the controller's own certificates are valid; they are issued again at each
/// activation and at each start.
const LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// How often [`watch`] looks at the keyset.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The controller's CA-issued identities and trusted CAs.
pub(crate) struct CaIdentities {
    keys: Keyset,
    /// The API's names, when the API presents a CA-issued certificate (no own certificate).
    api_names: Option<Vec<String>>,
    /// The link listener's certificate (`portcullis-controller`, server).
    pub(crate) link: Arc<ReloadingCertificate>,
    /// The API's certificate, when it is CA-issued.
    pub(crate) api: Option<Arc<ReloadingCertificate>>,
    /// The certificate a controller presents when it dials workers.
    pub(crate) dial: Arc<DialIdentity>,
    /// The CAs whose worker certificates the link accepts.
    pub(crate) trust: TrustBundle,
    current: Mutex<CaBundle>,
}

impl CaIdentities {
    /// Issues every identity from the signing CA; `api_names` when the API has no own
    /// certificate.
    pub(crate) async fn start(
        keys: Keyset,
        api_names: Option<Vec<String>>,
    ) -> Result<CaIdentities, KeyError> {
        let bundle = keys.ca_bundle().await?;
        let ca = keys.certificate_authority().await?;
        let issued = Issued::from(&ca, api_names.as_deref())?;
        Ok(CaIdentities {
            link: Arc::new(ReloadingCertificate::new(issued.link)),
            api: issued
                .api
                .map(|api| Arc::new(ReloadingCertificate::new(api))),
            dial: Arc::new(DialIdentity(Arc::new(ReloadingCertificate::new(
                issued.dial,
            )))),
            trust: TrustBundle::new(ders(&bundle)?),
            current: Mutex::new(bundle),
            keys,
            api_names,
        })
    }

    /// The bundle the identities were last brought in step with.
    pub(crate) fn bundle(&self) -> CaBundle {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Brings the identities in step with the keyset; whether anything changed.
    pub(crate) async fn refresh(&self) -> Result<bool, KeyError> {
        let bundle = self.keys.ca_bundle().await?;
        let before = self.bundle();
        if bundle == before {
            return Ok(false);
        }
        if bundle.signing_key_id != before.signing_key_id {
            let ca = self.keys.certificate_authority().await?;
            if ca.key_id != bundle.signing_key_id {
                // The CA and the bundle came from different cache fills; the next look
                // sees them agree.
                return Ok(false);
            }
            let issued = Issued::from(&ca, self.api_names.as_deref())?;
            self.link.replace(issued.link);
            if let (Some(resolver), Some(api)) = (&self.api, issued.api) {
                resolver.replace(api);
            }
            self.dial.0.replace(issued.dial);
        }
        self.trust.replace(ders(&bundle)?);
        *self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = bundle;
        Ok(true)
    }
}

/// Keeps `identities` in step with the keyset until `shutdown`.
pub(crate) async fn watch(identities: Arc<CaIdentities>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(CHECK_INTERVAL) => {}
        }
        match identities.refresh().await {
            Ok(true) => {
                let bundle = identities.bundle();
                tracing::info!(
                    ca.signing = %bundle.signing_key_id,
                    ca.trusted = bundle.certificates.len(),
                    "TLS CA bundle changed; link and API certificates follow it"
                );
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(%error, "cannot read the TLS CA from the keyset; keeping the current certificates")
            }
        }
    }
}

/// The certificates one signing CA issues for a controller.
struct Issued {
    link: CertifiedKey,
    api: Option<CertifiedKey>,
    dial: CertifiedKey,
}

impl Issued {
    fn from(ca: &CertificateAuthority, api_names: Option<&[String]>) -> Result<Issued, KeyError> {
        let link_names = [portcullis_proto::link::CONTROLLER_SERVER_NAME.to_owned()];
        let api = match api_names {
            Some(names) => Some(certified(ca.issue_server_identity(names, LIFETIME)?)?),
            None => None,
        };
        Ok(Issued {
            link: certified(ca.issue_server_identity(&link_names, LIFETIME)?)?,
            api,
            dial: certified(ca.issue_controller_identity(LIFETIME)?)?,
        })
    }
}

fn certified(
    (chain, key): (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
) -> Result<CertifiedKey, KeyError> {
    let signer =
        portcullis_crypto::tls::signing_key(&key).map_err(|e| KeyError::Crypto(e.to_string()))?;
    Ok(CertifiedKey::new(chain, signer))
}

fn ders(bundle: &CaBundle) -> Result<Vec<CertificateDer<'static>>, KeyError> {
    bundle
        .certificates
        .iter()
        .map(|pem| {
            CertificateDer::from_pem_slice(pem.as_bytes())
                .map_err(|e| KeyError::Crypto(format!("bad CA certificate in the keyset: {e}")))
        })
        .collect()
}

/// The identity a controller dials workers with, as a client certificate resolver.
#[derive(Debug)]
pub(crate) struct DialIdentity(Arc<ReloadingCertificate>);

impl ResolvesClientCert for DialIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
