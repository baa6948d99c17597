//! `portcullis login --no-browser`: print the provider's URL and read the code that the page
//! the user lands on shows, typed here (three tries).

use std::io::{BufRead as _, Write as _};

use anyhow::{bail, Context as _};
use portcullis_proto::api::{LoginResponse, OidcLoginMode};

use super::oidc::{login_response, redeem, start};
use crate::cli::http::ApiClient;

/// Logs in with a code the user types; returns the controller's answer with the new token.
pub(super) async fn login(api: &ApiClient, secret: &str) -> anyhow::Result<LoginResponse> {
    let started = start(api, OidcLoginMode::Code, None, secret).await?;
    let url = started
        .authorization_url
        .context("the controller sent no authorization URL")?;
    println!("{url}");
    let _ = std::io::stdout().flush();
    eprintln!(
        "\nOpen the URL above in a browser and sign in. The page you land on shows a code:\n\
         type it here. Never type a code someone else sent you.\n"
    );
    let mut lines = std::io::stdin().lock().lines();
    for _ in 0..3 {
        eprint!("Code: ");
        let _ = std::io::stderr().flush();
        let Some(line) = lines.next() else {
            bail!("no code was typed (end of input); run `portcullis login --no-browser` again");
        };
        let code = line.context("cannot read the code")?;
        if code.trim().is_empty() {
            continue;
        }
        match redeem(api, &started.login_id, Some(code.trim().to_owned()), secret).await {
            Ok(value) => return login_response(value),
            Err(err) if format!("{err:#}").contains("wrong code") => {
                eprintln!("{err:#}");
            }
            Err(err) => return Err(err),
        }
    }
    bail!("too many wrong codes; run `portcullis login --no-browser` again")
}
