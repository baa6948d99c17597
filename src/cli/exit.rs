//! The exit status of `portcullis`: one code per kind of failure, so scripts can tell "log in
//! again" from "no such target" from "the controller is down" without reading messages.
//!
//! Commands return their own status for answers that are not failures (`policy explain`'s
//! deny, `audit verify`'s and `recordings verify`'s break are 1, an incomplete recording 11; `connect --exec` and `connect ssh` return the
//! child's status once it has started). Every error reaching `main` is mapped here, in one
//! place, from the typed errors in its chain: the API's answer ([`ApiError`]), a peer that
//! could not be reached ([`Unreachable`]), the worker's refusal ([`Refused`]).

use std::fmt;

use portcullis_proto::proxy::RefusalCode;

use super::connect::Refused;
use super::http::ApiError;

/// Any failure without a code of its own (a local file, an answer this CLI cannot read).
pub(crate) const FAILURE: u8 = 3;
/// No token, or one the controller does not accept (HTTP 401): log in again.
pub(crate) const UNAUTHENTICATED: u8 = 4;
/// A permission is missing or the policy denies the session (HTTP 403).
pub(crate) const FORBIDDEN: u8 = 5;
/// No such target, session, worker or user (HTTP 404).
pub(crate) const NOT_FOUND: u8 = 6;
/// The request was refused as it stands: a bad value, a conflict, a limit (other HTTP 4xx),
/// or the worker refused the connection.
pub(crate) const REFUSED: u8 = 7;
/// The controller or the worker could not be reached, did not answer in time, or is
/// unavailable (HTTP 503, 504).
pub(crate) const UNREACHABLE: u8 = 8;
/// The controller failed (other HTTP 5xx).
pub(crate) const CONTROLLER_ERROR: u8 = 9;
/// `connect`: the session ended under it (cancelled, logged out, expired, a policy change).
pub(crate) const SESSION_ENDED: u8 = 10;
/// `recordings verify`: the recording is incomplete (its chain holds but ends early, or its
/// newest chunks are not sealed in the audit log yet).
pub(crate) const INCOMPLETE: u8 = 11;
/// `catalog sync`: a cluster's sync failed (its last good catalog stays) or another
/// controller was syncing it; the other clusters' results stand.
pub(crate) const NOT_SYNCED: u8 = 12;

/// The EXIT STATUS section of `portcullis --help`.
pub(crate) const HELP: &str = "\
EXIT STATUS:
  0  success
  1  the answer is no: `policy explain` denies, `policy check`, `audit verify` or
     `recordings verify` finds a fault, `policy diff` finds a change, `policy simulate`
     reaches nothing
  2  usage: invalid arguments or flags
  3  any other failure (a local file, an unexpected answer)
  4  not authenticated: no token, or an unknown, expired or revoked one (log in again)
  5  forbidden: a permission is missing, or the policy denies the session
  6  not found: no such target, session, worker or user
  7  refused: the controller refused the request as it stands, or the worker the connection
  8  unreachable: the controller or the worker cannot be reached or is unavailable
  9  the controller failed (HTTP 5xx)
  10 connect: the session ended under it (cancelled, logged out, expired, policy change)
  11 recordings verify: the recording is incomplete (a broken one is 1)
  12 catalog sync: a cluster's sync failed (its last good catalog stays) or another
     controller was syncing it
  `connect --exec` and `connect ssh` return the command's own status once it has started.";

/// A controller or worker that could not be reached or did not answer in time.
#[derive(Debug, Clone)]
pub(crate) struct Unreachable(pub String);

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unreachable {}

/// The exit status for an error: the first typed error in its chain decides.
pub(crate) fn code_of(err: &anyhow::Error) -> u8 {
    err.chain().find_map(code_of_cause).unwrap_or(FAILURE)
}

fn code_of_cause(cause: &(dyn std::error::Error + 'static)) -> Option<u8> {
    if let Some(api) = cause.downcast_ref::<ApiError>() {
        return Some(code_of_status(api.status));
    }
    if cause.downcast_ref::<Unreachable>().is_some() {
        return Some(UNREACHABLE);
    }
    if let Some(refused) = cause.downcast_ref::<Refused>() {
        return Some(match refused.code {
            RefusalCode::SessionEnded | RefusalCode::ExpiredGrant => SESSION_ENDED,
            _ => REFUSED,
        });
    }
    None
}

fn code_of_status(status: u16) -> u8 {
    match status {
        401 => UNAUTHENTICATED,
        403 => FORBIDDEN,
        404 => NOT_FOUND,
        503 | 504 => UNREACHABLE,
        400..=499 => REFUSED,
        _ => CONTROLLER_ERROR,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use anyhow::Context as _;
    use portcullis_proto::api::ErrorBody;

    use super::*;

    fn api(status: u16) -> anyhow::Error {
        anyhow::Error::new(ApiError {
            status,
            body: ErrorBody {
                error: "x".into(),
                message: "m".into(),
                field: None,
                step_up: None,
            },
        })
        .context("cannot do it")
    }

    #[test]
    fn api_answers_map_by_status_under_any_context() {
        for (status, code) in [
            (401, UNAUTHENTICATED),
            (403, FORBIDDEN),
            (404, NOT_FOUND),
            (400, REFUSED),
            (409, REFUSED),
            (422, REFUSED),
            (429, REFUSED),
            (503, UNREACHABLE),
            (504, UNREACHABLE),
            (500, CONTROLLER_ERROR),
            (502, CONTROLLER_ERROR),
        ] {
            assert_eq!(code_of(&api(status)), code, "HTTP {status}");
        }
    }

    #[test]
    fn the_rest_maps_by_type() {
        let down = Err::<(), _>(Unreachable("cannot reach the controller".into()))
            .context("cannot list targets")
            .unwrap_err();
        assert_eq!(code_of(&down), UNREACHABLE);
        assert_eq!(code_of(&anyhow::anyhow!("cannot read file")), FAILURE);
        let refused = |code| {
            anyhow::Error::new(Refused {
                code,
                reason: String::new(),
            })
        };
        assert_eq!(code_of(&refused(RefusalCode::SessionEnded)), SESSION_ENDED);
        assert_eq!(code_of(&refused(RefusalCode::ConnectionLimit)), REFUSED);
    }

    #[test]
    fn the_help_lists_every_code() {
        for code in [
            0,
            1,
            2,
            FAILURE,
            UNAUTHENTICATED,
            FORBIDDEN,
            NOT_FOUND,
            REFUSED,
            UNREACHABLE,
            CONTROLLER_ERROR,
            SESSION_ENDED,
            INCOMPLETE,
            NOT_SYNCED,
        ] {
            assert!(
                HELP.lines()
                    .any(|l| l.trim_start().starts_with(&format!("{code} "))),
                "{code}"
            );
        }
    }
}
