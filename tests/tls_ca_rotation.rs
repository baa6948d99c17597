//! Rotating the internal TLS CA with an overlap, end to end, from the Ed25519 CA of a keyset
//! made before ECDSA P-256 to a P-256 one (what an older deployment does to serve browsers): a
//! controller, a worker and a CLI set up before the rotation keep working through `keys
//! rotate tls-ca` (the new CA trusted, not signing), `keys activate` (the new CA signs the
//! link and API certificates and the worker's renewal) and `keys retire` (the old CA leaves
//! the bundle); a worker that was offline throughout is refused with what to do.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::client::{listen, open_echo};
use common::cluster::{master_key, Controller, Worker};
use common::dev::bin;
use common::wait::{poll, wait_for};
use portcullis_crypto::tls::verify::{chains_to, CaTrust, PinnedCa, Usage};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls_pki_types::pem::PemObject as _;

const LIMIT: Duration = Duration::from_secs(30);

fn certificates(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn certificates_in(path: &Path) -> Vec<CertificateDer<'static>> {
    certificates(&std::fs::read_to_string(path).unwrap_or_default())
}

/// Runs `portcullis controller ARGS --config CONFIG` and returns its stdout.
fn controller(c: &Controller, args: &[&str]) -> String {
    let out = Command::new(bin())
        .arg("controller")
        .args(args)
        .arg("--config")
        .arg(&c.config)
        .env("PORTCULLIS_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "controller {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The id and algorithm of the `tls-ca` key in `state`.
fn tls_ca_with_algorithm(c: &Controller, state: &str) -> (String, String) {
    let list: serde_json::Value =
        serde_json::from_str(&controller(c, &["keys", "list", "--json"])).unwrap();
    let key = list
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["purpose"] == "tls-ca" && k["state"] == state)
        .unwrap_or_else(|| panic!("no {state} tls-ca in {list}"));
    let text = |field: &str| key[field].as_str().unwrap().to_owned();
    (text("id"), text("algorithm"))
}

/// The id of the `tls-ca` key in `state`.
fn tls_ca_in(c: &Controller, state: &str) -> String {
    tls_ca_with_algorithm(c, state).0
}

/// Makes the keyset of the controller about to start in `dir` as releases before ECDSA P-256
/// made it: its TLS CA Ed25519 (through the keyset's own code, on the store and master key
/// the controller will use).
fn older_keyset_with_an_ed25519_ca(dir: &Path) {
    use portcullis_controller::secret::SecretString;
    use portcullis_controller::{Keyset, MasterKey, Store};
    let master = MasterKey::from_file(&master_key(dir)).unwrap();
    let url = format!("sqlite://{}", dir.join("portcullis.db").display());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let store = Store::connect(&SecretString::from(url), 1).await.unwrap();
            store.migrate().await.unwrap();
            Keyset::new(store.clone(), master)
                .with_legacy_ed25519_tls_ca()
                .ensure()
                .await
                .unwrap();
            store.close().await;
        });
}

/// A CLI that logged in before the rotation: its address, CA and token are the files in its
/// config directory, which it manages.
struct LoggedIn {
    config_home: PathBuf,
}

impl LoggedIn {
    fn new(c: &Controller, dir: &Path) -> LoggedIn {
        use std::os::unix::fs::PermissionsExt as _;
        let config_home = dir.join("config");
        let own = config_home.join("portcullis");
        std::fs::create_dir_all(&own).unwrap();
        std::fs::write(own.join("addr"), &c.api).unwrap();
        std::fs::copy(&c.ca, own.join("ca.pem")).unwrap();
        let token = own.join("token");
        std::fs::write(&token, &c.token).unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        LoggedIn { config_home }
    }

    fn ca_file(&self) -> PathBuf {
        self.config_home.join("portcullis/ca.pem")
    }

    fn cli(&self) -> Command {
        let mut cmd = Command::new(bin());
        cmd.env_remove("PORTCULLIS_ADDR")
            .env_remove("PORTCULLIS_CA")
            .env_remove("PORTCULLIS_TOKEN")
            .env("XDG_CONFIG_HOME", &self.config_home)
            .env("PORTCULLIS_LOG", "warn");
        cmd
    }

    /// `whoami`, which must succeed; returns its stderr.
    fn whoami(&self) -> String {
        let out = self.cli().arg("whoami").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "whoami failed: {stderr}");
        stderr
    }
}

