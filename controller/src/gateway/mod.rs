//! What the controller does for the workers' SSH gateways (docs/ssh.md, gateway mode): it
//! certifies a gateway's host key ([`host_cert`]), mints the credential a gateway session
//! logs into its target with ([`credential`]), vets the forwards a gateway session asks for
//! as new sessions of its user ([`forward`]), and records the channels a gateway refused
//! ([`channel_refused`]). The link handler dispatches to these; each answers with a
//! [`portcullis_proto::link::Response`].
//!
//! A refusal is a `Response::Refused` whose reason says what failed and what to do; a store
//! that fails is the link's usual error.

pub(crate) mod channel_refused;
pub(crate) mod credential;
pub(crate) mod forward;
pub(crate) mod host_cert;

use crate::keys::{KeyError, Keyset, Purpose};

/// The SSH host CA's public key line (OpenSSH, no newline): what clients trust for the
/// gateway's name, served at `GET /v1/ssh/gateway-ca` and in a gateway-mode authorisation.
pub(crate) async fn host_ca_line(keys: &Keyset) -> Result<String, KeyError> {
    let key = keys.active(Purpose::SshHostCa).await?;
    crate::ssh::ca_public_openssh(&key.public_key).map_err(|e| KeyError::Crypto(e.to_string()))
}
