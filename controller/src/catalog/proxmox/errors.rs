//! Proxmox's error answers in words. A server says what went wrong in up to three places:
//! the body's `message` (libpve-http-server 5.2.0, January 2025, and later), the body's
//! `errors` map (parameter verification), and the HTTP reason phrase (where older servers
//! put their only words, e.g. `HTTP/1.1 500 VM 999 does not exist`, with `{"data":null}`).
//! [`proxmox_words`] reads all three; [`explain`] adds what to do for a refused token (401)
//! or a missing privilege (403).

use serde_json::Value;

/// Proxmox's own words for an error answer: the body's `message` and `errors`, and the
/// reason phrase when it says more than the status code's canonical text. Never empty.
pub(crate) fn proxmox_words(status: u16, reason: Option<&str>, body: &[u8]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut push = |text: &str| {
        let text = one_line(text);
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    };
    if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) {
        if let Some(Value::String(message)) = map.get("message") {
            push(message);
        }
        if let Some(Value::Object(errors)) = map.get("errors") {
            for (param, error) in errors {
                let error = match error {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                push(&format!("{param}: {error}"));
            }
        }
    }
    let canonical = canonical_reason(status);
    if let Some(reason) = reason {
        if Some(reason.trim()) != canonical {
            push(reason);
        }
    }
    if parts.is_empty() {
        return canonical.unwrap_or("no detail given").to_owned();
    }
    parts.join("; ")
}

/// The sentence of a [`super::ProxmoxError::Api`] of discovery: Proxmox's words, and for a
/// 401 or 403 what to check.
#[cfg(any(test, fuzzing))]
pub(crate) fn explain(status: u16, words: &str) -> String {
    explain_for(super::TokenUse::Discovery, status, words)
}

/// As [`explain`], for the token of `usage`.
pub(crate) fn explain_for(usage: super::TokenUse, status: u16, words: &str) -> String {
    let what = usage.what();
    match (status, usage) {
        (401, _) => format!(
            "{what} was refused ({words}): check the token id (USER@REALM!TOKENID) \
             and its secret, that the token and its user exist, are enabled and have not \
             expired (pveum user token list USER), and that a privilege-separated token has \
             ACLs of its own"
        ),
        (403, super::TokenUse::Discovery) => format!(
            "{what} lacks a privilege ({words}): grant the privilege Proxmox \
             names to the token (e.g. the PVEAuditor role on /), and to its user as well when \
             the token is privilege-separated"
        ),
        (403, super::TokenUse::Sessions) => format!(
            "{what} lacks a privilege ({words}): it needs User.Modify on a group of the \
             sessions' users (/access/groups/GROUP) and Permissions.Modify on every configured \
             path (docs/proxmox.md, \"Per-session API tokens\")"
        ),
        _ => words.to_owned(),
    }
}

/// Multi-line messages (Proxmox ends them with `\n`, parameter errors follow on new lines)
/// as one line; control characters dropped.
fn one_line(text: &str) -> String {
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            l.chars()
                .filter(|c| !c.is_control())
                .collect::<String>()
                .trim()
                .to_owned()
        })
        .filter(|l| !l.is_empty())
        .collect();
    let mut joined = lines.join("; ");
    if joined.len() > 500 {
        let mut cut = 500;
        while !joined.is_char_boundary(cut) {
            cut -= 1;
        }
        joined.truncate(cut);
        joined.push('…');
    }
    joined
}

fn canonical_reason(status: u16) -> Option<&'static str> {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEGACY: &str =
        include_str!("../../../../tests/fixtures/proxmox/error_500_legacy_body.json");
    const WITH_MESSAGE: &str =
        include_str!("../../../../tests/fixtures/proxmox/error_500_with_message_body.json");
    const PARAMETERS: &str =
        include_str!("../../../../tests/fixtures/proxmox/error_400_parameter_verification.json");

    #[test]
    fn a_legacy_server_speaks_only_in_the_reason_phrase() {
        assert_eq!(
            proxmox_words(500, Some("VM 999 does not exist"), LEGACY.as_bytes()),
            "VM 999 does not exist"
        );
        // Without a reason phrase of its own: the status's text, never an empty sentence.
        assert_eq!(
            proxmox_words(500, Some("Internal Server Error"), LEGACY.as_bytes()),
            "Internal Server Error"
        );
        assert_eq!(proxmox_words(599, None, b""), "no detail given");
    }

    #[test]
    fn a_newer_server_puts_its_message_in_the_body() {
        let words = proxmox_words(
            500,
            Some("create sdn zone object failed: 400 Parameter verification failed."),
            WITH_MESSAGE.as_bytes(),
        );
        assert_eq!(
            words,
            "create sdn zone object failed: 400 Parameter verification failed.; ipam: ipam-simple not existing"
        );
    }

    #[test]
    fn parameter_errors_name_the_parameter() {
        let words = proxmox_words(
            400,
            Some("Parameter verification failed."),
            PARAMETERS.as_bytes(),
        );
        assert_eq!(
            words,
            "vmid: VM 200 already exists; Parameter verification failed."
        );
    }

    #[test]
    fn a_body_that_is_not_json_is_ignored() {
        assert_eq!(
            proxmox_words(502, Some("Bad Gateway"), b"<html>proxy error</html>"),
            "Bad Gateway"
        );
        let long = format!("{{\"message\":\"{}\"}}", "é".repeat(600));
        assert!(proxmox_words(500, None, long.as_bytes()).ends_with('…'));
    }

    #[test]
    fn refusals_say_what_to_check() {
        let text = explain(401, "authentication failure");
        assert!(
            text.contains("token was refused") && text.contains("expired"),
            "{text}"
        );
        assert!(text.contains("privilege-separated"), "{text}");
        let text = explain(403, "Permission check failed (/vms/100, VM.Audit)");
        assert!(
            text.contains("VM.Audit") && text.contains("PVEAuditor"),
            "{text}"
        );
        assert_eq!(explain(500, "VM 1 is not running"), "VM 1 is not running");
    }
}
