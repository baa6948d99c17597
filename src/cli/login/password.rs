//! `portcullis login --password` and `--bootstrap-file`: a local user's login (password,
//! TOTP, and at the first login a new password and TOTP enrolment with a QR code).
//!
//! The controller answers each request with a token or with what it still needs
//! (`POST /v1/auth/local/login`); this file asks the person for exactly that and sends the
//! name and password again with it. Prompts go to stderr. On a terminal, secrets are typed
//! without echo; otherwise each answer is one line of stdin, so scripts and tests can drive
//! the login. A password is never an argument: it is typed, or read from a file only its
//! owner can read (`--bootstrap-file`, and `--password-file` for the first admin's new one).

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::Path;

use anyhow::Context as _;
use portcullis_proto::api::ErrorBody;
use portcullis_proto::users::{
    LocalLoggedIn, LocalLoginAnswer, LocalLoginRequest, LocalLoginStep, TotpEnrolmentAnswer,
    TotpEnrolmentOffer,
};
use zeroize::Zeroizing;

use super::super::http::{ApiClient, ApiError};
use super::super::output;
use super::{save_token, LoginArgs};

/// Continues answered before giving up (a controller that keeps asking is not followed
/// forever).
const MAX_ROUNDS: usize = 4;

pub(super) async fn login(
    api: &ApiClient,
    args: &LoginArgs,
    token_path: &Path,
) -> anyhow::Result<i32> {
    let mut input = Input::new();
    let username = match &args.user {
        Some(name) => name.clone(),
        None => std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .context("no user name: pass --user NAME")?,
    };
    let password = match &args.bootstrap_file {
        Some(file) => read_secret_file(file, "bootstrap credential")?,
        None => input.secret("Password: ")?,
    };
    let mut request = LocalLoginRequest {
        username,
        password: password.to_string(),
        ..LocalLoginRequest::default()
    };
    for _ in 0..MAX_ROUNDS {
        let answer: LocalLoginAnswer = api
            .post("/v1/auth/local/login", &request)
            .await
            .map_err(plain_error)?;
        let asked = match answer {
            LocalLoginAnswer::LoggedIn(done) => return finish(args, token_path, &done),
            LocalLoginAnswer::Continue(asked) => asked,
        };
        let before = (
            request.new_password.is_some(),
            request.totp_enrolment.is_some(),
            request.totp_code.is_some() || request.recovery_code.is_some(),
        );
        eprintln!("{}.", asked.message);
        for step in &asked.needs {
            match step {
                LocalLoginStep::NewPassword => {
                    request.new_password = Some(new_password(&mut input, args)?.to_string());
                }
                LocalLoginStep::TotpEnrolment => {
                    let offer = asked
                        .totp_enrolment
                        .as_ref()
                        .context("the controller asked for a TOTP enrolment without an offer")?;
                    show_offer(offer);
                    let code = input.line("TOTP code: ")?;
                    request.totp_enrolment = Some(TotpEnrolmentAnswer {
                        ticket: offer.ticket.clone(),
                        code: code.to_string(),
                    });
                }
                LocalLoginStep::TotpCode => {
                    let typed = input.line("TOTP code (or a recovery code): ")?;
                    if is_totp_code(&typed) {
                        request.totp_code = Some(typed.to_string());
                    } else {
                        request.recovery_code = Some(typed.to_string());
                    }
                }
            }
        }
        let after = (
            request.new_password.is_some(),
            request.totp_enrolment.is_some(),
            request.totp_code.is_some() || request.recovery_code.is_some(),
        );
        if before == after {
            anyhow::bail!(
                "the controller keeps asking for the same steps ({:?})",
                asked.needs
            );
        }
    }
    anyhow::bail!("the login did not finish after {MAX_ROUNDS} steps")
}

/// Saves the token and tells what happened (the recovery codes once).
fn finish(args: &LoginArgs, token_path: &Path, done: &LocalLoggedIn) -> anyhow::Result<i32> {
    save_token(token_path, &done.login.token)?;
    let user = &done.login.user;
    eprintln!(
        "Logged in as {} (local user, {}); groups: {}; token expires {}; saved to {}",
        user.username,
        if user.amr.is_empty() {
            "no method".to_owned()
        } else {
            user.amr.join(",")
        },
        if user.groups.is_empty() {
            "none".to_owned()
        } else {
            user.groups.join(", ")
        },
        output::time(done.login.expires_at),
        token_path.display()
    );
    if !done.recovery_codes.is_empty() {
        eprintln!(
            "Your recovery codes: each logs in once instead of a TOTP code. They are shown \
             this once: store them now where you keep passwords, away from your phone."
        );
    }
    if args.json {
        let mut out = serde_json::json!({
            "user": user,
            "expires_at": done.login.expires_at,
        });
        if !done.recovery_codes.is_empty() {
            out["recovery_codes"] = serde_json::json!(done.recovery_codes);
        }
        println!("{out}");
    } else {
        for code in &done.recovery_codes {
            println!("{code}");
        }
    }
    if let Some(left) = done
        .recovery_codes_left
        .filter(|&n| n < 3 && done.recovery_codes.is_empty())
    {
        eprintln!(
            "Only {left} recovery code(s) left: ask an administrator to reset your TOTP \
             (`portcullis users reset`) for new ones."
        );
    }
    if args.client.token.is_some() {
        eprintln!("Note: PORTCULLIS_TOKEN (or --token) is set and overrides the saved token.");
    }
    Ok(0)
}

