//! The rules of one local login step, pure: from the stored user's state, the time and the
//! pieces the request carries (after its password was verified), what is still missing or
//! what to commit. The endpoint (`api/local_login.rs`) does the I/O around it: the back-off,
//! the password and code checks, the transaction.
//!
//! The rules:
//! - a disabled user, or a password past its `password_expires_at`, is refused;
//! - a password an administrator set (or the bootstrap credential) must be replaced
//!   (`NewPassword`);
//! - a user without TOTP enrols it (`TotpEnrolment`) unless the deployment sets
//!   `allow_password_only`; the bootstrap user (must change a password that expires) enrols
//!   whatever that says, so the bootstrap credential never makes a password-only admin;
//! - an enrolled user gives a TOTP code or a recovery code (`TotpCode`);
//! - nothing is committed until every missing piece is given.

use portcullis_proto::users::LocalLoginStep;

/// What the store says about the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UserFacts {
    pub(crate) must_change_password: bool,
    /// Unix seconds.
    pub(crate) password_expires_at: Option<i64>,
    pub(crate) totp_enrolled: bool,
    pub(crate) disabled: bool,
}

impl UserFacts {
    /// The first admin's bootstrap credential (or any password that must change and
    /// expires): enrolment is mandatory for it.
    pub(crate) fn is_bootstrap(&self) -> bool {
        self.must_change_password && self.password_expires_at.is_some()
    }
}

/// The second factor a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecondFactor {
    Totp,
    Recovery,
}

/// What the request carries besides the (verified) password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Given {
    pub(crate) new_password: bool,
    pub(crate) totp_enrolment: bool,
    pub(crate) second_factor: Option<SecondFactor>,
}

/// Why a right password does not log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Disabled,
    /// The password expired; `bootstrap`: it was the bootstrap credential (the answer may
    /// then say how to get a new one, the password being right).
    Expired {
        bootstrap: bool,
    },
}

/// What to do in one transaction when nothing is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Commit {
    /// Replace the password with the request's new one.
    pub(crate) set_password: bool,
    /// Store the offered TOTP secret (and new recovery codes).
    pub(crate) enrol_totp: bool,
    /// Check and consume this factor of the enrolled user.
    pub(crate) second_factor: Option<SecondFactor>,
}

impl Commit {
    /// The token's `amr`: a TOTP code, a recovery code or a confirmed enrolment count as
    /// `otp`, and then as `mfa` too (a second factor was used: what an approver of an access
    /// request needs, as an OIDC login's `mfa` when `[auth.oidc.mfa]` is met).
    pub(crate) fn amr(&self) -> Vec<String> {
        if self.enrol_totp || self.second_factor.is_some() {
            vec!["pwd".into(), "otp".into(), "mfa".into()]
        } else {
            vec!["pwd".into()]
        }
    }
}

/// The outcome of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    Refuse(Refusal),
    /// Ask again with these pieces (in this order).
    Continue(Vec<LocalLoginStep>),
    Commit(Commit),
}

/// The plan for a request whose password verified against `user`'s at `now`.
pub(crate) fn plan(user: &UserFacts, now: i64, allow_password_only: bool, given: Given) -> Plan {
    if user.disabled {
        return Plan::Refuse(Refusal::Disabled);
    }
    if user.password_expires_at.is_some_and(|at| at < now) {
        return Plan::Refuse(Refusal::Expired {
            bootstrap: user.is_bootstrap(),
        });
    }
    let mut needs = Vec::new();
    if user.must_change_password && !given.new_password {
        needs.push(LocalLoginStep::NewPassword);
    }
    let must_enrol = !user.totp_enrolled && (!allow_password_only || user.is_bootstrap());
    if must_enrol && !given.totp_enrolment {
        needs.push(LocalLoginStep::TotpEnrolment);
    }
    if user.totp_enrolled && given.second_factor.is_none() {
        needs.push(LocalLoginStep::TotpCode);
    }
    if !needs.is_empty() {
        return Plan::Continue(needs);
    }
    Plan::Commit(Commit {
        set_password: user.must_change_password,
        enrol_totp: !user.totp_enrolled && given.totp_enrolment,
        second_factor: given.second_factor.filter(|_| user.totp_enrolled),
    })
}

/// What to tell the person about `needs`.
pub(crate) fn message(needs: &[LocalLoginStep], min_password_length: usize) -> String {
    let parts: Vec<String> = needs
        .iter()
        .map(|step| match step {
            LocalLoginStep::NewPassword => {
                format!("set a new password of at least {min_password_length} characters")
            }
            LocalLoginStep::TotpEnrolment => {
                "add the offered TOTP secret to an authenticator app and give its code".into()
            }
            LocalLoginStep::TotpCode => {
                "give the code of your authenticator app (or a recovery code)".into()
            }
        })
        .collect();
    parts.join("; ")
}

#[cfg(test)]
mod tests;
