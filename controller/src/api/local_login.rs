//! `POST /v1/auth/local/login`: a local user's login with a password and TOTP (docs/auth.md
//! "Local users"), including the first admin's bootstrap credential and TOTP enrolment.
//!
//! One request per step, no state on the server between steps but the enrolment ticket the
//! client echoes. In order: the back-off (a refused attempt checks and counts nothing); the
//! user and its password (an unknown name still costs one argon2 verification, against a
//! dummy hash); the rules of [`crate::local_auth::login::plan`]; then, when nothing is
//! missing, every change (new password, TOTP enrolment, the code's time step or recovery
//! code) and the token commit in one audited transaction with their events. Every wrong
//! credential is the same 401, counted by the back-off and summed into `login_failed`.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use portcullis_proto::users::{
    LocalLoginAnswer, LocalLoginContinue, LocalLoginRequest, LocalLoginStep, TotpEnrolmentOffer,
};

use super::error::ApiError;
use super::extract::{ApiJson, PeerAddr};
use crate::audit::denials::{Failure, FailureKind};
use crate::clock;
use crate::local_auth::backoff::{Admission, Backoff, BackoffParams};
use crate::local_auth::enrolment;
use crate::local_auth::login::{plan, Given, Plan, Refusal, SecondFactor, UserFacts};
use crate::local_auth::password::{self, Argon2Params, NewPassword, PasswordCheck, PasswordHash};
use crate::local_users::LOCAL_USERS_ISSUER;
use crate::secret::{constant_time_eq, ExposeSecret as _, SecretString};
use crate::state::AppState;
use crate::store::local_users::{self as rows, LocalUser};

/// The one answer to a wrong name, password or code, a disabled user or an expired password.
const INVALID: &str = "wrong user name, password or code";

/// How often the back-off forgets expired failures (seconds).
const PRUNE_EVERY_SECS: u64 = 60;

/// The login's shared state: the back-off counts, the dummy hash unknown names are verified
/// against, and the bound on argon2 runs at once.
pub(crate) struct LocalLoginState {
    backoff: Mutex<Backoff>,
    next_prune: AtomicU64,
    dummy: OnceLock<PasswordHash>,
    /// Each argon2 run takes `m_cost_kib` of memory on purpose: a thousand logins at once
    /// must not take a thousand times that. Twice the CPUs run; the others wait their turn.
    hashing: tokio::sync::Semaphore,
}

impl LocalLoginState {
    pub(crate) fn new(params: BackoffParams) -> LocalLoginState {
        LocalLoginState {
            backoff: Mutex::new(Backoff::new(params)),
            next_prune: AtomicU64::new(0),
            dummy: OnceLock::new(),
            hashing: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get() * 2),
            ),
        }
    }

    fn backoff(&self) -> std::sync::MutexGuard<'_, Backoff> {
        // A panic while holding the lock leaves counts that are still counts.
        self.backoff
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether an attempt may be checked now; prunes expired failures now and then.
    fn admit(&self, user: &str, source: IpAddr, now: u64) -> Admission {
        let mut backoff = self.backoff();
        if self.next_prune.load(Ordering::Relaxed) <= now {
            backoff.prune(now);
            self.next_prune
                .store(now + PRUNE_EVERY_SECS, Ordering::Relaxed);
        }
        backoff.check(user, source, now)
    }
}

