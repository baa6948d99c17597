//! A fake Proxmox VE API in the test process: HTTPS on 127.0.0.1 with a CA of its own,
//! serving `/api2/json/...` from a route table a test can change between syncs.
//!
//! It behaves as pveproxy does where the catalog depends on it (../shared notes on the
//! Proxmox API): the `{"data": ...}` envelope; `Authorization: PVEAPIToken=USER@REALM!ID=SECRET`
//! checked on every request, a refusal answered 401 after a delay (3 s, as Proxmox does);
//! errors as old servers give them (the message only in the HTTP reason phrase, body
//! `{"data":null}`) or as newer ones do (`message` in the body too). The discovery token may
//! only GET (discovery only reads). Every request is recorded (method, path, the token it
//! authenticated as, its headers and body), so a test can show what the controller and the
//! worker asked.
//!
//! For Proxmox API sessions (issue 20) it also keeps users, API tokens and the ACL
//! ([`access`]): a token-management credential ([`access::MANAGEMENT_TOKEN`]) mints and
//! deletes tokens and sets ACL entries in the real shapes; a minted token is accepted until
//! deleted or expired, and acts on VMs ([`guests`]: create, config, status, tasks, a chunked
//! task log) as far as its ACL entries reach. [`FakeProxmox::hold_token_create`] holds a
//! token creation back until the test releases it, so that a test can kill the controller
//! between its intent and Proxmox's answer. [`FakeProxmox::pause`] is an outage, as a node whose pveproxy
//! is down looks: open connections are dropped and every new one is closed before TLS,
//! until [`FakeProxmox::resume`]. (The port stays bound meanwhile: closing it would let
//! another test's listener take it, and the fake could not come back on it.)
//!
//! By default it serves a small cluster composed of the recorded answers in
//! tests/fixtures/proxmox/ ([`cluster`]).

pub(crate) mod access;
pub(crate) mod cluster;
pub(crate) mod guests;
mod server;
mod tls;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// The discovery token the fake accepts by default (a privilege-separated API token of a
/// PVEAuditor user; the secret is a UUID, as Proxmox makes them).
pub(crate) const TOKEN: &str = "portcullis@pve!discovery=5f0c2b7e-1c1f-4e0b-9d6a-3b2a7c9e4d11";

/// One answer of the API: status, the reason phrase when it is not the standard one, and
/// the body (JSON text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub status: u16,
    pub reason: Option<String>,
    pub body: String,
}

impl Answer {
    /// 200 with `{"data": data}`.
    pub(crate) fn data(data: Value) -> Answer {
        Answer {
            status: 200,
            reason: None,
            body: serde_json::json!({ "data": data }).to_string(),
        }
    }

    /// 200 with a recorded body as it is.
    pub(crate) fn recorded(body: String) -> Answer {
        Answer {
            status: 200,
            reason: None,
            body,
        }
    }

    /// An error as servers before libpve-http-server-perl 5.2.0 give it: the message only in
    /// the reason phrase (`HTTP/1.1 500 VM 102 is not running`), body `{"data":null}`
    /// (tests/fixtures/proxmox/error_500_legacy_body.json).
    pub(crate) fn reason_only(status: u16, message: &str) -> Answer {
        Answer {
            status,
            reason: Some(message.to_owned()),
            body: cluster::fixture("error_500_legacy_body.json"),
        }
    }

    /// An error as newer servers give it: the reason phrase and `message` in the body, with
    /// the trailing newline Proxmox adds (error_500_with_message_body.json's shape).
    pub(crate) fn with_message(status: u16, message: &str) -> Answer {
        Answer {
            status,
            reason: Some(message.to_owned()),
            body: serde_json::json!({ "message": format!("{message}\n"), "data": null })
                .to_string(),
        }
    }
}

/// The CA (PEM) of another cluster: the fake's certificate is not of it.
pub(crate) fn other_ca_pem() -> String {
    tls::Tls::new().ca_pem
}

