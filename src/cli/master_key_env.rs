//! `PORTCULLIS_MASTER_KEY` leaves the process environment as soon as the binary starts,
//! before any thread exists (so removing a variable races with no reader).
//!
//! Removing it from libc's list is not enough for a long-running controller: the kernel shows
//! the environment the process was started with (`/proc/PID/environ`, readable by the same
//! account and root) whatever the process does to its copy later. So `controller run`
//! re-executes its own binary once, same process id and arguments, with the variable gone
//! from the new environment and the key handed over on a pipe as its standard input (which
//! the daemon does not otherwise read). The other commands are short-lived and only drop it.

use std::io::{Read as _, Write as _};

use anyhow::Context as _;
use portcullis_controller::secret::{ExposeSecret as _, SecretString};
use zeroize::Zeroizing;

/// The variable operators set.
pub(crate) const VAR: &str = "PORTCULLIS_MASTER_KEY";
/// Set only on the re-executed controller: its master key is on standard input.
const HANDED_OVER: &str = "PORTCULLIS_MASTER_KEY_ON_STDIN";

/// Takes the master key out of the environment. Call first thing in `main`, while the
/// process has one thread. With `daemon`, a key found in the environment makes the process
/// re-execute itself without it (this returns only on failure).
pub(crate) fn take(daemon: bool) -> anyhow::Result<Option<SecretString>> {
    let handed_over = std::env::var_os(HANDED_OVER).is_some();
    // Safe in edition 2021 and sound here: no other thread exists yet to read the
    // environment (see the caller).
    std::env::remove_var(HANDED_OVER);
    if handed_over && daemon {
        let mut text = Zeroizing::new(String::new());
        std::io::stdin()
            .take(4096)
            .read_to_string(&mut text)
            .context("cannot read the master key handed over on standard input")?;
        let key = text.trim();
        return Ok((!key.is_empty()).then(|| SecretString::from(key.to_owned())));
    }
    let Some(value) = std::env::var_os(VAR) else {
        return Ok(None);
    };
    std::env::remove_var(VAR);
    let value = SecretString::from(
        value
            .into_string()
            .map_err(|_| anyhow::anyhow!("{VAR} is not text: it must be 64 hex characters"))?,
    );
    if daemon {
        return Err(reexecute_without(&value));
    }
    Ok(Some(value))
}

/// Replaces the process image with the same binary and arguments, minus the variable, the
/// key on a pipe as standard input. Returns only the error that stopped it.
fn reexecute_without(key: &SecretString) -> anyhow::Error {
    use std::os::unix::process::CommandExt as _;
    let run = || -> anyhow::Result<std::convert::Infallible> {
        let (reader, mut writer) = std::io::pipe()?;
        // 64 hex characters fit in any pipe buffer: this never blocks.
        writer.write_all(key.expose_secret().as_bytes())?;
        drop(writer);
        let mut args = std::env::args_os();
        let arg0 = args.next().unwrap_or_else(|| "portcullis".into());
        // /proc/self/exe is this very binary, even if its file was replaced meanwhile.
        Err(std::process::Command::new("/proc/self/exe")
            .arg0(arg0)
            .args(args)
            .env_remove(VAR)
            .env(HANDED_OVER, "1")
            .stdin(std::process::Stdio::from(reader))
            .exec()
            .into())
    };
    match run() {
        Ok(never) => match never {},
        Err(e) => e.context(format!(
            "cannot restart the controller without {VAR} in its environment; \
             use keys.master_key_file instead (see `portcullis controller keygen`)"
        )),
    }
}
