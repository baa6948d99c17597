//! The keyset: every key the controllers use (grant signing, the TLS CA, the local SSH user
//! CA, the SSH host CA of the workers' gateways, audit signing, the encryption of stored
//! recordings) lives in the store, its private half sealed under the master key. Each
//! purpose has one active key; rotation demotes it to `previous`, which is still accepted
//! for verification until it is retired. Workers receive public keys only. The TLS CA rotates
//! in three steps with an overlap (a `next` key trusted before it signs): see [`rotation`].

pub(crate) mod ca;
pub(crate) mod identities;
pub(crate) mod master;
pub(crate) mod rotation;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::RwLock;

use crate::audit::event::{KeyPurpose, KeyRef};
use crate::audit::{Actor, AuditEvent, AuditedTx, Event, Signer};
use crate::clock::SharedClock;
use crate::ids::{new_id, IdKind};
use crate::secret::{ExposeSecret as _, SecretBytes};
use crate::store::keys::{self as key_rows, KeyRecord};
use crate::store::{Store, StoreError};
pub use master::MasterKey;
use portcullis_crypto::ed25519::SigningKey;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    MasterKey(String),
    #[error(
        "cannot unseal key {0}: the master key does not match the one the keyset was sealed with"
    )]
    Unseal(String),
    #[error("key operation failed: {0}")]
    Crypto(String),
    #[error("no active {0} key in the store; start a controller once to create the keyset")]
    Missing(&'static str),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    Grant,
    TlsCa,
    /// Signs SSH user certificates (the embedded CA, `local-ca`), never host certificates.
    SshCa,
    /// Signs the host certificates of the workers' SSH gateways (for
    /// [`portcullis_proto::gateway::HOST_ALIAS`] only), never user certificates.
    SshHostCa,
    Audit,
    /// Encrypts stored recording chunks (AES-256-GCM, a random 32-byte key): no public half.
    /// Rotation keeps the previous keys for opening what they sealed; a retired one can no
    /// longer open its chunks.
    Recording,
}

impl Purpose {
    pub const ALL: [Purpose; 6] = [
        Purpose::Grant,
        Purpose::TlsCa,
        Purpose::SshCa,
        Purpose::SshHostCa,
        Purpose::Audit,
        Purpose::Recording,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Grant => "grant",
            Purpose::TlsCa => "tls-ca",
            Purpose::SshCa => "ssh-ca",
            Purpose::SshHostCa => "ssh-host-ca",
            Purpose::Audit => "audit",
            Purpose::Recording => "recording",
        }
    }

    pub fn parse(text: &str) -> Option<Purpose> {
        Purpose::ALL.into_iter().find(|p| p.as_str() == text)
    }
}

/// A usable key with its private half unsealed.
#[derive(Clone)]
pub struct ActiveKey {
    pub id: String,
    /// The private key (PKCS#8), zeroised when the last copy of the key is dropped.
    pub pkcs8: Arc<SecretBytes>,
    pub public_key: Vec<u8>,
    pub certificate: Option<String>,
}

/// A public key accepted for verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub id: String,
    pub state: String,
    pub public_key: Vec<u8>,
    /// The CA certificate (PEM) of a `tls-ca` key.
    pub certificate: Option<String>,
}

/// What everyone trusts for the TLS CA: every usable CA's certificate, the signing one first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaBundle {
    /// The id of the CA that signs now (the active `tls-ca` key).
    pub signing_key_id: String,
    /// PEM certificates, the signing CA's first.
    pub certificates: Vec<String>,
}

impl CaBundle {
    /// The bundle as one PEM file.
    pub fn pem(&self) -> String {
        self.certificates.concat()
    }

    /// Hex SHA-256 of [`CaBundle::pem`]: what the API names in its responses so that a
    /// client notices a change.
    pub fn digest(&self) -> String {
        portcullis_crypto::digest::sha256_hex(self.pem().as_bytes())
    }
}

const CACHE_TTL: Duration = Duration::from_secs(2);