/// `path` with each `%XX` decoded (`/access/users/svc%40pve/...` is `/access/users/svc@pve/...`),
/// to compare paths as the fake routes them.
pub(crate) fn decoded_path(path: &str) -> String {
    server::percent_decode(path)
}

/// A request the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    pub method: String,
    /// After `/api2/json`, with the query (`/cluster/resources?type=vm`); the whole path
    /// when it is not under `/api2/json`.
    pub path: String,
    /// Whether it carried a `PVEAPIToken` the fake accepts (the discovery token, a
    /// management token, or a live minted one).
    pub authorized: bool,
    /// The full token id (`user@realm!id`) it authenticated as.
    pub token_id: Option<String>,
    /// Its `Authorization` header as sent.
    pub authorization: Option<String>,
    /// Every header as sent (names in lower case).
    pub headers: Vec<(String, String)>,
    /// Its body (lossy UTF-8).
    pub body: String,
}

impl Request {
    /// The value of header `name` (lower case), if sent.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Whether a token creation (`POST /access/users/{userid}/token/{tokenid}`) is held back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    /// Answered at once.
    No,
    /// Held, nothing created; answered 503 when released.
    Stall,
    /// The token is created, then the answer is held until released.
    AfterCreating,
}

/// What the server task and the test share.
pub(crate) struct State {
    /// `/cluster/resources` entries (guests, nodes, storage): `/cluster/resources` and
    /// `/cluster/resources?type=vm|node|storage` are made from them at each request,
    /// unless `routes` has an answer for that exact path.
    pub resources: Vec<Value>,
    /// Path (after `/api2/json`, with the query) → answer.
    pub routes: BTreeMap<String, Answer>,
    pub requests: Vec<Request>,
    /// The whole token (`USER@REALM!ID=SECRET`) the fake accepts.
    pub token: String,
    /// How long a 401 is held back.
    pub unauthorized_delay: Duration,
    /// An outage: connections are closed as soon as they are accepted.
    pub outage: bool,
    /// Users, tokens, the ACL.
    pub access: access::Access,
    /// VMs made through the API, and tasks.
    pub guests: guests::Guests,
    pub hold_token_create: Hold,
    /// How many token creations were held so far.
    pub held: usize,
}