/// Whether the controller's link listener presents a certificate of `ca` for
/// `portcullis-controller` (a TLS handshake that trusts only `ca`).
fn link_certificate_is_from(cluster: &str, ca: &CertificateDer<'static>) -> bool {
    let verifier = PinnedCa::controller(
        CaTrust::Pinned(ca.clone()),
        portcullis_proto::link::CONTROLLER_SERVER_NAME,
    )
    .unwrap();
    let config = portcullis_crypto::tls::client_config(
        Arc::new(verifier),
        portcullis_crypto::tls::ClientAuth::None,
        portcullis_proto::link::ALPN,
    )
    .unwrap();
    let name = ServerName::try_from(portcullis_proto::link::CONTROLLER_SERVER_NAME).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tcp = TcpStream::connect(cluster).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    while conn.is_handshaking() {
        if conn.complete_io(&mut tcp).is_err() {
            return false;
        }
    }
    true
}

/// The key of the certificate the API at `api` (`https://IP:PORT`) presents, trusting only
/// `ca`: its SubjectPublicKeyInfo, or why the handshake failed.
fn api_key(api: &str, ca: &CertificateDer<'static>) -> Result<Vec<u8>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let config = portcullis_crypto::tls::https_client_config(
        roots,
        portcullis_crypto::tls::ClientAuth::None,
    )
    .unwrap();
    let addr = api.strip_prefix("https://").unwrap();
    let ip: std::net::IpAddr = addr.rsplit_once(':').unwrap().0.parse().unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), ServerName::from(ip)).unwrap();
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    let leaf = &conn.peer_certificates().unwrap()[0];
    Ok(portcullis_crypto::tls::spki_of(leaf).unwrap())
}

/// Whether the worker's saved certificate was issued by `ca`.
fn worker_certificate_is_from(state: &Path, ca: &CertificateDer<'static>) -> bool {
    certificates_in(&state.join("worker.crt"))
        .first()
        .is_some_and(|cert| chains_to(cert, ca, Usage::ClientAuth, UnixTime::now()).is_ok())
}

/// A session through the worker to its echo target, from a fresh `connect`.
fn brokers_a_session(cli: Command) {
    let listener = listen(cli, "echo");
    drop(open_echo(listener.port));
}

/// Whether a connection through the listener on `port` echoes.
fn echoes(port: u16) -> Result<(), String> {
    use std::io::{Read as _, Write as _};
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"ping").map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).map_err(|e| e.to_string())?;
    if &buf == b"ping" {
        Ok(())
    } else {
        Err(format!("{buf:?}"))
    }
}