/// Access to the keyset, with a short cache so that hot paths do not query the store on
/// every request; changes made by another controller are seen within [`CACHE_TTL`].
#[derive(Clone)]
pub struct Keyset {
    store: Store,
    master: Arc<MasterKey>,
    cache: Arc<RwLock<KeyCache>>,
    /// The parsed audit signing key, reused while it is the active one.
    audit_signer: Arc<std::sync::Mutex<Option<Arc<Signer>>>>,
    /// The parsed grant signing key and its id, reused while it is the active one (parsing
    /// an Ed25519 key costs as much as a signature: once per grant was a tenth of
    /// authorize-session's CPU).
    grant_signer: Arc<std::sync::Mutex<Option<ParsedKey>>>,
    /// Key and event times, and the cache's age.
    clock: SharedClock,
    /// The algorithm of the TLS CAs it makes: [`ca::KeyAlgorithm::NEW`] but in tests of what
    /// older keysets hold.
    tls_ca_algorithm: ca::KeyAlgorithm,
}

/// A key's id and its private half parsed for signing.
type ParsedKey = (String, Arc<SigningKey>);

/// The active key of a purpose with every key accepted for verification.
type LoadedKeys = (ActiveKey, Vec<PublicKey>);
type KeyCache = HashMap<Purpose, (Instant, Arc<LoadedKeys>)>;

impl Keyset {
    /// A keyset on the system's clock.
    pub fn new(store: Store, master: MasterKey) -> Keyset {
        Keyset {
            store,
            master: Arc::new(master),
            cache: Arc::default(),
            audit_signer: Arc::default(),
            grant_signer: Arc::default(),
            clock: crate::clock::system(),
            tls_ca_algorithm: ca::KeyAlgorithm::NEW,
        }
    }

    /// The same keyset making its TLS CAs Ed25519, as releases before ECDSA P-256 did: only
    /// for tests of what an older deployment's keyset holds (browsers refuse such a CA's
    /// certificates). No command line or config reaches it.
    #[doc(hidden)]
    pub fn with_legacy_ed25519_tls_ca(self) -> Keyset {
        Keyset {
            tls_ca_algorithm: ca::KeyAlgorithm::Ed25519,
            ..self
        }
    }

    /// The same keyset on `clock`.
    pub fn with_clock(self, clock: SharedClock) -> Keyset {
        Keyset { clock, ..self }
    }

    /// The clock the keyset and the transactions it signs read.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Seals a short-lived secret kept in the store (e.g. a pending login's PKCE verifier),
    /// bound to `context` so it cannot be moved to another row.
    pub fn seal_secret(&self, context: &str, plain: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.master.seal(context, plain)
    }

    /// Opens what [`Keyset::seal_secret`] sealed with the same `context`.
    pub fn open_secret(&self, context: &str, sealed: &[u8]) -> Result<SecretBytes, KeyError> {
        self.master.open(context, sealed)
    }

    /// Creates the active key of every purpose that has none (first start, or the first
    /// start of a release that added a purpose). Safe when several
    /// controllers start at once: the creation runs under a store lock.
    pub async fn ensure(&self) -> Result<(), KeyError> {
        let mut tx = AuditedTx::begin_before_audit_key(&self.store, self.clock.clone()).await?;
        self.store.lock(tx.read(), "keyset").await?;
        // The audit key first: the creation of every other key is an event it signs.
        let mut signer: Option<Signer> = None;
        for purpose in [
            Purpose::Audit,
            Purpose::Grant,
            Purpose::TlsCa,
            Purpose::SshCa,
            Purpose::SshHostCa,
            Purpose::Recording,
        ] {
            let usable = key_rows::usable(tx.read(), purpose.as_str()).await?;
            if let Some(existing) = usable.first() {
                // Fails early, with a clear message, when the master key changed.
                self.master
                    .open(&context(&existing.id, purpose), &existing.sealed_private)?;
            }
            let record = match usable.iter().find(|k| k.state == "active") {
                Some(active) => active.clone(),
                None => {
                    let record = self.generate(purpose)?;
                    key_rows::insert(tx.write(), &record).await?;
                    tx.record(AuditEvent::new(
                        Actor::system(),
                        Event::KeyCreated {
                            details: KeyPurpose {
                                key_id: record.id.clone(),
                                purpose: purpose.as_str().to_owned(),
                            },
                        },
                    ));
                    record
                }
            };
            if purpose == Purpose::Audit {
                let pkcs8 = self
                    .master
                    .open(&context(&record.id, purpose), &record.sealed_private)?;
                signer = Some(
                    Signer::from_pkcs8(&record.id, pkcs8.expose_secret())
                        .map_err(|e| KeyError::Crypto(e.to_string()))?,
                );
            }
        }
        tx.sign_with(Arc::new(signer.ok_or(KeyError::Missing("audit"))?));
        tx.commit_recorded().await?;
        Ok(())
    }