/// `POST /v1/auth/local/login`: 201 [`LocalLoginAnswer::LoggedIn`], 200
/// [`LocalLoginAnswer::Continue`], 401 `invalid_credentials`, 429 with `Retry-After`; 404
/// when `[auth.local] enabled = false`.
pub(crate) async fn login(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    ApiJson(body): ApiJson<LocalLoginRequest>,
) -> Result<Response, ApiError> {
    if !state.config.local_auth.enabled {
        return Err(ApiError::not_found("route", "/v1/auth/local/login"));
    }
    let attempt = Attempt {
        state: &state,
        source: peer.ip(),
        now: state.clock.unix_secs(),
        username: &body.username,
        issue: Issue::ApiToken,
    };
    if let Admission::WaitUntil { until, .. } =
        state
            .local_login
            .admit(&body.username, attempt.source, attempt.now)
    {
        return Ok(too_many(until.saturating_sub(attempt.now).max(1)));
    }
    match attempt.step(&body).await {
        Ok(Done::Api(answer)) => Ok(answer),
        Ok(Done::Console(_)) => Err(ApiError::internal("a console login on the API route")),
        Err(Failed::Credentials(reason)) => Err(attempt.failed(reason, INVALID)),
        Err(Failed::BootstrapExpired) => Err(attempt.failed(
            "bootstrap credential expired",
            &format!(
                "the bootstrap credential expired: run `portcullis controller users reset {}` \
                 on the controller",
                body.username
            ),
        )),
        Err(Failed::Api(e)) => Err(e),
        Err(Failed::NeedsCli(message)) => Err(ApiError::internal(message)),
    }
}

/// What a successful login issues: an API token for the CLI, or a web console session
/// (backed by an API token the browser never sees: `console::session`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Issue {
    ApiToken,
    Console,
}

/// What a step answered.
pub(crate) enum Done {
    /// The API's answer: logged in (201) or what is missing (200).
    Api(Response),
    /// A console session was opened.
    Console(crate::console::session::Opened),
}

/// Why a console login did not open a session.
pub(crate) enum ConsoleRefusal {
    /// `[auth.local] enabled = false`.
    Disabled,
    /// Too many failures: try again in this many seconds (nothing was checked).
    TooMany(u64),
    /// A wrong credential (counted and audited as the API's are); the message to show.
    Credentials(String),
    /// The user must first change a password or enrol TOTP: done with the CLI.
    NeedsCli(String),
    /// Not the caller's credentials: the store, keys.
    Api(ApiError),
}

/// A local user's login for the web console with a password and TOTP code: the same checks,
/// back-off, audit and commit as `POST /v1/auth/local/login`; on success a console session
/// instead of a token in the answer.
pub(crate) async fn console_login(
    state: &AppState,
    source: IpAddr,
    username: &str,
    password: String,
    totp_code: String,
) -> Result<crate::console::session::Opened, ConsoleRefusal> {
    if !state.config.local_auth.enabled {
        return Err(ConsoleRefusal::Disabled);
    }
    let attempt = Attempt {
        state,
        source,
        now: state.clock.unix_secs(),
        username,
        issue: Issue::Console,
    };
    if let Admission::WaitUntil { until, .. } =
        state.local_login.admit(username, source, attempt.now)
    {
        return Err(ConsoleRefusal::TooMany(
            until.saturating_sub(attempt.now).max(1),
        ));
    }
    let body = LocalLoginRequest {
        username: username.to_owned(),
        password,
        totp_code: Some(totp_code).filter(|c| !c.trim().is_empty()),
        recovery_code: None,
        new_password: None,
        totp_enrolment: None,
    };
    match attempt.step(&body).await {
        Ok(Done::Console(opened)) => Ok(opened),
        Ok(Done::Api(_)) => Err(ConsoleRefusal::Api(ApiError::internal(
            "an API login answer on the console route",
        ))),
        Err(Failed::Credentials(reason)) => {
            let _counted = attempt.failed(reason, INVALID);
            Err(ConsoleRefusal::Credentials(INVALID.to_owned()))
        }
        Err(Failed::BootstrapExpired) => {
            let _counted = attempt.failed("bootstrap credential expired", INVALID);
            Err(ConsoleRefusal::Credentials(format!(
                "the bootstrap credential expired: run `portcullis controller users reset \
                 {username}` on the controller"
            )))
        }
        Err(Failed::Api(e)) => Err(ConsoleRefusal::Api(e)),
        Err(Failed::NeedsCli(message)) => Err(ConsoleRefusal::NeedsCli(message)),
    }
}