/// The new password: from `--password-file`, or typed twice.
fn new_password(input: &mut Input, args: &LoginArgs) -> anyhow::Result<Zeroizing<String>> {
    if let Some(file) = &args.password_file {
        return read_secret_file(file, "new password");
    }
    let first = input.secret("New password: ")?;
    let second = input.secret("Repeat the new password: ")?;
    if first != second {
        anyhow::bail!("the two new passwords differ: log in again and type the same one twice");
    }
    Ok(first)
}

/// The QR code, the secret and the URI of an enrolment offer, on stderr.
fn show_offer(offer: &TotpEnrolmentOffer) {
    eprintln!("Add this account to your authenticator app: scan the QR code,");
    match qr_picture(&offer.otpauth_uri) {
        Ok(picture) => eprintln!("{picture}"),
        Err(e) => eprintln!("(no QR code: {e})"),
    }
    eprintln!("or type the secret: {}", offer.secret_base32);
    eprintln!("URI: {}", offer.otpauth_uri);
    eprintln!(
        "Then type the code the app shows (within {}).",
        output::time(offer.expires_at)
    );
}

/// `text` as a QR code of half-height blocks (two modules a character), light on dark as a
/// terminal shows it, with its quiet zone.
fn qr_picture(text: &str) -> Result<String, qrcode::types::QrError> {
    use qrcode::render::unicode::Dense1x2;
    Ok(qrcode::QrCode::new(text.as_bytes())?
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

/// Six digits (spaces allowed): a TOTP code; anything else is taken for a recovery code.
fn is_totp_code(typed: &str) -> bool {
    let digits: Vec<char> = typed.chars().filter(|c| !c.is_whitespace()).collect();
    digits.len() == 6 && digits.iter().all(char::is_ascii_digit)
}

/// Reads a secret from `path`, which only its owner may read.
fn read_secret_file(path: &Path, what: &str) -> anyhow::Result<Zeroizing<String>> {
    let secret = portcullis_files::read_owner_only(path)
        .with_context(|| format!("cannot read the {what} from {}", path.display()))?;
    Ok(Zeroizing::new(secret))
}

/// The controller's refusals in words a person acts on; the status (and so the exit code)
/// is kept.
fn plain_error(err: anyhow::Error) -> anyhow::Error {
    let Some(api) = err.downcast_ref::<ApiError>() else {
        return err;
    };
    let message = match api.status {
        401 if api
            .body
            .message
            .starts_with("the bootstrap credential expired") =>
        {
            api.body.message.clone()
        }
        401 => "wrong user name, password or code".to_owned(),
        429 => api.body.message.clone(),
        _ => return err,
    };
    ApiError {
        status: api.status,
        body: ErrorBody {
            error: api.body.error.clone(),
            message,
            field: None,
            step_up: None,
        },
    }
    .into()
}

/// Where answers come from: the terminal (secrets without echo) or stdin's lines.
struct Input {
    terminal: bool,
    lines: std::io::Lines<std::io::StdinLock<'static>>,
}

impl Input {
    fn new() -> Input {
        let stdin = std::io::stdin();
        Input {
            terminal: stdin.is_terminal(),
            lines: stdin.lock().lines(),
        }
    }

    /// One line after `prompt` (echoed on a terminal).
    fn line(&mut self, prompt: &str) -> anyhow::Result<Zeroizing<String>> {
        eprint!("{prompt}");
        std::io::stderr().flush().ok();
        let line = self
            .lines
            .next()
            .context("no answer: standard input ended")?
            .context("cannot read standard input")?;
        if !self.terminal {
            eprintln!();
        }
        Ok(Zeroizing::new(line.trim_end_matches('\r').to_owned()))
    }

    /// A secret after `prompt`: not echoed on a terminal.
    fn secret(&mut self, prompt: &str) -> anyhow::Result<Zeroizing<String>> {
        if !self.terminal {
            return self.line(prompt);
        }
        crate::cli::no_echo::without_echo(|| self.line(prompt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_digits_are_a_totp_code_anything_else_a_recovery_code() {
        assert!(is_totp_code("123456"));
        assert!(is_totp_code("123 456"));
        assert!(!is_totp_code("12345"));
        assert!(!is_totp_code("abcd-efgh-ijkl-mnop"));
        assert!(!is_totp_code("1234567"));
    }

    #[test]
    fn an_enrolment_uri_makes_a_qr_code_of_terminal_blocks() {
        let uri = "otpauth://totp/Portcullis:alice?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\
                   &issuer=Portcullis&algorithm=SHA1&digits=6&period=30";
        let picture = qr_picture(uri).unwrap();
        let rows: Vec<&str> = picture.lines().collect();
        assert!(rows.len() > 10, "{picture}");
        assert!(rows
            .iter()
            .all(|r| r.chars().count() == rows[0].chars().count()));
        assert!(
            picture
                .chars()
                .all(|c| " \u{2580}\u{2584}\u{2588}\n".contains(c)),
            "{picture}"
        );
    }

    #[test]
    fn refusals_read_as_what_to_do_and_keep_their_status() {
        let refused = |status: u16, message: &str| -> anyhow::Error {
            ApiError {
                status,
                body: ErrorBody {
                    error: "x".into(),
                    message: message.into(),
                    field: None,
                    step_up: None,
                },
            }
            .into()
        };
        let err = plain_error(refused(
            401,
            "wrong user name, password or code (no token: ...)",
        ));
        let api = err.downcast_ref::<ApiError>().unwrap();
        assert_eq!(
            (api.status, api.body.message.as_str()),
            (401, "wrong user name, password or code")
        );
        let err = plain_error(refused(429, "too many failed logins: try again in 4 s"));
        assert!(err.to_string().contains("try again in 4 s"), "{err}");
        let err = plain_error(refused(401, "the bootstrap credential expired: run `x`"));
        assert!(
            err.to_string().contains("bootstrap credential expired"),
            "{err}"
        );
    }
}
