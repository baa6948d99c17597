//! One enrolment attempt, dialling or dialled, over an in-memory pipe against a stand-in
//! controller that speaks the controller's TLS (its link certificate issued by the CA the
//! token pins, the CA sent after it) and answers the join request.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use portcullis_crypto::tls::verify::{AnyKey, PinnedCa, TrustBundle};
use portcullis_crypto::tls::{self, ClientAuth, ServerCert};
use portcullis_proto::api::{join_token, JoinResponse};
use portcullis_proto::link::{self, Frame, Request, Response};
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::DuplexStream;
use tokio_util::codec::Framed;

use super::{Enrolment, Side};

const TIMEOUT: Duration = Duration::from_secs(5);

/// A controller CA and a link certificate it issued for `portcullis-controller`.
struct Controller {
    ca: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Controller {
    fn new() -> Controller {
        let ca_key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap().der().clone();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mut params = CertificateParams::new(vec![link::CONTROLLER_SERVER_NAME.into()]).unwrap();
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &issuer).unwrap().der().clone();
        Controller {
            chain: vec![cert, ca.clone()],
            ca,
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }

    /// A join token that pins this controller's CA.
    fn token(&self) -> String {
        let spki = tls::spki_of(&self.ca).unwrap();
        join_token::format(&portcullis_proto::keys::spki_fingerprint(&spki), "s3cret")
    }

    /// The controller's end of the pipe after TLS, in the role opposite to the worker's.
    async fn handshake(&self, stream: DuplexStream, worker: Side) -> Result<Link, String> {
        match worker {
            Side::Dial => {
                let workers =
                    PinnedCa::worker_or_none(TrustBundle::new(vec![self.ca.clone()])).unwrap();
                let cert = ServerCert::Single {
                    chain: self.chain.clone(),
                    key: self.key.clone_key(),
                };
                let config = tls::server_config(Arc::new(workers), cert, link::ALPN).unwrap();
                let tls = tokio_rustls::TlsAcceptor::from(Arc::new(config))
                    .accept(stream)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Framed::new(
                    tokio_rustls::TlsStream::Server(tls),
                    link::codec(),
                ))
            }
            Side::Accept => {
                let auth = ClientAuth::Cert {
                    chain: self.chain.clone(),
                    key: self.key.clone_key(),
                };
                let config = tls::client_config(Arc::new(AnyKey), auth, link::ALPN).unwrap();
                let name = ServerName::try_from("portcullis-worker").unwrap();
                let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                    .connect(name, stream)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Framed::new(
                    tokio_rustls::TlsStream::Client(tls),
                    link::codec(),
                ))
            }
        }
    }
}

type Link = Framed<tokio_rustls::TlsStream<DuplexStream>, tokio_util::codec::LengthDelimitedCodec>;

/// What the stand-in controller does with the join request.
#[derive(Clone, Copy)]
enum Answer {
    Joined,
    Refuse,
    Hang,
}

fn joined() -> JoinResponse {
    JoinResponse {
        worker_id: "w_1".into(),
        cert_pem: "CERT".into(),
        ca_pem: "CA".into(),
        cert_expires_at: 123,
    }
}

/// Runs one attempt of a worker on `side` against `controller` (whose token the worker may
/// or may not hold); the worker's result and the join request the controller received.
async fn attempt(
    side: Side,
    token: &str,
    controller: Controller,
    answer: Answer,
) -> (Result<JoinResponse, String>, Option<Request>) {
    let enrolment = Enrolment::new(token, "edge-1", "10.0.0.5:7443", side).unwrap();
    let (worker_end, controller_end) = tokio::io::duplex(64 * 1024);
    let controller = tokio::spawn(async move {
        let mut link = controller.handshake(controller_end, side).await.ok()?;
        let frame = link.next().await?.ok()?;
        let Frame::Request { id, body } = link::decode(&frame).unwrap() else {
            panic!("not a request");
        };
        let body_out = match answer {
            Answer::Joined => Response::Joined(joined()),
            Answer::Refuse => Response::Error {
                message: "the join token was already used".into(),
                trouble: None,
            },
            Answer::Hang => return Some(body),
        };
        let reply = link::encode(&Frame::Response { id, body: body_out }).unwrap();
        link.send(reply).await.unwrap();
        Some(body)
    });
    let result = tokio::time::timeout(TIMEOUT, enrolment.attempt(worker_end, TIMEOUT))
        .await
        .unwrap_or_else(|_| Err("the attempt did not end".into()));
    (result, controller.await.unwrap())
}

#[tokio::test]
async fn a_worker_enrols_with_the_controller_its_token_pins_whichever_side_dials() {
    for side in [Side::Dial, Side::Accept] {
        let controller = Controller::new();
        let token = controller.token();
        let (result, request) = attempt(side, &token, controller, Answer::Joined).await;
        assert_eq!(result.unwrap().worker_id, "w_1", "{side:?}");
        let Some(Request::Join(join)) = request else {
            panic!("{side:?}: the controller received no join request");
        };
        assert_eq!(join.token, token);
        assert_eq!(join.name, "edge-1");
        assert_eq!(join.proxy_addr, "10.0.0.5:7443");
        assert!(!join.public_key.is_empty());
    }
}

#[tokio::test]
async fn a_controller_of_another_ca_never_sees_the_token() {
    for side in [Side::Dial, Side::Accept] {
        let token = Controller::new().token();
        let (result, request) = attempt(side, &token, Controller::new(), Answer::Joined).await;
        let err = result.unwrap_err();
        assert!(
            err.contains("does not match the join token"),
            "{side:?}: {err}"
        );
        assert!(request.is_none(), "{side:?}: the token was sent");
    }
}

#[tokio::test]
async fn a_refusal_is_reported_in_the_controllers_words() {
    for side in [Side::Dial, Side::Accept] {
        let controller = Controller::new();
        let token = controller.token();
        let (result, _) = attempt(side, &token, controller, Answer::Refuse).await;
        let err = result.unwrap_err();
        assert!(
            err.contains("refused to enrol this worker: the join token was already used"),
            "{side:?}: {err}"
        );
    }
}

#[tokio::test]
async fn a_controller_that_closes_without_answering_fails_the_attempt() {
    let controller = Controller::new();
    let token = controller.token();
    let (result, request) = attempt(Side::Dial, &token, controller, Answer::Hang).await;
    assert!(matches!(request, Some(Request::Join(_))));
    let err = result.unwrap_err();
    assert!(
        err.contains("closed the link") || err.contains("eof"),
        "{err}"
    );
}

#[test]
fn a_damaged_token_is_refused_before_any_connection() {
    assert!(Enrolment::new("pjt1.zz.s", "edge-1", "10.0.0.5:7443", Side::Dial).is_err());
    assert!(Enrolment::new("bearer", "edge-1", "10.0.0.5:7443", Side::Accept).is_err());
}

#[test]
fn finishing_saves_the_key_of_the_enrolment() {
    let dir = tempfile::tempdir().unwrap();
    let token = join_token::format(&"ab".repeat(32), "s");
    let enrolment = Enrolment::new(&token, "edge-1", "10.0.0.5:7443", Side::Dial).unwrap();
    let identity = enrolment.finish(dir.path(), joined(), 100).unwrap();
    assert_eq!(identity.worker_id, "w_1");
    assert_eq!(identity.cert_issued_at, 100);
    let public = rcgen::PublicKeyData::subject_public_key_info(&enrolment.key);
    assert_eq!(
        identity.fingerprint().unwrap(),
        portcullis_proto::keys::spki_fingerprint(&public)
    );
}