/// Why a step did not log in.
enum Failed {
    /// A console login that needs a step only the CLI offers (a new password, TOTP
    /// enrolment), with what to do.
    NeedsCli(String),
    /// A wrong credential, with the reason the audit summary counts.
    Credentials(&'static str),
    /// The bootstrap credential was right but expired.
    BootstrapExpired,
    /// Not the caller's credentials: a bad request, the store.
    Api(ApiError),
}

impl<E: Into<ApiError>> From<E> for Failed {
    fn from(e: E) -> Self {
        Failed::Api(e.into())
    }
}

struct Attempt<'a> {
    state: &'a AppState,
    source: IpAddr,
    /// Unix seconds.
    now: u64,
    username: &'a str,
    issue: Issue,
}

impl Attempt<'_> {
    /// Counts a failure (back-off and the summed `login_failed`) and builds its 401.
    fn failed(&self, reason: &'static str, message: &str) -> ApiError {
        self.state
            .local_login
            .backoff()
            .record_failure(self.username, self.source, self.now);
        self.state.metrics.login(
            crate::metrics::LoginMethod::Local,
            crate::metrics::LoginOutcome::Failure,
        );
        self.state.denials.note(Failure {
            kind: FailureKind::LoginFailed,
            source: self.source,
            reason,
            attempted_name: Some(self.username.to_owned()),
        });
        ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credentials", message)
    }

    async fn step(&self, body: &LocalLoginRequest) -> Result<Done, Failed> {
        let config = &self.state.config.local_auth;
        let password = SecretString::from(body.password.clone());
        let found = {
            let mut conn = self.state.store.conn().await?;
            rows::by_name(&mut conn, LOCAL_USERS_ISSUER, &body.username).await?
        };
        let Some(found) = found else {
            let dummy = self.dummy_hash(config.argon2).await?;
            verify(self.state, password, dummy, config.argon2).await?;
            return Err(Failed::Credentials("unknown user"));
        };
        let stored = PasswordHash::from_phc(found.local.password_hash.clone())
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let needs_rehash = match verify(self.state, password, stored, config.argon2).await? {
            PasswordCheck::Valid { needs_rehash } => needs_rehash,
            PasswordCheck::Invalid => return Err(Failed::Credentials("wrong password")),
        };
        let facts = UserFacts {
            must_change_password: found.local.must_change_password,
            password_expires_at: found.local.password_expires_at,
            totp_enrolled: found.local.totp_secret.is_some(),
            disabled: found.local.disabled_at.is_some(),
        };
        let given = Given {
            new_password: body.new_password.is_some(),
            totp_enrolment: body.totp_enrolment.is_some(),
            second_factor: match (&body.totp_code, &body.recovery_code) {
                (Some(_), _) => Some(SecondFactor::Totp),
                (None, Some(_)) => Some(SecondFactor::Recovery),
                (None, None) => None,
            },
        };
        match plan(
            &facts,
            clock::to_i64(self.now),
            config.allow_password_only,
            given,
        ) {
            Plan::Refuse(Refusal::Disabled) => Err(Failed::Credentials("disabled user")),
            Plan::Refuse(Refusal::Expired { bootstrap: true }) => Err(Failed::BootstrapExpired),
            Plan::Refuse(Refusal::Expired { bootstrap: false }) => {
                Err(Failed::Credentials("expired password"))
            }
            // A new password is checked once the refusals are past (a disabled user learns
            // nothing from a 400).
            Plan::Continue(needs) if self.issue == Issue::Console => {
                if needs == [LocalLoginStep::TotpCode] {
                    return Err(Failed::NeedsCli(
                        "enter the 6-digit code of your authenticator app".to_owned(),
                    ));
                }
                Err(Failed::NeedsCli(format!(
                    "{} The console cannot do this step: log in once with `portcullis login \
                     --password` first, then here.",
                    crate::local_auth::login::message(
                        &needs,
                        self.state.config.local_auth.min_password_length,
                    )
                )))
            }
            Plan::Continue(needs) => {
                self.checked_new_password(body)?;
                Ok(Done::Api(self.ask(&found, needs)?))
            }
            Plan::Commit(commit) => {
                let new_password = self.checked_new_password(body)?;
                let rehash = needs_rehash.then(|| SecretString::from(body.password.clone()));
                self.commit(&found, body, commit, new_password, rehash)
                    .await
            }
        }
    }

    /// The request's new password, if it has one: long enough, and not the current one.
    fn checked_new_password(
        &self,
        body: &LocalLoginRequest,
    ) -> Result<Option<NewPassword>, Failed> {
        let Some(new) = &body.new_password else {
            return Ok(None);
        };
        if constant_time_eq(new.as_bytes(), body.password.as_bytes()) {
            return Err(Failed::Api(ApiError::field(
                "new_password",
                "the new password is the current one: choose another",
            )));
        }
        NewPassword::new(
            SecretString::from(new.clone()),
            self.state.config.local_auth.min_password_length,
        )
        .map(Some)
        .map_err(|e| Failed::Api(ApiError::field("new_password", e.to_string())))
    }

    /// The dummy hash an unknown name is verified against (made once, with the current
    /// parameters, so its verification costs what a real one does).
    async fn dummy_hash(&self, params: Argon2Params) -> Result<PasswordHash, Failed> {
        if let Some(hash) = self.state.local_login.dummy.get() {
            return Ok(hash.clone());
        }
        let random = NewPassword::new(SecretString::from(crate::ids::new_secret()), 1)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let made = hash(self.state, random, params).await?;
        Ok(self.state.local_login.dummy.get_or_init(|| made).clone())
    }

    /// 200 with what is missing (and a fresh enrolment offer when enrolment is).
    fn ask(&self, found: &LocalUser, needs: Vec<LocalLoginStep>) -> Result<Response, ApiError> {
        let totp_enrolment = if needs.contains(&LocalLoginStep::TotpEnrolment) {
            let offer = enrolment::offer(
                &self.state.keys,
                &found.user.id,
                &found.user.username,
                self.now,
            )
            .map_err(|e| ApiError::internal(e.to_string()))?;
            Some(TotpEnrolmentOffer {
                ticket: offer.ticket,
                secret_base32: offer.secret.to_base32().expose_secret().to_owned(),
                otpauth_uri: offer.otpauth_uri,
                expires_at: offer.expires_at,
            })
        } else {
            None
        };
        let message = crate::local_auth::login::message(
            &needs,
            self.state.config.local_auth.min_password_length,
        );
        let answer = LocalLoginAnswer::Continue(LocalLoginContinue {
            needs,
            totp_enrolment,
            message,
        });
        Ok((StatusCode::OK, Json(answer)).into_response())
    }
}

