//! Holds the store to "every state change commits with its audit event": each function here
//! that writes takes a [`super::Write`], which only `audit::AuditedTx` makes, except the
//! bookkeeping rows named in [`UNAUDITED`]; and no SQL write lives outside the store.
//! Reads the sources, so a new writing function without a `Write` fails here.

use std::path::{Path, PathBuf};

/// Writes that are bookkeeping, not state an auditor asks about, each with its reason. They
/// take a plain connection and may run outside an audited transaction.
const UNAUDITED: &[(&str, &str, &str)] = &[
    ("access_requests", "keepalive", "a run's liveness; its start and its end (finished or lost) are audited"),
    ("audit", "insert_many", "the chain's own rows, written by Chain::advance at the commit"),
    ("audit", "advance_head", "the chain's own head, written by Chain::advance at the commit"),
    ("audit", "lock_head", "locks the head row (SELECT ... FOR UPDATE) inside the commit"),
    ("audit", "take_sqlite_write_lock", "a write that changes nothing, to take SQLite's write lock at a writing transaction's start"),
    ("audit", "sink_cursor", "a shipper's progress: creates its cursor row on first use"),
    ("audit", "save_sink_cursor", "a shipper's progress through the log"),
    ("audit_verified", "advance", "how far the console's check of the chain got; a cache of a check anyone with audit:read can redo"),
    ("audit", "tamper", "test-only: edits a stored event to show that the console's check finds it"),
    ("step_ups", "attach_login", "links the OIDC login answering a challenge to it; the login's start is audited as login_started"),
    ("step_ups", "count_failure", "a counter of wrong answers to a challenge; each is audited as step_up_failed"),
    ("step_ups", "prune", "removes challenges expired for a day, which no request can use any more"),
    ("rate_limits", "hit", "a counter of attempts per window"),
    ("recordings", "append", "a recording's chunk, in the recordings store (another database than the chain); its head is sealed as recording_checkpoint or recording_finished"),
    ("recordings", "mark_sealed", "notes which head was sealed; the seal is the recording_checkpoint or recording_finished event"),
    ("recordings", "delete", "the retention's deletion, in the recordings store; recording_deleted is committed before it"),
    ("recordings", "tamper", "test-only: alters a stored chunk to show that it is detected"),
    ("oidc_logins", "use_state", "a pending login's one-time state marker; start, failure and success are audited"),
    ("oidc_logins", "complete", "a pending login's progress; its success is audited as login_succeeded"),
    ("oidc_logins", "redeem", "a pending login's one-time redeem marker; the token it yields is audited"),
    ("oidc_logins", "count_failure", "a counter of wrong codes; each failure is audited as login_failed"),
    ("oidc_logins", "prune", "removes expired pending logins"),
    ("console_sessions", "touch", "when a console session was last used; its login and logout are audited"),
    ("console_sessions", "prune", "removes console sessions past their idle or absolute timeout, which no request can use any more"),
    ("workers", "touch", "a worker's heartbeat time"),
    ("sessions", "client_seen", "when a session's client last asked about it; the idle end it postpones is audited as session_terminated"),
    ("vault_credentials", "set_accessor", "mint progress for crash recovery; the mint is audited as credential_minted"),
    ("vault_credentials", "set_leases", "mint progress for crash recovery; the mint is audited as credential_minted"),
    ("vault_credentials", "request_revocation", "the revocation queue; queued with session_terminated, its outcome audited as credential_revoked"),
    ("vault_credentials", "set_attempt_failed", "the revocation retry schedule; the first failure is audited"),
    ("pve_tokens", "request_revocation", "the deletion queue; queued with session_terminated, its outcome audited as pve_token_revoked"),
    ("pve_tokens", "requeue", "queues a deletion again for a token made after its session ended; the outcome is audited as pve_token_revoked"),
    ("pve_tokens", "set_attempt_failed", "the deletion retry schedule; the first failure is audited as pve_token_revoke_failed"),
];

