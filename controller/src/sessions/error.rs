//! Why authorize-session refused or failed, in the domain's words. The HTTP edge maps each
//! variant to its status and code (`api/error.rs`); the message is the variant's `Display`,
//! which says what failed and what to do next.

use crate::keys::KeyError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    /// `sessions.per_user.authorize_per_minute` refused the request.
    #[error(
        "too many sessions requested: at most {per_minute} a minute per user \
         (sessions.per_user.authorize_per_minute); retry in {retry_after} s, or reuse \
         an open session (`portcullis connect --listen-port` carries many connections)"
    )]
    RateLimited { per_minute: u32, retry_after: u64 },
    /// `sessions.per_user.max_live` refused the request.
    #[error(
        "you hold {live} live sessions, the most one user may hold \
         (sessions.per_user.max_live = {max_live}); end some with \
         `portcullis sessions cancel ID` (see `portcullis sessions list`) or let \
         unused ones expire, then retry"
    )]
    TooManyLive { max_live: u32, live: i64 },
    #[error("cannot resolve target address {address:?}: {detail}")]
    Unresolvable { address: String, detail: String },
    #[error("target address {address:?} resolves to nothing")]
    ResolvesToNothing { address: String },
    /// The policy (or a rule above it) refused the session. `admitting_cell` is set for a
    /// refusal by the role check: the matrix cell that admitted the request, so the user
    /// knows the network allows the path and only a role is missing.
    #[error("session denied: {reason}{}", role_note(.admitting_cell.as_deref()))]
    Denied {
        reason: String,
        admitting_cell: Option<String>,
    },
    #[error("no worker is available to carry the session; check `portcullis workers list`")]
    NoWorker,
    #[error(
        "target {target} names Vault secrets, but this controller's ssh.backend is not \"vault\"; \
         configure [vault] or clear the target's vault_secrets"
    )]
    VaultNotConfigured { target: String },
    #[error(
        "no Vault SSH role for target {target}: set vault.ssh_role in the controller config or \
         `portcullis targets update {target} --vault-ssh-role ROLE`"
    )]
    NoVaultSshRole { target: String },
    /// The `ssh_public_key` of the request is not an OpenSSH public key.
    #[error("{0}")]
    BadSshKey(String),
    /// Signing the grant or the certificate failed (a key that cannot sign).
    #[error("{0}")]
    Signing(String),
    /// Vault could not mint the session's credentials; the session was ended.
    #[error(
        "cannot mint the session's credentials from Vault: {message}; the session was ended \
         and anything minted for it is revoked; {hint}"
    )]
    MintFailed { message: String, hint: &'static str },
    /// The target injects a Proxmox API token, but its cluster has no sessions table here.
    #[error(
        "target {target} mints Proxmox API tokens through cluster {cluster:?}, which this \
         controller has no [catalog.proxmox.sessions] table for; configure it \
         (docs/proxmox.md) or clear the target's proxmox_cluster"
    )]
    ProxmoxNotConfigured { target: String, cluster: String },
    /// Proxmox did not make the session's API token; the session was ended.
    #[error(
        "cannot mint the session's Proxmox API token: {message}; the session was ended and \
         whatever was made for it is deleted; {hint}"
    )]
    PveMintFailed { message: String, hint: &'static str },
    /// The policy denied only for a role's MFA constraint, and a fresh login bound to this
    /// request can lift it: the challenge goes back to the client (`crate::step_up`).
    #[error(
        "step-up required: {reason}; a fresh login is needed for this session (`portcullis \
         connect` asks for it; see docs/auth.md, \"Step-up MFA\")"
    )]
    StepUpRequired {
        reason: String,
        challenge: Box<portcullis_proto::step_up::StepUpChallenge>,
    },
    /// A step-up proof sent with the request was refused.
    #[error("step-up refused: {0}")]
    StepUpRefused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
}

fn role_note(admitting_cell: Option<&str>) -> String {
    match admitting_cell {
        Some(cell) => format!(
            " (checked against the matrix cell {cell}, which admits it; the role check refused it)"
        ),
        None => String::new(),
    }
}
