//! Fuzz entry points of the controller: its config parser, the OIDC callback and redeem
//! inputs a browser or a stranger controls, the audit verifier on a hostile file, and the
//! readers of a Proxmox API's answers. None
//! may panic, whatever the input. `fuzz/fuzz_targets/` drives them under libFuzzer (see
//! `fuzz/README.md`); the unit tests replay the seed corpus and every input that once
//! crashed, on stable.

use axum::extract::{FromRequest as _, Query};
use axum::http::{header, Request, Uri};
use futures_util::FutureExt as _;
use portcullis_proto::api::OidcRedeemRequest;
use serde_json::{Map, Value};

use crate::api::extract::ApiJson;
use crate::api::oidc::{normalize_code, CallbackQuery};
use crate::api::oidc_pages::{failure_response, html_escape};
use crate::audit::chain::{Checkpoint, KeyRing, PublicKeyInfo, Signer, CHECKPOINT_TYPE};
use crate::audit::verify::{ExportHeader, Head, Verifier, EXPORT_FORMAT};
use crate::config::Config;
use crate::store::oidc_logins::{self as logins, PendingLogin};

/// Parses the text as a controller config; the first byte chooses which overriding
/// environment variables are set (none of the process's own are read).
pub fn controller_config(data: &[u8]) {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let env = |key: &str| match (mode % 4, key) {
        (1 | 3, "PORTCULLIS_DATABASE_URL") => Some("sqlite::memory:".to_owned()),
        (2 | 3, "PORTCULLIS_MASTER_KEY") => Some("00".repeat(32)),
        _ => None,
    };
    let _ = Config::parse(text, "fuzz.toml", env);
}

/// The OIDC inputs a stranger controls. First byte even: the query string of
/// `GET /v1/auth/oidc/callback` as the provider (or anyone) sends it, through the same
/// extractor as the route, then the failure page and the loopback redirect built from it.
/// Odd: the body of `POST /v1/auth/oidc/redeem` through the API's JSON extractor, then the
/// typed code normalised as each login mode compares it.
pub fn oidc_callback(data: &[u8]) {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    if mode.is_multiple_of(2) {
        callback_query(rest);
    } else {
        redeem_body(rest);
    }
}

fn callback_query(data: &[u8]) {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(uri) = format!("/v1/auth/oidc/callback?{query}").parse::<Uri>() else {
        return;
    };
    let Ok(Query(callback)) = Query::<CallbackQuery>::try_from_uri(&uri) else {
        return;
    };
    let _ = callback.state();
    let message = match callback.outcome() {
        Ok(code) => {
            check_normalized(code);
            return;
        }
        Err(message) => message,
    };
    let escaped = html_escape(&message);
    assert!(
        !escaped.contains(['<', '>', '"', '\'']),
        "html_escape left markup in {escaped:?}"
    );
    for login_mode in [logins::LOOPBACK, logins::CODE] {
        let response = failure_response(&pending_login(login_mode), &message);
        let Some(location) = response.headers().get(header::LOCATION) else {
            continue;
        };
        // The CLI reads the error back from its loopback port: it must arrive unchanged.
        let location = location.to_str().unwrap_or_default();
        let uri: Uri = match location.parse() {
            Ok(uri) => uri,
            Err(e) => panic!("the loopback redirect {location:?} is not a URI: {e}"),
        };
        let error = url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .find(|(k, _)| k == "error")
            .map(|(_, v)| v.into_owned());
        assert_eq!(
            error.as_deref(),
            Some(message.as_str()),
            "the loopback redirect changes the error"
        );
    }
}

fn redeem_body(data: &[u8]) {
    let request = Request::builder()
        .method("POST")
        .uri("/v1/auth/oidc/redeem")
        .header(header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(data.to_vec()));
    let Ok(request) = request else {
        return;
    };
    let extracted = ApiJson::<OidcRedeemRequest>::from_request(request, &()).now_or_never();
    match extracted {
        Some(Ok(ApiJson(body))) => {
            let _ = crate::ids::secret_hash(&body.secret);
            check_normalized(body.code.as_deref().unwrap_or_default());
        }
        Some(Err(err)) => {
            let _ = axum::response::IntoResponse::into_response(err);
        }
        None => panic!("the JSON extractor did not finish on an in-memory body"),
    }
}