#[test]
fn a_worker_and_a_cli_keep_working_across_a_tls_ca_rotation() {
    let dir = tempfile::tempdir().unwrap();
    older_keyset_with_an_ed25519_ca(dir.path());
    let c = Controller::start(dir.path());
    let links = [c.cluster.clone()];
    let worker = c.join_worker_with_echo(dir.path(), &links, "");
    let state = dir.path().join("w1/state");
    // A second worker, joined before the rotation, is offline throughout.
    let away = Worker::start(&dir.path().join("w2"), &links, Some(&c.join_token()), "").unwrap();
    let away_id = away.id.clone();
    drop(away);
    // Until the controller lists it as lost, a session could be placed on it; a worker listed
    // lost never gets one.
    wait_for("the offline worker to be listed as lost", LIMIT, || {
        let (code, text) = c.curl("GET", &format!("/v1/workers/{away_id}"), None);
        assert_eq!(code, 200, "{text}");
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["state"] == "lost"
    });
    let logged_in = LoggedIn::new(&c, dir.path());
    brokers_a_session(logged_in.cli());
    let old = certificates_in(&c.ca);
    assert_eq!(old.len(), 1);
    let old = old[0].clone();
    let (old_id, old_algorithm) = tls_ca_with_algorithm(&c, "active");
    assert_eq!(old_algorithm, "ed25519", "the older keyset's CA");

    // Rotate: the new CA is trusted everywhere, the old one still signs.
    let new_id = controller(&c, &["keys", "rotate", "tls-ca"])
        .trim()
        .to_owned();
    assert_eq!(
        tls_ca_with_algorithm(&c, "next"),
        (new_id.clone(), "ecdsa-p256".to_owned())
    );
    let bundle = certificates(&controller(&c, &["ca"]));
    assert_eq!(bundle.len(), 2, "`controller ca` prints the bundle");
    assert_eq!(bundle[0], old, "the signing CA leads the bundle");
    let new = bundle[1].clone();
    wait_for("the worker to save the bundle", LIMIT, || {
        certificates_in(&state.join("ca.pem")) == bundle
    });
    assert!(link_certificate_is_from(&c.cluster, &old));
    // The CLI that manages its CA file takes the bundle at its next call.
    let said = logged_in.whoami();
    assert!(said.contains("updated"), "{said}");
    assert_eq!(certificates_in(&logged_in.ca_file()), bundle);
    // A CA file named by PORTCULLIS_CA is not the CLI's: it says how to update it.
    let out = c.cli().arg("whoami").output().unwrap();
    let warned = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{warned}");
    assert!(warned.contains("/v1/tls/ca"), "{warned}");
    assert_eq!(certificates_in(&c.ca), vec![old.clone()]);
    brokers_a_session(logged_in.cli());

    // Activate: the new CA signs the link's certificate and the worker's renewal.
    controller(&c, &["keys", "activate", &new_id]);
    wait_for("the link certificate from the new CA", LIMIT, || {
        link_certificate_is_from(&c.cluster, &new)
    });
    wait_for("the worker's certificate from the new CA", LIMIT, || {
        worker_certificate_is_from(&state, &new)
    });
    assert_eq!(tls_ca_in(&c, "previous"), old_id);
    let bundle = certificates(&controller(&c, &["ca"]));
    assert_eq!(bundle, vec![new.clone(), old.clone()]);
    // The API's certificate is from the new CA too: a curl trusting it alone gets through.
    let printed = controller(&c, &["ca"]);
    let (new_pem, _) = printed.split_once("-----END CERTIFICATE-----").unwrap();
    let new_only = dir.path().join("new-ca.pem");
    std::fs::write(&new_only, format!("{new_pem}-----END CERTIFICATE-----\n")).unwrap();
    wait_for("the API certificate from the new CA", LIMIT, || {
        Command::new("curl")
            .args(["-sSf", "-o", "/dev/null", "--cacert"])
            .arg(&new_only)
            .arg(format!("{}/v1/health", c.api))
            .status()
            .is_ok_and(|s| s.success())
    });
    // Its key is ECDSA P-256 (the algorithm identifier `id-ecPublicKey`, `prime256v1`): what
    // browsers accept.
    let spki = api_key(&c.api, &new).unwrap();
    let p256 = rustls_pki_types::alg_id::ECDSA_P256;
    assert!(
        spki.windows(p256.as_ref().len())
            .any(|w| w == p256.as_ref()),
        "{spki:02x?}"
    );
    logged_in.whoami();
    assert_eq!(
        certificates_in(&logged_in.ca_file()),
        bundle,
        "the CLI holds both"
    );
    brokers_a_session(logged_in.cli());

    // Retire the old CA: it leaves the bundle, and everything keeps working.
    controller(&c, &["keys", "retire", &old_id]);
    wait_for("the worker to drop the old CA", LIMIT, || {
        certificates_in(&state.join("ca.pem")) == vec![new.clone()]
    });
    logged_in.whoami();
    assert_eq!(certificates_in(&logged_in.ca_file()), vec![new.clone()]);
    brokers_a_session(logged_in.cli());
    // A new link, from the worker's renewed certificate and saved bundle alone. The
    // controller may place the first session at the old process's address for a moment
    // (its list of live workers is cached for 250 ms): the new process serves one soon.
    drop(worker);
    let _worker = Worker::start(&dir.path().join("w1"), &links, None, "").unwrap();
    poll("a session through the restarted worker", LIMIT, || {
        let listener = listen(logged_in.cli(), "echo");
        echoes(listener.port)
    });

    // The worker that missed the whole rotation is refused, and told what to do.
    let away = Worker::start(&dir.path().join("w2"), &links, None, "");
    let log = match away {
        Ok(w) => poll("the offline worker's refusal", LIMIT, || {
            let log = w.log();
            if log.contains("join token") {
                Ok(log)
            } else {
                Err(log)
            }
        }),
        Err(said) => said,
    };
    assert!(log.contains("new join token"), "{log}");
}