const WRITES: &[&str] = &["INSERT INTO", "DELETE FROM", "FOR UPDATE"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn writes_sql(body: &str) -> bool {
    WRITES.iter().any(|w| body.contains(w))
        || body
            .split("UPDATE ")
            .skip(1)
            .any(|rest| rest.split_whitespace().nth(1) == Some("SET"))
}

/// `(name, signature, body)` of every `async fn` in a store module.
fn functions(text: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let starts: Vec<usize> = text.match_indices("async fn ").map(|(i, _)| i).collect();
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(text.len());
        let item = &text[start..end];
        let name: String = item["async fn ".len()..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let open = item.find('{').unwrap_or(item.len());
        // The signature from the start of its line, so that it shows `pub`.
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let signature = format!("{}{}", &text[line_start..start], &item[..open]);
        out.push((name, signature, item[open..].to_owned()));
    }
    out
}

#[test]
fn every_writing_store_function_takes_a_write_unless_it_is_bookkeeping() {
    let mut offenders = Vec::new();
    let mut checked = 0;
    for entry in std::fs::read_dir(src().join("store")).unwrap_or_else(|e| panic!("{e}")) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        let module = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("")
            .to_owned();
        if module.ends_with("_tests") || path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        let fns = functions(&text);
        // A function writes if its SQL does or if it calls a function of its module that does.
        let mut writing: Vec<&str> = fns
            .iter()
            .filter(|(_, _, body)| writes_sql(body))
            .map(|(name, _, _)| name.as_str())
            .collect();
        loop {
            let more: Vec<&str> = fns
                .iter()
                .filter(|(name, _, body)| {
                    !writing.contains(&name.as_str())
                        && writing.iter().any(|w| body.contains(&format!("{w}(")))
                })
                .map(|(name, _, _)| name.as_str())
                .collect();
            if more.is_empty() {
                break;
            }
            writing.extend(more);
        }
        for (name, signature, _) in &fns {
            // Private helpers are checked through the public functions that call them.
            if !writing.contains(&name.as_str()) || !signature.contains("pub") {
                continue;
            }
            checked += 1;
            let exempt = UNAUDITED.iter().any(|(m, f, _)| *m == module && *f == name);
            let takes_write = signature.contains("Write<'_>");
            if takes_write == exempt {
                offenders.push(format!(
                    "store::{module}::{name}: {}",
                    if exempt {
                        "listed as unaudited bookkeeping but takes a Write; drop it from UNAUDITED"
                    } else {
                        "writes without a Write: take `w: Write<'_>` (only an audited transaction \
                         makes one), or list it in UNAUDITED with the reason it is not audited"
                    }
                ));
            }
        }
    }
    assert!(
        checked >= 40,
        "only {checked} writing functions found: is the scan broken?"
    );
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{e}")) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().and_then(|e| e.to_str()) == Some("rs") {
            out.push(path);
        }
    }
}

#[test]
fn only_the_audited_transaction_begins_or_makes_a_write_and_only_the_store_holds_sql_writes() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    assert!(files.len() > 50, "only {} source files found", files.len());
    let mut offenders = Vec::new();
    for path in files {
        let rel = path
            .strip_prefix(src())
            .unwrap_or(&path)
            .to_string_lossy()
            .replace('\\', "/");
        // The store's own suite checks the writing functions themselves.
        if rel.ends_with("writes_tests.rs") || rel.ends_with("suite_tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        if text.contains("Write::audited(") && rel != "audit/tx.rs" {
            offenders.push(format!("{rel}: makes a Write; only audit/tx.rs may"));
        }
        // A transaction begins only as an AuditedTx (and inside the store, for its lease).
        if text.contains(".begin().await") && rel != "audit/tx.rs" && !rel.starts_with("store/") {
            offenders.push(format!(
                "{rel}: begins a transaction of its own; use `state.begin_audited()` (AuditedTx)"
            ));
        }
        if !rel.starts_with("store/") && writes_sql(&text) {
            offenders.push(format!("{rel}: SQL that writes outside store/"));
        }
    }
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
}