/// argon2 off the async threads (it takes tens of milliseconds of CPU and memory on
/// purpose), a bounded number at once.
async fn verify(
    state: &AppState,
    password: SecretString,
    stored: PasswordHash,
    params: Argon2Params,
) -> Result<PasswordCheck, ApiError> {
    let _turn = hashing_turn(state).await?;
    tokio::task::spawn_blocking(move || password::verify(&password, &stored, params))
        .await
        .map_err(|e| ApiError::internal(format!("password check failed: {e}")))?
        .map_err(|e| ApiError::internal(e.to_string()))
}

async fn hash(
    state: &AppState,
    password: NewPassword,
    params: Argon2Params,
) -> Result<PasswordHash, ApiError> {
    let _turn = hashing_turn(state).await?;
    tokio::task::spawn_blocking(move || password::hash(&password, params))
        .await
        .map_err(|e| ApiError::internal(format!("hashing failed: {e}")))?
        .map_err(|e| ApiError::internal(e.to_string()))
}

async fn hashing_turn(state: &AppState) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
    state
        .local_login
        .hashing
        .acquire()
        .await
        .map_err(|_| ApiError::unavailable("the controller is stopping"))
}

/// 429 with `Retry-After`: nothing was checked or counted.
fn too_many(retry_after: u64) -> Response {
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many failed logins: try again in {retry_after} s"),
    )
    .into_response();
    if let Ok(value) = retry_after.to_string().parse() {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

mod commit;
#[cfg(test)]
pub(crate) mod tests;
