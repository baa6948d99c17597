//! Loopback HTTPS that the CLI terminates: a certificate authority of the user's own, a leaf
//! certificate per listener, and the TLS acceptor; shared by every `connect` mode that serves
//! HTTP on a local TCP port (the Proxmox API's `--listen-port` and `--exec`, and the client
//! issue's `connect http`).
//!
//! Why a CA of its own: a local port is reachable by every user of the machine, so clients
//! must check whom they talk to, and tools such as Terraform and proxmoxer check certificates
//! against a CA bundle. The controller's CA is never used: it also signs the cluster links and
//! the workers, and a client that trusted it for `localhost` would trust it for those too.
//! This CA is:
//! - generated once per user (`CONFIG/local-ca/`, the directory 0700, the key 0600), ECDSA
//!   P-256 (what every HTTPS client accepts);
//! - name-constrained (RFC 5280 4.2.1.10, critical) to the DNS name `localhost` and the IP
//!   addresses `127.0.0.1/32` and `::1/128`, and limited to issuing leaves (path length 0):
//!   even its stolen key cannot impersonate another host to a client that trusts it;
//! - rebuilt from its key alone when loaded (its name is derived from the key), as the
//!   controller's CA is.
//!
//! A listener gets a fresh leaf key and certificate for `localhost`, `127.0.0.1` and `::1`,
//! valid as long as the session. Listeners only ever bind loopback addresses ([`bind`]);
//! `connect --listen-addr` binds another address only for a session that injects no
//! credentials, and never serves this CA's leaves there (`connect/listen_addr`).

#[cfg(test)]
mod tests;

use std::fs;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context as _};
use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    NameConstraints, PublicKeyData as _, SanType,
};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use zeroize::Zeroizing;

/// The names every leaf is for, and the only names the CA may certify.
pub(crate) const LOCAL_DNS_NAME: &str = "localhost";
pub(crate) const LOCAL_IPS: [IpAddr; 2] = [
    IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
    IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
];

/// The ALPN protocol the local listener speaks: HTTP/1.1, as the worker does.
const ALPN: &[u8] = b"http/1.1";

/// How long the CA is valid (replace it by deleting its directory).
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The longest a leaf is valid, whatever the session's length.
const MAX_LEAF_LIFETIME: Duration = Duration::from_secs(31 * 24 * 3600);

/// Where the CA lives in the CLI's config directory, and its two files.
const CA_DIR: &str = "local-ca";
const CA_CERT_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "key.pem";

/// The user's local CA, with its key, ready to issue leaves.
pub(crate) struct LocalCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_path: PathBuf,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa")
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

impl LocalCa {
    /// Loads the CA of `config_dir` (the CLI's config directory), creating it on first use.
    pub(crate) fn load_or_create(config_dir: &Path) -> anyhow::Result<Self> {
        let dir = config_dir.join(CA_DIR);
        if !dir.exists() {
            create(config_dir, &dir, SystemTime::now())?;
        }
        Self::load(&dir)
    }

