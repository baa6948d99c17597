//! Answering a step-up challenge from authorize-session (docs/auth.md, "Step-up MFA"): a
//! fresh login in the browser for a user of the OpenID provider, or the code of a local
//! user's authenticator app. The proof it gives counts for the one request that asked.

use std::io::{BufRead as _, Write as _};

use anyhow::{bail, Context as _};
use portcullis_proto::step_up::{
    StepUpChallenge, StepUpProof, StepUpTotp, METHOD_OIDC, METHOD_TOTP,
};
use zeroize::Zeroizing;

use crate::cli::http::{segment, ApiClient};

/// The environment variable a script sets to the current TOTP code (instead of a prompt on
/// the terminal); a code works once.
const TOTP_ENV: &str = "PORTCULLIS_TOTP_CODE";

/// Answers `challenge` with a fresh login; the controller's single-use proof.
pub(crate) async fn answer(
    api: &ApiClient,
    challenge: &StepUpChallenge,
) -> anyhow::Result<StepUpProof> {
    eprintln!(
        "Step-up required for {}: role `{}` needs a fresh login with {}.",
        challenge.target,
        challenge.role,
        wanted(challenge)
    );
    if challenge.methods.iter().any(|m| m == METHOD_TOTP) {
        let code = totp_code()?;
        let path = format!("/v1/step-up/{}/totp", segment(&challenge.id)?);
        let body = StepUpTotp {
            code: code.to_string(),
        };
        return api.post(&path, &body).await;
    }
    if challenge.methods.iter().any(|m| m == METHOD_OIDC) {
        return crate::cli::login::step_up_in_browser(api, &challenge.id).await;
    }
    bail!(
        "the controller offers no step-up method this CLI knows ({}); update portcullis",
        challenge.methods.join(", ")
    )
}

fn wanted(challenge: &StepUpChallenge) -> String {
    let mut parts = Vec::new();
    if !challenge.amr.is_empty() {
        parts.push(format!("amr {}", challenge.amr.join("|")));
    }
    if !challenge.acr_values.is_empty() {
        parts.push(format!("acr {}", challenge.acr_values.join("|")));
    }
    parts.join(" or ")
}

/// The TOTP code: from `PORTCULLIS_TOTP_CODE`, or typed on the terminal.
fn totp_code() -> anyhow::Result<Zeroizing<String>> {
    if let Ok(code) = std::env::var(TOTP_ENV) {
        return Ok(Zeroizing::new(code.trim().to_owned()));
    }
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .with_context(|| {
            format!("no terminal to ask for the TOTP code on; set {TOTP_ENV} to the current code")
        })?;
    let mut writer = tty.try_clone()?;
    write!(writer, "Code from your authenticator app: ")?;
    writer.flush()?;
    let mut line = Zeroizing::new(String::new());
    std::io::BufReader::new(tty).read_line(&mut line)?;
    Ok(Zeroizing::new(line.trim().to_owned()))
}
