//! Who may log into the gateway: the one key the grant binds (the per-session key whose public
//! half went into authorize-session), as one of the grant's logins. Pure; the server's
//! handler asks it for every key offered and every signature verified.

use portcullis_proto::grant::GatewayClaims;
use russh::keys::{HashAlg, PublicKey};

/// The grant's gateway claims, parsed once per connection.
#[derive(Debug, Clone)]
pub(super) struct Allowed {
    key: PublicKey,
    logins: Vec<String>,
}

/// Why a login was refused (the server logs it; the client is only told "no").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum LoginRefusal {
    #[error("the key {fingerprint} is not the session's key")]
    WrongKey { fingerprint: String },
    #[error("the login {user:?} is not one of the session's logins ({allowed})")]
    WrongLogin { user: String, allowed: String },
}

/// The grant's key does not parse: the controller signed something this worker cannot use.
#[derive(Debug, thiserror::Error)]
#[error("the grant's gateway key does not parse as an OpenSSH public key: {0}")]
pub(crate) struct BadGrantKey(String);

impl Allowed {
    pub(super) fn from_claims(gw: &GatewayClaims) -> Result<Allowed, BadGrantKey> {
        let key = PublicKey::from_openssh(gw.key.trim()).map_err(|e| BadGrantKey(e.to_string()))?;
        Ok(Allowed {
            key,
            logins: gw.logins.clone(),
        })
    }

    /// Whether `user` may log in with `key`. The key data are compared, not their text (a
    /// comment or another encoding of the same key is the same key).
    pub(super) fn check(&self, user: &str, key: &PublicKey) -> Result<(), LoginRefusal> {
        if key.key_data() != self.key.key_data() {
            return Err(LoginRefusal::WrongKey {
                fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
            });
        }
        if !self.logins.iter().any(|l| l == user) {
            return Err(LoginRefusal::WrongLogin {
                user: user.to_owned(),
                allowed: self.logins.join(", "),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::testing::key;
    use portcullis_policy::SshRights;

    fn claims(key: &russh::keys::PrivateKey) -> GatewayClaims {
        GatewayClaims {
            key: key.public_key().to_openssh().unwrap(),
            logins: vec!["alice".into(), "deploy".into()],
            rights: SshRights::default(),
            rec: None,
        }
    }

    #[test]
    fn only_the_sessions_key_as_one_of_its_logins_is_let_in() {
        let mine = key(1);
        let allowed = Allowed::from_claims(&claims(&mine)).unwrap();
        assert_eq!(allowed.check("alice", mine.public_key()), Ok(()));
        assert_eq!(allowed.check("deploy", mine.public_key()), Ok(()));
        assert!(matches!(
            allowed.check("root", mine.public_key()),
            Err(LoginRefusal::WrongLogin { .. })
        ));
        // Another user's key, even with an allowed login.
        let other = key(2);
        match allowed.check("alice", other.public_key()) {
            Err(LoginRefusal::WrongKey { fingerprint }) => {
                assert!(fingerprint.starts_with("SHA256:"), "{fingerprint}")
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn the_same_key_with_a_comment_is_the_same_key_and_a_bad_grant_key_is_an_error() {
        let mine = key(3);
        let mut gw = claims(&mine);
        gw.key = format!("{} someone@laptop\n", gw.key);
        let allowed = Allowed::from_claims(&gw).unwrap();
        assert_eq!(allowed.check("alice", mine.public_key()), Ok(()));
        gw.key = "ssh-ed25519 not-base64".into();
        assert!(Allowed::from_claims(&gw).is_err());
    }
}