/// The fake API, serving until dropped.
pub(crate) struct FakeProxmox {
    pub port: u16,
    /// The CA (PEM) that issued the server certificate: the controller's `ca_file`.
    pub ca_file: PathBuf,
    /// The server certificate's SHA-256, colon-hex upper case as `GET /nodes` reports
    /// `ssl_fingerprint`: the controller's `fingerprint`.
    pub fingerprint: String,
    state: Arc<Mutex<State>>,
    tls: tokio_rustls::TlsAcceptor,
    /// The bound port, for the life of the fake; each serving task accepts on a copy.
    listener: std::net::TcpListener,
    serving: Option<tokio::task::JoinHandle<()>>,
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl FakeProxmox {
    /// Starts the fake with the default cluster ([`cluster::default_cluster`]).
    pub(crate) fn start() -> FakeProxmox {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = tls::Tls::new();
        let ca_file = dir.path().join("pve-root-ca.pem");
        std::fs::write(&ca_file, &tls.ca_pem).expect("write the CA");
        let (resources, routes) = cluster::default_cluster();
        let state = Arc::new(Mutex::new(State {
            resources,
            routes,
            requests: Vec::new(),
            token: TOKEN.to_owned(),
            unauthorized_delay: Duration::from_secs(3),
            outage: false,
            access: access::Access::default(),
            guests: guests::Guests::default(),
            hold_token_create: Hold::No,
            held: 0,
        }));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fake-proxmox")
            .enable_all()
            .build()
            .expect("a runtime for the fake Proxmox API");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let port = listener.local_addr().expect("local addr").port();
        let acceptor = tls.acceptor();
        let mut fake = FakeProxmox {
            port,
            ca_file,
            fingerprint: tls.fingerprint,
            state,
            tls: acceptor,
            listener,
            serving: None,
            runtime,
            _dir: dir,
        };
        fake.serve_again();
        fake
    }

    /// Ends the serving task (and with it every open connection) and starts a new one.
    fn serve_again(&mut self) {
        if let Some(serving) = self.serving.take() {
            serving.abort();
            let _ = self.runtime.block_on(serving);
        }
        let copy = self.listener.try_clone().expect("a copy of the listener");
        let _inside = self.runtime.enter();
        let listener = tokio::net::TcpListener::from_std(copy).expect("a tokio listener");
        self.serving = Some(self.runtime.spawn(server::serve(
            listener,
            self.tls.clone(),
            self.state.clone(),
        )));
    }

    /// `https://127.0.0.1:PORT`, as `urls` names it.
    pub(crate) fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Changes the fake's state (routes, resources, token, delay) under its lock.
    pub(crate) fn with<T>(&self, change: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.state.lock().expect("fake Proxmox state");
        change(&mut state)
    }

    /// Sets the answer for `path` (after `/api2/json`, with any query).
    pub(crate) fn set(&self, path: &str, answer: Answer) {
        self.with(|s| s.routes.insert(path.to_owned(), answer));
    }

    /// Adds a guest or node entry to `/cluster/resources` (replacing one of the same `id`).
    pub(crate) fn put_resource(&self, entry: Value) {
        self.with(|s| {
            s.resources.retain(|e| e["id"] != entry["id"]);
            s.resources.push(entry);
        });
    }

    /// Adds a guest: its `/cluster/resources` entry and the route of its config (as
    /// [`cluster::cloud_init_guest`] makes them).
    pub(crate) fn put_guest(&self, (entry, config_path, config): (Value, String, Answer)) {
        self.put_resource(entry);
        self.set(&config_path, config);
    }

    /// Removes the `/cluster/resources` entry `id` (`qemu/100`): the guest is gone.
    pub(crate) fn remove_resource(&self, id: &str) {
        let removed = self.with(|s| {
            let before = s.resources.len();
            s.resources.retain(|e| e["id"] != id);
            s.resources.len() < before
        });
        assert!(removed, "no resource {id} to remove");
    }

    /// Every request so far.
    pub(crate) fn requests(&self) -> Vec<Request> {
        self.with(|s| s.requests.clone())
    }

    /// Forgets the requests so far.
    pub(crate) fn clear_requests(&self) {
        self.with(|s| s.requests.clear());
    }

    /// The minted tokens now, by full token id.
    pub(crate) fn tokens(&self) -> std::collections::BTreeMap<String, access::Minted> {
        self.with(|s| s.access.tokens.clone())
    }

    /// The ACL entries of token `full` (`user@realm!id`) now.
    pub(crate) fn acl_of(&self, full: &str) -> Vec<access::AclEntry> {
        self.with(|s| s.access.entries_of(full))
    }

    /// Holds every token creation from now on as `hold` says, until [`FakeProxmox::release`].
    pub(crate) fn hold_token_create(&self, hold: Hold) {
        self.with(|s| s.hold_token_create = hold);
    }

    /// Answers the held token creations, and holds no more.
    pub(crate) fn release(&self) {
        self.with(|s| s.hold_token_create = Hold::No);
    }

    /// How many token creations have been held.
    pub(crate) fn held(&self) -> usize {
        self.with(|s| s.held)
    }

    /// The requests made with minted token `full` (the worker's, for a session).
    pub(crate) fn requests_of(&self, full: &str) -> Vec<Request> {
        self.with(|s| {
            s.requests
                .iter()
                .filter(|r| r.token_id.as_deref() == Some(full))
                .cloned()
                .collect()
        })
    }

    /// An outage: drops the open connections, and closes each new one before TLS.
    pub(crate) fn pause(&mut self) {
        self.with(|s| s.outage = true);
        self.serve_again();
    }

    /// Ends an outage.
    pub(crate) fn resume(&mut self) {
        self.with(|s| s.outage = false);
        self.serve_again();
    }
}

impl Drop for FakeProxmox {
    fn drop(&mut self) {
        if let Some(serving) = self.serving.take() {
            serving.abort();
        }
    }
}
