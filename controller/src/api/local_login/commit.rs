//! The last step of a local login: the codes checked, then every change and the token
//! committed in one audited transaction with their events.

use std::net::IpAddr;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use portcullis_proto::api::LoginResponse;
use portcullis_proto::users::{LocalLoggedIn, LocalLoginAnswer, LocalLoginRequest};

use super::{hash, Attempt, Done, Failed, Issue};
use crate::api::error::ApiError;
use crate::audit::event::{self, LocalUserRef};
use crate::audit::{Actor, AuditEvent, Event};
use crate::clock;
use crate::local_auth::enrolment::{self, EnrolmentError};
use crate::local_auth::login::{Commit, SecondFactor};
use crate::local_auth::password::NewPassword;
use crate::local_auth::recovery::{self, CodeHash, StoredCode};
use crate::local_auth::totp::{self, TotpSecret, TotpVerdict};
use crate::local_users::totp_seal_context;
use crate::secret::{ExposeSecret as _, SecretString};
use crate::store::local_users::{self as rows, LocalUser};
use crate::store::users::UserRecord;

impl Attempt<'_> {
    /// Checks the codes, then commits every change and the token in one transaction.
    pub(super) async fn commit(
        &self,
        found: &LocalUser,
        body: &LocalLoginRequest,
        commit: Commit,
        new_password: Option<NewPassword>,
        rehash: Option<SecretString>,
    ) -> Result<Done, Failed> {
        let state = self.state;
        let config = &state.config.local_auth;
        let user_id = found.user.id.as_str();
        let now = clock::to_i64(self.now);
        let reference = LocalUserRef {
            user: found.user.username.clone(),
            user_id: found.user.id.clone(),
            issuer: found.user.issuer.clone(),
        };
        // Pure checks first: nothing is written for a wrong code.
        let enrolled = match (&body.totp_enrolment, commit.enrol_totp) {
            (Some(answer), true) => {
                let secret = enrolment::open(&state.keys, &answer.ticket, user_id, self.now)
                    .map_err(|e| match e {
                        EnrolmentError::Invalid | EnrolmentError::Expired => {
                            ApiError::field("totp_enrolment.ticket", e.to_string())
                        }
                        other => ApiError::internal(other.to_string()),
                    })?;
                let TotpVerdict::Accepted { step } =
                    totp::verify(&secret, &answer.code, self.now, None)
                else {
                    return Err(Failed::Credentials("wrong enrolment code"));
                };
                Some((secret, step))
            }
            _ => None,
        };
        let totp_step = match (commit.second_factor, &body.totp_code) {
            (Some(SecondFactor::Totp), Some(code)) => {
                let secret = self.stored_secret(found)?;
                let last = found.local.totp_last_step.map(clock::to_u64);
                match totp::verify(&secret, code, self.now, last) {
                    TotpVerdict::Accepted { step } => Some(step),
                    TotpVerdict::Reused { .. } => return Err(Failed::Credentials("reused code")),
                    TotpVerdict::Wrong => return Err(Failed::Credentials("wrong code")),
                }
            }
            _ => None,
        };
        let new_hash = match new_password.filter(|_| commit.set_password) {
            Some(new) => Some(hash(state, new, config.argon2).await?),
            None => None,
        };
        let rehashed = match (rehash, &new_hash) {
            (Some(current), None) => {
                let current =
                    NewPassword::new(current, 1).map_err(|e| ApiError::internal(e.to_string()))?;
                Some(hash(state, current, config.argon2).await?)
            }
            _ => None,
        };

        let mut tx = state.begin_audited().await?;
        if let Some(new_hash) = &new_hash {
            rows::set_password(tx.write(), user_id, new_hash.as_phc(), false, now).await?;
            let replaced = if found.local.password_expires_at.is_some() {
                "bootstrap"
            } else {
                "one_time"
            };
            tx.record(user_event(
                found,
                self.source,
                Event::LocalPasswordChanged {
                    details: event::LocalPasswordChanged {
                        user: reference.clone(),
                        replaced: replaced.into(),
                    },
                },
            ));
        } else if let Some(rehashed) = &rehashed {
            rows::set_password(
                tx.write(),
                user_id,
                rehashed.as_phc(),
                found.local.must_change_password,
                now,
            )
            .await?;
        }
        let mut recovery_codes = Vec::new();
        let mut recovery_codes_left = None;
        if let Some((secret, step)) = enrolled {
            let sealed = state
                .keys
                .seal_secret(
                    &totp_seal_context(user_id),
                    secret.to_base32().expose_secret().as_bytes(),
                )
                .map_err(ApiError::from)?;
            let codes = recovery::generate().map_err(|e| ApiError::internal(e.to_string()))?;
            let hashes: Vec<String> = codes.stored.iter().map(|c| c.hash.to_hex()).collect();
            // False when another login enrolled first (the ticket was offered to both):
            // this one's secret is not the user's, so nothing of it is written.
            if !rows::enrol_totp(
                tx.write(),
                user_id,
                &sealed,
                clock::to_i64(step),
                &hashes,
                now,
            )
            .await?
            {
                return Err(Failed::Credentials("enrolled by another login"));
            }
            recovery_codes = codes
                .shown
                .iter()
                .map(|c| c.as_shown().expose_secret().to_owned())
                .collect();
            recovery_codes_left = u32::try_from(recovery_codes.len()).ok();
            tx.record(user_event(
                found,
                self.source,
                Event::TotpEnrolled {
                    details: event::TotpEnrolled {
                        user: reference.clone(),
                        recovery_codes: recovery_codes_left.unwrap_or(0),
                    },
                },
            ));
        }
        if let Some(step) = totp_step {
            if !rows::accept_totp_step(tx.write(), user_id, clock::to_i64(step), now).await? {
                // Another login took this step first.
                return Err(Failed::Credentials("reused code"));
            }
        }
        if let (Some(SecondFactor::Recovery), Some(typed)) =
            (commit.second_factor, &body.recovery_code)
        {
            let rows_now = rows::recovery_codes(tx.read(), user_id).await?;
            let mut codes: Vec<StoredCode> = rows_now
                .iter()
                .filter_map(|row| {
                    Some(StoredCode {
                        hash: CodeHash::from_hex(&row.code_hash).ok()?,
                        used_at: row.used_at.map(clock::to_u64),
                    })
                })
                .collect();
            let Some(index) = recovery::redeem(&mut codes, typed, self.now) else {
                return Err(Failed::Credentials("wrong recovery code"));
            };
            if !rows::use_recovery_code(tx.write(), user_id, &codes[index].hash.to_hex(), now)
                .await?
            {
                return Err(Failed::Credentials("wrong recovery code"));
            }
            let remaining = u32::try_from(recovery::remaining(&codes)).unwrap_or(u32::MAX);
            recovery_codes_left = Some(remaining);
            tx.record(user_event(
                found,
                self.source,
                Event::RecoveryCodeUsed {
                    details: event::RecoveryCodeUsed {
                        user: reference.clone(),
                        remaining,
                    },
                },
            ));
        }
        let user = UserRecord {
            amr: commit.amr(),
            auth_time: Some(now),
            updated_at: now,
            ..found.user.clone()
        };
        let source = self.source.to_string();
        if self.issue == Issue::Console {
            let opened = crate::console::session::open_in(tx, state, &user, &source).await?;
            self.succeeded();
            return Ok(Done::Console(opened));
        }
        let issued = crate::tokens::issue_in(
            tx,
            &state.keys,
            state.config.token_lifetime,
            &user,
            |user, token| crate::tokens::login_succeeded(user, token, &source),
        )
        .await?;
        self.succeeded();
        let info = crate::api::login::user_info(
            state,
            &issued.user,
            Some(clock::to_i64(issued.expires_at)),
        );
        let answer = LocalLoginAnswer::LoggedIn(LocalLoggedIn {
            login: LoginResponse {
                token: issued.secret,
                expires_at: issued.expires_at,
                user: info,
            },
            recovery_codes,
            recovery_codes_left,
        });
        Ok(Done::Api(
            (StatusCode::CREATED, Json(answer)).into_response(),
        ))
    }

    /// Clears the user's back-off and counts the login.
    fn succeeded(&self) {
        self.state
            .local_login
            .backoff()
            .record_success(self.username);
        self.state.metrics.login(
            crate::metrics::LoginMethod::Local,
            crate::metrics::LoginOutcome::Success,
        );
    }

    /// The enrolled user's TOTP secret, opened from its row.
    fn stored_secret(&self, found: &LocalUser) -> Result<TotpSecret, ApiError> {
        let sealed = found
            .local
            .totp_secret
            .as_deref()
            .ok_or_else(|| ApiError::internal("the user has no TOTP secret"))?;
        let plain = self
            .state
            .keys
            .open_secret(&totp_seal_context(&found.user.id), sealed)?;
        let text = std::str::from_utf8(plain.expose_secret())
            .map_err(|_| ApiError::internal("the stored TOTP secret cannot be read"))?;
        TotpSecret::from_base32(text).map_err(|e| {
            ApiError::internal(format!(
                "the stored TOTP secret cannot be read ({e}); reset the user with \
                 `portcullis controller users reset`"
            ))
        })
    }
}

/// An event of `found`'s own login, with the user as the actor.
fn user_event(found: &LocalUser, source: IpAddr, event: Event) -> AuditEvent {
    AuditEvent::new(
        Actor {
            user_id: Some(found.user.id.clone()),
            username: Some(found.user.username.clone()),
            groups: found.user.groups.clone(),
            source: Some(source.to_string()),
        },
        event,
    )
}
