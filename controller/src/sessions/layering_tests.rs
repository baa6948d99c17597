//! Holds the session modules to the directions in the module doc: the plan does no I/O, and
//! ending a session runs one way (`lifecycle` calls `notify` and `credentials`, which never
//! call back). Reads the sources, so a new call against the grain fails here.

use std::path::Path;

/// The code of a source file under `src/`, without its comment lines.
fn code(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(path);
    let text = std::fs::read_to_string(&full)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", full.display()));
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_names_none(path: &str, forbidden: &[&str], why: &str) {
    let code = code(path);
    let found: Vec<&&str> = forbidden.iter().filter(|f| code.contains(**f)).collect();
    assert!(found.is_empty(), "{path} names {found:?}: {why}");
}

/// The paths by which a file could reach the session modules `modules`.
fn paths_to(modules: &[&str]) -> Vec<String> {
    modules
        .iter()
        .flat_map(|m| [format!("super::{m}"), format!("sessions::{m}")])
        .collect()
}

#[test]
fn the_plan_does_no_io() {
    for path in [
        "sessions/plan.rs",
        "sessions/plan/events.rs",
        "sessions/plan/worker.rs",
        "sessions/pve.rs",
    ] {
        assert_names_none(
            path,
            &[
                "async",
                ".await",
                "AppState",
                "clock",
                "tokio",
                "sqlx",
                "crate::keys",
                "crate::vault",
            ],
            "the plan decides on facts read before it (no store, clock, key or Vault)",
        );
    }
}

#[test]
fn ending_a_session_runs_one_way() {
    assert_names_none(
        "notify.rs",
        &["sessions::"],
        "notify tells workers; it does not call back into the session modules",
    );
    let above_credentials =
        paths_to(&["lifecycle", "mint", "issue", "authorize", "credential_job"]);
    let above_credentials: Vec<&str> = above_credentials.iter().map(String::as_str).collect();
    assert_names_none(
        "sessions/credentials.rs",
        &above_credentials,
        "credentials mints and revokes; the modules above it end sessions",
    );
    let above_lifecycle = paths_to(&["mint", "issue", "authorize", "credential_job", "sweeper"]);
    let above_lifecycle: Vec<&str> = above_lifecycle.iter().map(String::as_str).collect();
    assert_names_none(
        "sessions/lifecycle.rs",
        &above_lifecycle,
        "lifecycle is called by those modules, not the other way",
    );
}

#[test]
fn deleting_a_proxmox_token_runs_one_way() {
    // `lifecycle` starts the deletion; the deletion never ends a session itself.
    assert_names_none(
        "sessions/pve/revoke.rs",
        &[
            "lifecycle",
            "pve::mint",
            "super::mint",
            "super::job",
            "issue",
            "authorize",
        ],
        "revoke deletes tokens; the modules above it end sessions",
    );
}