    fn generate(&self, purpose: Purpose) -> Result<KeyRecord, KeyError> {
        let id = new_id(IdKind::Key);
        if purpose == Purpose::Recording {
            let key = zeroize::Zeroizing::new(
                portcullis_crypto::random::bytes::<{ portcullis_crypto::aead::KEY_LEN }>()
                    .map_err(|e| KeyError::Crypto(e.to_string()))?,
            );
            return Ok(KeyRecord {
                sealed_private: self.master.seal(&context(&id, purpose), key.as_ref())?,
                public_key: Vec::new(),
                id,
                purpose: purpose.as_str().into(),
                algorithm: "aes-256-gcm".into(),
                state: "active".into(),
                created_at: crate::clock::to_i64(self.clock.unix_secs()),
                retired_at: None,
                certificate: None,
            });
        }
        // The TLS CA's algorithm is the keyset's (P-256); every other key is Ed25519.
        let algorithm = match purpose {
            Purpose::TlsCa => self.tls_ca_algorithm,
            _ => ca::KeyAlgorithm::Ed25519,
        };
        let pair = algorithm.generate()?;
        let pkcs8 = zeroize::Zeroizing::new(pair.serialize_der());
        let certificate = match purpose {
            Purpose::TlsCa => Some(ca::self_signed_ca(&id, &pkcs8, self.clock.now())?),
            _ => None,
        };
        Ok(KeyRecord {
            sealed_private: self.master.seal(&context(&id, purpose), &pkcs8)?,
            public_key: pair.public_key_raw().to_vec(),
            id,
            purpose: purpose.as_str().into(),
            algorithm: algorithm.as_str().into(),
            state: "active".into(),
            created_at: crate::clock::to_i64(self.clock.unix_secs()),
            retired_at: None,
            certificate,
        })
    }

    async fn load(&self, purpose: Purpose) -> Result<Arc<LoadedKeys>, KeyError> {
        if let Some((at, entry)) = self.cache.read().await.get(&purpose) {
            if self.clock.instant().duration_since(*at) < CACHE_TTL {
                return Ok(entry.clone());
            }
        }
        let mut conn = self.store.conn().await?;
        let rows = key_rows::usable(&mut conn, purpose.as_str()).await?;
        let active = rows
            .iter()
            .find(|k| k.state == "active")
            .ok_or(KeyError::Missing(purpose.as_str()))?;
        let pkcs8 = self
            .master
            .open(&context(&active.id, purpose), &active.sealed_private)?;
        let entry = Arc::new((
            ActiveKey {
                id: active.id.clone(),
                pkcs8: Arc::new(pkcs8),
                public_key: active.public_key.clone(),
                certificate: active.certificate.clone(),
            },
            rows.iter()
                .map(|k| PublicKey {
                    id: k.id.clone(),
                    state: k.state.clone(),
                    public_key: k.public_key.clone(),
                    certificate: k.certificate.clone(),
                })
                .collect(),
        ));
        self.cache
            .write()
            .await
            .insert(purpose, (self.clock.instant(), entry.clone()));
        Ok(entry)
    }

    /// The active key of a purpose.
    pub async fn active(&self, purpose: Purpose) -> Result<ActiveKey, KeyError> {
        Ok(self.load(purpose).await?.0.clone())
    }