    /// The CA certificate (PEM): what clients trust.
    pub(crate) fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The file holding [`Self::cert_pem`], e.g. for `curl --cacert`.
    pub(crate) fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// A TLS acceptor for one listener: a fresh leaf for `localhost`, `127.0.0.1` and `::1`,
    /// valid for `lifetime` (at most a month), speaking HTTP/1.1.
    pub(crate) fn acceptor(&self, lifetime: Duration) -> anyhow::Result<TlsAcceptor> {
        let mut names = vec![LOCAL_DNS_NAME.to_owned()];
        names.extend(LOCAL_IPS.iter().map(IpAddr::to_string));
        let (cert, key) = self.issue(&names, lifetime.min(MAX_LEAF_LIFETIME), SystemTime::now())?;
        let config = portcullis_crypto::tls::https_server_config(vec![cert], key, ALPN)
            .context("cannot set up the local HTTPS listener")?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// A leaf certificate and its new key for `names` (DNS names or IP addresses).
    fn issue(
        &self,
        names: &[String],
        lifetime: Duration,
        now: SystemTime,
    ) -> anyhow::Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .context("cannot generate a key for the local HTTPS listener")?;
        let mut params = CertificateParams::default();
        set_validity(&mut params, lifetime, now);
        params
            .distinguished_name
            .push(DnType::CommonName, LOCAL_DNS_NAME);
        for name in names {
            params.subject_alt_names.push(match name.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    name.clone()
                        .try_into()
                        .with_context(|| format!("{name:?} is not a DNS name"))?,
                ),
            });
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &self.issuer)
            .context("cannot sign the local HTTPS certificate")?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((cert.der().clone(), key))
    }

    fn load(dir: &Path) -> anyhow::Result<Self> {
        let key_path = dir.join(CA_KEY_FILE);
        let cert_path = dir.join(CA_CERT_FILE);
        let mode = fs::metadata(&key_path)
            .with_context(|| format!("cannot read the local CA key {}", key_path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            bail!(
                "the local CA key {} is readable by others (mode {:o}): run `chmod 600 {}`, or \
                 delete {} to make a new CA",
                key_path.display(),
                mode & 0o777,
                key_path.display(),
                dir.display()
            );
        }
        let key_pem = Zeroizing::new(
            fs::read_to_string(&key_path)
                .with_context(|| format!("cannot read the local CA key {}", key_path.display()))?,
        );
        let key = KeyPair::from_pkcs8_pem_and_sign_algo(&key_pem, &rcgen::PKCS_ECDSA_P256_SHA256)
            .with_context(|| damaged(dir, "its key is not a P-256 PKCS#8 key"))?;
        let cert_pem = fs::read_to_string(&cert_path).with_context(|| {
            format!(
                "cannot read the local CA certificate {}",
                cert_path.display()
            )
        })?;
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .with_context(|| damaged(dir, "its certificate is not PEM"))?;
        if cert_spki(&der)? != key.subject_public_key_info() {
            bail!(damaged(dir, "its certificate is not its key's"));
        }
        let params = ca_params(&key);
        Ok(Self {
            issuer: Issuer::new(params, key),
            cert_pem,
            cert_path,
        })
    }
}

fn damaged(dir: &Path, why: &str) -> String {
    format!(
        "the local CA in {} is damaged ({why}): delete the directory and a new CA is made",
        dir.display()
    )
}

/// The SubjectPublicKeyInfo of a CA certificate.
fn cert_spki(der: &CertificateDer<'_>) -> anyhow::Result<Vec<u8>> {
    portcullis_crypto::tls::spki_of(der).context("cannot parse the local CA certificate")
}

/// The CA's parameters; its name is derived from its key, so that an issuer can be rebuilt
/// from the stored key alone.
fn ca_params(key: &KeyPair) -> CertificateParams {
    let fingerprint = portcullis_proto::keys::spki_fingerprint(&key.subject_public_key_info());
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Portcullis");
    dn.push(
        DnType::CommonName,
        format!(
            "Portcullis local CA {} (localhost only)",
            &fingerprint[..16]
        ),
    );
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let mut permitted = vec![GeneralSubtree::DnsName(LOCAL_DNS_NAME.to_owned())];
    permitted.extend(
        LOCAL_IPS.iter().map(|ip| {
            GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(*ip, host_prefix(*ip)))
        }),
    );
    params.name_constraints = Some(NameConstraints {
        permitted_subtrees: permitted,
        excluded_subtrees: Vec::new(),
    });
    params
}