/// The typed code is compared after normalising: normalising again must change nothing.
fn check_normalized(code: &str) {
    for login_mode in [logins::LOOPBACK, logins::CODE, logins::DEVICE] {
        let once = normalize_code(login_mode, code);
        assert_eq!(
            normalize_code(login_mode, &once),
            once,
            "normalising a {login_mode} code twice changes it"
        );
    }
}

fn pending_login(mode: &str) -> PendingLogin {
    PendingLogin {
        id: "lg_fuzz".into(),
        mode: mode.into(),
        state_hash: None,
        sealed: Vec::new(),
        cli_secret_hash: Vec::new(),
        redirect_port: Some(49152),
        source: "127.0.0.1".into(),
        created_at: 0,
        expires_at: 0,
        callback_at: None,
        identity: None,
        code_hash: None,
        failed_attempts: 0,
        error: None,
        redeemed_at: None,
    }
}

/// The audit key the fuzzed chains are sealed with in mode 1 (a fixed seed, so that seeds
/// stay valid across runs).
fn audit_signer() -> Option<Signer> {
    // PKCS#8 v1 wrapping of an Ed25519 seed: the fixed prefix, then the 32 seed bytes.
    let mut pkcs8 = hex::decode("302e020100300506032b657004220420").unwrap_or_default();
    pkcs8.extend_from_slice(&[9u8; 32]);
    Signer::from_pkcs8("k_audit", &pkcs8).ok()
}

/// The audit verifier on a hostile JSON-lines file, as `portcullis audit verify --file` and
/// `--checkpoints` read one. First byte even: the file as it is; an export header, when the
/// first line is one, supplies the keys and the store head, otherwise the fixed key is
/// pinned and redelivery allowed (a sink's copy). Odd: every event line is first sealed with
/// the fixed key (linked to the event before it unless it names its own `prev_hash`), so the
/// fuzzer reaches what lies behind the signature: a chain signed by a key the verifier
/// trusts, such as one an export header names.
pub fn audit_verify(data: &[u8]) {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let Some(signer) = audit_signer() else {
        return;
    };
    let pinned = [PublicKeyInfo::ed25519(
        signer.key_id(),
        signer.public_key(),
        None,
    )];
    let mut lines = text.lines().peekable();
    let header = lines
        .peek()
        .and_then(|first| serde_json::from_str::<ExportHeader>(first).ok())
        .filter(|h| h.format == EXPORT_FORMAT);
    if header.is_some() {
        lines.next();
    }
    let keys = match &header {
        Some(h) if mode.is_multiple_of(2) => KeyRing::new(&h.keys),
        _ => KeyRing::new(&pinned),
    };
    let expect = header
        .as_ref()
        .and_then(|h| h.head.as_ref())
        .and_then(|h| h.to_string().parse::<Head>().ok());
    let mut verifier = Verifier::new(keys.clone(), expect);
    if header.is_none() {
        verifier = verifier.allow_redelivery();
    }
    let mut prev_hash = crate::audit::chain::GENESIS.to_owned();
    for (index, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let _ = line.parse::<Head>();
        let _ = PublicKeyInfo::parse_flag(line);
        let mut value: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => Value::String(format!("line {}: {e}", index + 1)),
        };
        if value.get("type").and_then(Value::as_str) == Some(CHECKPOINT_TYPE) {
            if let Ok(checkpoint) = serde_json::from_value::<Checkpoint>(value) {
                let _ = checkpoint.verify(&keys);
            }
            continue;
        }
        if !mode.is_multiple_of(2) {
            if let Some(event) = value.as_object_mut() {
                seal(&signer, event, &mut prev_hash);
            }
        }
        if verifier.push(&value).is_err() {
            return;
        }
    }
    let store_head = header.and_then(|h| h.head);
    let _ = verifier.finish(store_head.as_ref());
}

fn seal(signer: &Signer, event: &mut Map<String, Value>, prev_hash: &mut String) {
    if !event.contains_key("prev_hash") {
        event.insert("prev_hash".into(), Value::String(prev_hash.clone()));
    }
    // An event JCS cannot hold (an integer beyond 2^53 - 1) stays unsealed: the verifier
    // must refuse it like any other bad event.
    if let Ok(hash) = signer.seal(event) {
        *prev_hash = hash;
    }
}

/// The Proxmox API's answers as the host catalog's discovery reads them (see
/// `catalog::proxmox::fuzz` for what the first byte chooses).
pub fn proxmox_answers(data: &[u8]) {
    crate::catalog::proxmox::fuzz::answers(data);
}

#[cfg(test)]
mod tests;