    /// Public keys accepted for verification (active and previous).
    pub async fn verification_keys(&self, purpose: Purpose) -> Result<Vec<PublicKey>, KeyError> {
        Ok(self.load(purpose).await?.1.clone())
    }

    /// The grant-verification keys as the link hands them to workers, and as the controller
    /// checks a grant a worker sends back.
    pub async fn grant_keys(&self) -> Result<Vec<portcullis_proto::grant::GrantKey>, KeyError> {
        Ok(self
            .verification_keys(Purpose::Grant)
            .await?
            .into_iter()
            .map(|k| portcullis_proto::grant::GrantKey {
                kid: k.id,
                public_key: portcullis_proto::keys::b64(&k.public_key),
            })
            .collect())
    }

    /// The audit signing key (the active `audit` key), parsed once per key. Call it before
    /// beginning the transaction that records events: it may read the store.
    pub async fn audit_signer(&self) -> Result<Arc<Signer>, KeyError> {
        let key = self.active(Purpose::Audit).await?;
        let mut slot = self
            .audit_signer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(signer) = slot.as_ref().filter(|s| s.key_id() == key.id) {
            return Ok(signer.clone());
        }
        let signer = Arc::new(
            Signer::from_pkcs8(&key.id, key.pkcs8.expose_secret())
                .map_err(|e| KeyError::Crypto(e.to_string()))?,
        );
        *slot = Some(signer.clone());
        Ok(signer)
    }

