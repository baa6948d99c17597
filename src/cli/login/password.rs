//! `portcullis login --password` and `--bootstrap-file`: a local user's login (password,
//! TOTP, and at the first login a new password and TOTP enrolment with a QR code).
//!
//! CONTRACT(issue 21): the local-login helper builds this.

use std::path::Path;

use super::super::http::ApiClient;
use super::LoginArgs;

pub(super) async fn login(
    _api: &ApiClient,
    _args: &LoginArgs,
    _token_path: &Path,
) -> anyhow::Result<i32> {
    anyhow::bail!("local login is not built yet")
}