/// The prefix length of a single address: /32 or /128.
fn host_prefix(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn set_validity(params: &mut CertificateParams, lifetime: Duration, now: SystemTime) {
    // Five minutes of back-dating absorbs a clock that steps back.
    let now = time::OffsetDateTime::from(now);
    params.not_before = now - Duration::from_secs(300);
    params.not_after = now + lifetime;
}

/// Makes a new CA in `dir`: generated in a private directory beside it, then renamed into
/// place, so that two processes starting at once end up sharing one CA (the loser's rename
/// fails and it loads the winner's).
fn create(config_dir: &Path, dir: &Path, now: SystemTime) -> anyhow::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(config_dir)
        .with_context(|| format!("cannot create {}", config_dir.display()))?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .context("cannot generate the local CA key")?;
    let mut params = ca_params(&key);
    set_validity(&mut params, CA_LIFETIME, now);
    let cert = params
        .self_signed(&key)
        .context("cannot make the local CA certificate")?;
    let mut suffix = [0u8; 6];
    portcullis_crypto::random::fill(&mut suffix)?;
    let staging = config_dir.join(format!(".{CA_DIR}-{}", hex::encode(suffix)));
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .with_context(|| format!("cannot create {}", staging.display()))?;
    let written = (|| {
        write_new(
            &staging.join(CA_KEY_FILE),
            key.serialize_pem().as_bytes(),
            0o600,
        )?;
        write_new(&staging.join(CA_CERT_FILE), cert.pem().as_bytes(), 0o644)?;
        anyhow::Ok(())
    })();
    let placed = written.and_then(|()| {
        fs::rename(&staging, dir).or_else(|err| {
            if dir.exists() {
                Ok(()) // Another process made it first: use theirs.
            } else {
                Err(err).with_context(|| format!("cannot create {}", dir.display()))
            }
        })
    });
    let _ = fs::remove_dir_all(&staging);
    placed
}

/// Writes a file that must not exist yet, with `mode` from its creation.
pub(crate) fn write_new(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    // The umask may have narrowed the mode; never widened it. Set it exactly.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Binds a local listener: loopback addresses only, since whoever reaches the port acts as
/// the session's user (the session secret still guards it from other local users).
pub(crate) async fn bind(ip: IpAddr, port: u16) -> anyhow::Result<TcpListener> {
    if !ip.is_loopback() {
        bail!(
            "refusing to listen on {ip}: a session's local end is a credential, so it listens \
             on loopback addresses only (127.0.0.1 or ::1)"
        );
    }
    TcpListener::bind((ip, port))
        .await
        .with_context(|| format!("cannot listen on {ip}:{port}; pick another port or 0"))
}

/// A temporary CA bundle for a child process: the system's roots and the local CA, in a
/// 0600 file inside a private directory, both removed when dropped.
pub(crate) struct CaBundle {
    /// Removes the directory, and the bundle in it, when dropped.
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl CaBundle {
    /// Writes the bundle: the roots the system trusts (as `SSL_CERT_FILE` and the platform's
    /// store name them) followed by `ca`'s certificate.
    pub(crate) fn write(ca: &LocalCa) -> anyhow::Result<Self> {
        let roots = rustls_native_certs::load_native_certs();
        for err in &roots.errors {
            tracing::debug!(error = %err, "a system root certificate was not read");
        }
        let mut text = String::new();
        for cert in &roots.certs {
            text.push_str(&crate::cli::connect::tls::pem("CERTIFICATE", cert.as_ref()));
        }
        text.push_str(ca.cert_pem());
        let dir = tempfile::Builder::new()
            .prefix("portcullis-ca-")
            .permissions(fs::Permissions::from_mode(0o700))
            .tempdir()
            .context("cannot create a private directory for the CA bundle")?;
        let path = dir.path().join("ca-bundle.pem");
        write_new(&path, text.as_bytes(), 0o600)?;
        Ok(Self { _dir: dir, path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The directory holding the bundle (removed with it).
    #[cfg(test)]
    fn dir(&self) -> &Path {
        self._dir.path()
    }
}

impl std::fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaBundle")
            .field("path", &self.path)
            .finish()
    }
}
