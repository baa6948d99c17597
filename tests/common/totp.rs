//! TOTP codes as an authenticator app shows them, computed by Debian's `oathtool` (RFC 6238,
//! SHA-1, 30-second steps, 6 digits), for the local users' login tests.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// The current Unix time in seconds.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `oathtool --totp -b SECRET` at `at` (Unix seconds): the code an app shows then.
pub(crate) fn oathtool(secret: &str, at: u64) -> String {
    let out = Command::new("oathtool")
        .args(["--totp", "-b", "--now"])
        .arg(format!("@{at}"))
        .arg(secret)
        .output()
        .expect("oathtool (apt install oathtool)");
    assert!(
        out.status.success(),
        "oathtool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
