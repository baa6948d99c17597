//! Secrets in memory: the `secrecy` crate's types, whose `Debug` prints `[REDACTED]`, which
//! have no `Serialize` (so a secret cannot reach a log line or an audit event by accident),
//! and whose memory is zeroised when they are dropped. Read one only where it is used,
//! through [`ExposeSecret::expose_secret`].

pub use secrecy::{ExposeSecret, SecretString};

/// Secret bytes: private keys (PKCS#8), unsealed secrets.
pub type SecretBytes = secrecy::SecretSlice<u8>;

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        let s = SecretString::from("hunter2".to_string());
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose_secret(), "hunter2");
        let b = SecretBytes::from(b"key".to_vec());
        assert!(!format!("{b:?}").contains("107"));
        assert_eq!(b.expose_secret(), b"key");
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
