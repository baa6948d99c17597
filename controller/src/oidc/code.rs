//! The authorization code flow with PKCE: the provider's authorization URL for a login, and
//! the code exchanged for a verified ID token.

use openidconnect::core::CoreAuthenticationFlow;
use openidconnect::{
    AuthenticationContextClass, AuthorizationCode, CsrfToken, Nonce, OAuth2TokenResponse as _,
    PkceCodeChallenge, PkceCodeVerifier, Scope, TokenResponse as _,
};

use super::{chain, OidcError, OidcIdentity, Relying};

impl Relying {
    /// A new PKCE pair: the challenge goes to the provider, the verifier stays (sealed) in the
    /// store until the callback.
    pub(crate) fn pkce() -> (PkceCodeChallenge, String) {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        (challenge, verifier.secret().clone())
    }

    /// The provider's authorization URL for a login with this state, nonce and PKCE challenge.
    /// A step-up login (`fresh`) asks for a fresh authentication (`max_age=0`) and, when the
    /// challenge names some, for these `acr_values`; the callback checks that it got them.
    pub(crate) async fn authorization_url(
        &self,
        state: &str,
        nonce: &str,
        challenge: PkceCodeChallenge,
        fresh: Option<&[String]>,
    ) -> Result<String, OidcError> {
        let md = self.metadata(false).await?;
        let client = self.client(&md)?;
        let state = state.to_owned();
        let nonce = nonce.to_owned();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            .set_pkce_challenge(challenge);
        for scope in self.config.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        if let Some(acr_values) = fresh {
            request = request.set_max_age(std::time::Duration::ZERO);
            for acr in acr_values {
                request =
                    request.add_auth_context_value(AuthenticationContextClass::new(acr.clone()));
            }
        }
        let (url, _, _) = request.url();
        Ok(url.to_string())
    }

    /// Redeems an authorization code (with the PKCE verifier) and verifies the ID token.
    pub(crate) async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: String,
        nonce: &str,
    ) -> Result<OidcIdentity, OidcError> {
        let md = self.metadata(false).await?;
        let client = self.client(&md)?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Refused(format!("its metadata has no token endpoint ({e})")))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier))
            .request_async(&super::http::Http(&self.http))
            .await
            .map_err(|e| self.token_error(e))?;
        let id_token = response.id_token().ok_or_else(|| {
            OidcError::InvalidToken(
                "the token response has no id_token (is `openid` among the scopes?)".into(),
            )
        })?;
        let _ = response.access_token();
        self.verify(md, id_token, Some(nonce)).await
    }

    pub(super) fn token_error<RE: std::error::Error + 'static>(
        &self,
        err: openidconnect::RequestTokenError<
            RE,
            openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
        >,
    ) -> OidcError {
        match err {
            openidconnect::RequestTokenError::ServerResponse(e) => OidcError::Refused(format!(
                "token request: {}{}",
                e.error().as_ref(),
                e.error_description()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            )),
            openidconnect::RequestTokenError::Request(e) => OidcError::Unreachable {
                what: "token endpoint".into(),
                cause: chain(&e),
            },
            other => OidcError::Refused(format!("token request: {}", chain(&other))),
        }
    }
}