    /// The active grant key, parsed once for signing while it stays the active one.
    pub(crate) async fn grant_signer(&self) -> Result<(ActiveKey, Arc<SigningKey>), KeyError> {
        let key = self.active(Purpose::Grant).await?;
        let mut slot = self
            .grant_signer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, signer)) = slot.as_ref().filter(|(id, _)| *id == key.id) {
            return Ok((key, signer.clone()));
        }
        let signer = Arc::new(
            SigningKey::from_pkcs8(key.pkcs8.expose_secret())
                .map_err(|e| KeyError::Crypto(e.to_string()))?,
        );
        *slot = Some((key.id.clone(), signer.clone()));
        Ok((key, signer))
    }

    /// Every audit public key ever created (retired ones too: old events stay verifiable).
    pub async fn audit_public_keys(
        &self,
    ) -> Result<Vec<crate::audit::chain::PublicKeyInfo>, KeyError> {
        let mut conn = self.store.conn().await?;
        Ok(key_rows::list(&mut conn)
            .await?
            .into_iter()
            .filter(|k| k.purpose == Purpose::Audit.as_str())
            .map(|k| {
                crate::audit::chain::PublicKeyInfo::ed25519(&k.id, &k.public_key, Some(&k.state))
            })
            .collect())
    }

    /// Every recording key by id (active, previous or retired), unsealed: what opens stored
    /// chunks.
    pub(crate) async fn recording_keys(&self) -> Result<Vec<(String, SecretBytes)>, KeyError> {
        let mut conn = self.store.conn().await?;
        // Retired ones too: retiring a recording key stops it sealing (rotation already
        // did), but the chunks sealed under it stay readable until the retention deletes
        // them; otherwise a retirement would destroy recordings.
        let rows = key_rows::list(&mut conn).await?;
        drop(conn);
        rows.into_iter()
            .filter(|k| k.purpose == Purpose::Recording.as_str())
            .map(|k| {
                let key = self
                    .master
                    .open(&context(&k.id, Purpose::Recording), &k.sealed_private)?;
                Ok((k.id, key))
            })
            .collect()
    }

    /// The TLS certificate authority.
    pub async fn certificate_authority(&self) -> Result<ca::CertificateAuthority, KeyError> {
        let key = self.active(Purpose::TlsCa).await?;
        let cert = key
            .certificate
            .as_deref()
            .ok_or(KeyError::Missing("tls-ca certificate"))?;
        ca::CertificateAuthority::new(&key.id, &key.pkcs8, cert, self.clock.clone())
    }

    /// The TLS CA trust bundle (every usable CA, the signing one first).
    pub async fn ca_bundle(&self) -> Result<CaBundle, KeyError> {
        let loaded = self.load(Purpose::TlsCa).await?;
        let certificates = rotation::bundle(
            loaded
                .1
                .iter()
                .filter_map(|k| Some((k.state.as_str(), k.certificate.as_deref()?))),
        );
        Ok(CaBundle {
            signing_key_id: loaded.0.id.clone(),
            certificates,
        })
    }

    /// Makes a new key: an active one, the old one staying valid for verification until
    /// retired; for the TLS CA, a `next` one, trusted but not signing until
    /// [`Keyset::activate`] (see [`rotation`]).
    pub async fn rotate(&self, purpose: Purpose) -> Result<String, KeyError> {
        let mut record = self.generate(purpose)?;
        record.state = rotation::rotated_state(purpose).to_owned();
        let mut tx = AuditedTx::begin(&self.store, self).await?;
        self.store.lock(tx.read(), "keyset").await?;
        let usable = key_rows::usable(tx.read(), purpose.as_str()).await?;
        let states: Vec<&str> = usable.iter().map(|k| k.state.as_str()).collect();
        rotation::may_rotate(purpose, &states).map_err(KeyError::Refused)?;
        if record.state == rotation::ACTIVE {
            key_rows::demote_active(tx.write(), purpose.as_str()).await?;
        }
        key_rows::insert(tx.write(), &record).await?;
        let event = Event::KeyRotated {
            details: KeyPurpose {
                key_id: record.id.clone(),
                purpose: purpose.as_str().to_owned(),
            },
        };
        tx.commit(AuditEvent::new(Actor::system(), event)).await?;
        self.cache.write().await.clear();
        Ok(record.id)
    }

    /// Makes the `next` TLS CA `key_id` the signing one; the active one becomes `previous`
    /// and stays trusted until retired. Every controller issues from it within the keyset's
    /// cache time.
    pub async fn activate(&self, key_id: &str) -> Result<(), KeyError> {
        let purpose = Purpose::TlsCa;
        let mut tx = AuditedTx::begin(&self.store, self).await?;
        self.store.lock(tx.read(), "keyset").await?;
        let rows = key_rows::list(tx.read()).await?;
        let state = rows
            .iter()
            .find(|k| k.id == key_id && k.purpose == purpose.as_str())
            .map(|k| k.state.as_str());
        rotation::may_activate(key_id, state).map_err(KeyError::Refused)?;
        key_rows::demote_active(tx.write(), purpose.as_str()).await?;
        key_rows::activate_next(tx.write(), key_id).await?;
        let event = Event::KeyActivated {
            details: KeyPurpose {
                key_id: key_id.to_owned(),
                purpose: purpose.as_str().to_owned(),
            },
        };
        tx.commit(AuditEvent::new(Actor::system(), event)).await?;
        self.cache.write().await.clear();
        Ok(())
    }

    /// Retires a previous key: it is no longer accepted anywhere.
    pub async fn retire(&self, key_id: &str) -> Result<(), KeyError> {
        let mut tx = AuditedTx::begin(&self.store, self).await?;
        let now = crate::clock::to_i64(self.clock.unix_secs());
        if !key_rows::retire(tx.write(), key_id, now).await? {
            return Err(KeyError::Refused(format!(
                "key {key_id} is not a previous key: only rotated-out keys can be retired (see `portcullis controller keys list`)"
            )));
        }
        let event = Event::KeyRetired {
            details: KeyRef {
                key_id: key_id.to_owned(),
            },
        };
        tx.commit(AuditEvent::new(Actor::system(), event)).await?;
        self.cache.write().await.clear();
        Ok(())
    }

    /// Every key's metadata (never private material).
    pub async fn list(&self) -> Result<Vec<KeyRecord>, KeyError> {
        let mut conn = self.store.conn().await?;
        let mut rows = key_rows::list(&mut conn).await?;
        for row in &mut rows {
            row.sealed_private.clear();
        }
        Ok(rows)
    }
}

/// The associated data a key's private half is sealed with: its id and purpose.
pub(crate) fn context(id: &str, purpose: Purpose) -> String {
    format!("{id}/{}", purpose.as_str())
}
