//! Bytes from the operating system's random generator.

/// The system's random generator failed (it never does on a working Linux).
#[derive(Debug, thiserror::Error)]
#[error("the system's random generator failed; check that /dev/urandom or getrandom(2) works")]
pub struct RandomError;

/// Fills `out` with random bytes.
pub fn fill(out: &mut [u8]) -> Result<(), RandomError> {
    use ring::rand::SecureRandom as _;
    ring::rand::SystemRandom::new()
        .fill(out)
        .map_err(|_| RandomError)
}

/// `N` random bytes.
pub fn bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut out = [0u8; N];
    fill(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn two_draws_differ() {
        let a = super::bytes::<32>().unwrap();
        let b = super::bytes::<32>().unwrap();
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 32]);
    }
}
