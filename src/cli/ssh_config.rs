//! `portcullis ssh-config` and its helper `portcullis ssh-prepare`: plain `ssh`, scp and
//! Ansible through Portcullis, unchanged.
//!
//! OpenSSH loads `CertificateFile` right after it spawns the `ProxyCommand`, so a certificate
//! written by the ProxyCommand would race. Instead ssh-config prints one wildcard block per
//! profile, for every host named `TARGET.pc` (the suffix is `--suffix`), in three parts:
//!
//! 1. `Match originalhost *.pc exec "portcullis ssh-prepare --suffix .pc '%n'"` only runs
//!    ssh-prepare while ssh reads its configuration, before anything else: it makes sure a
//!    session that can take one more connection is on disk in `STATE/%n/` (see
//!    `ssh_config/prepare.rs`), with `host.conf`, a `Match originalhost TARGET.pc` block of the
//!    options that depend on the session (login, host key alias, certificate).
//! 2. `Match originalhost *.pc` applies whatever the exec returned, by paths derived from
//!    `%n`: the key, the pinned host keys, and a `ProxyCommand` that joins the prepared session
//!    with `connect --stdio --session-file`.
//! 3. `Include STATE/*/host.conf` (ssh reads it after the exec ran; `Include` expands no
//!    `%` tokens, hence a `Match` per file) sets the session's options.
//!
//! When ssh-prepare fails there is no session file to join, so ssh fails: it never falls
//! through to a direct connection to the host. New targets need no new block.
//!
//! The executable is written as `portcullis` when that name is on the PATH, so ssh finds it
//! at each run (an upgrade or a move of the binary needs no new block); otherwise as the
//! absolute path of the one that printed the block. No shell variable indirection: ssh runs
//! both commands with the user's shell, which need not be POSIX.
//!
//! [`host_blocks`] are the per-target blocks of before (`inventory --ansible` still writes
//! them per host); `ssh-prepare TARGET` without `--suffix` serves them.

mod prepare;
mod reuse;
mod under_run;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use portcullis_proto::api::{List, Target};

use super::connect::ssh::shell_quote;
use super::http::{ApiClient, ClientArgs};

pub(crate) use prepare::run as run_prepare;

/// Print an ~/.ssh/config block so that plain ssh and Ansible reach targets through
/// Portcullis as `TARGET.pc`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  # After `portcullis dev` and `. STATE/dev.env`:\n  portcullis ssh-config            # the block, for hosts named TARGET.pc\n  portcullis ssh-config --suffix .dev > /tmp/pc-ssh.conf   # hosts TARGET.dev, in a file for ssh -F\n\nIn a deployment:\n  portcullis ssh-config >> ~/.ssh/config          # once: new targets need no new block\n  ssh web-01.pc                   # as the first login the policy grants you\n  ssh -l deploy web-01.pc         # or another one it grants\n  portcullis ssh-config --profile staging --suffix .stg >> ~/.ssh/config\n  ssh web-01.stg                  # the same, through the profile `staging`\n  ansible -i inventory all -m ping      # with ansible_host=web-01.pc\n\nFor Ansible, let ssh multiplex its connections (fewer brokered connections, faster); note\nthat ControlPersist keeps a master connection (and so its session's connection) open for\nthat long after the last use, even past a cancel of the session:\n  # ansible.cfg\n  [ssh_connection]\n  ssh_args = -o ControlMaster=auto -o ControlPersist=60s\n  pipelining = True\n\nVS Code Remote-SSH: connect to `web-01.pc` (the block is in ~/.ssh/config); set\n`remote.SSH.useLocalServer` to true so that one ssh (one session) carries its connections.\n\nThe same block serves both SSH modes the policy can choose per role, grant or zone. In\ncertificate mode ssh gets a certificate for the session and checks the target's host key.\nIn gateway mode (`ssh_mode = \"gateway\"`) ssh logs into the worker's SSH gateway with the\nsession's key only, checks the gateway's host certificate (HostKeyAlias portcullis-gateway,\ntrusted through one `@cert-authority portcullis-gateway` line, never `*`), and the gateway\nlogs into the target with a credential you never hold; scp, sftp, rsync, `-L` to the\ntarget's localhost (if your role allows forwarding) work unchanged:\n  ssh web-01.pc -L 8080:localhost:80\n  rsync -a -e ssh ./site/ web-01.pc:/srv/site/\n\nEach ssh run reuses the target's session while it is live, has a minute left and has room\nunder its connection limit; otherwise it opens a fresh one. When no session can be had, ssh\nfails: it never connects to the host directly.\n\nTargets without a pinned SSH host key are listed in a comment (ssh to them fails): pin one with\n`portcullis targets update NAME --ssh-host-key KEY`."
)]
pub(crate) struct SshConfigArgs {
    /// The host name suffix that marks a Portcullis target: `ssh web-01.pc` reaches the
    /// target `web-01`. Give each profile its own.
    #[arg(long, default_value = DEFAULT_SUFFIX, value_name = "SUFFIX")]
    pub suffix: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// The default `--suffix`.
pub(crate) const DEFAULT_SUFFIX: &str = ".pc";

/// Make sure a session that can take one more connection, with its key, certificate and
/// login, is on disk for TARGET (used by the blocks `portcullis ssh-config` prints; fails when
/// no session can be had).
#[derive(clap::Args, Debug)]
pub(crate) struct SshPrepareArgs {
    /// The target; with --suffix, the host name as ssh was given it (`%n`): the target's
    /// name followed by the suffix.
    pub target: String,
    /// The suffix to take off TARGET (the wildcard block's).
    #[arg(long, value_name = "SUFFIX")]
    pub suffix: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

impl SshPrepareArgs {
    /// The target's name, and the name of its directory under [`state_root`] (the host name
    /// with a suffix, the target's name without).
    pub(crate) fn target_and_dir(&self) -> anyhow::Result<(String, String)> {
        let Some(suffix) = &self.suffix else {
            return Ok((self.target.clone(), self.target.clone()));
        };
        check_suffix(suffix)?;
        let target = self
            .target
            .strip_suffix(suffix.as_str())
            .filter(|t| !t.is_empty())
            .with_context(|| format!("{:?} does not end in {suffix:?}", self.target))?;
        Ok((target.to_owned(), self.target.clone()))
    }
}

/// A suffix like `.pc`: a dot, then letters, digits, `-` and `.`.
pub(crate) fn check_suffix(suffix: &str) -> anyhow::Result<()> {
    let ok = suffix.len() >= 2
        && suffix.starts_with('.')
        && !suffix.ends_with('.')
        && suffix[1..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !ok {
        anyhow::bail!("{suffix:?} is not a host name suffix: use one like .pc or .prod.pc");
    }
    Ok(())
}

/// Where sessions for ssh live: `$XDG_RUNTIME_DIR/portcullis/ssh`, else
/// `~/.cache/portcullis/ssh` (0700).
pub(crate) fn state_root() -> anyhow::Result<PathBuf> {
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .context("neither XDG_RUNTIME_DIR nor HOME is set")?;
    let root = base.join("portcullis").join("ssh");
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))?;
    Ok(root)
}

fn quote(word: &str) -> String {
    format!("\"{}\"", word.replace('\\', "\\\\").replace('"', "\\\""))
}

pub(crate) fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && name != "."
        && name != ".."
}

/// The two blocks that send ssh to `name` through Portcullis (see the module doc). `exe` is
/// the portcullis executable, `root` the [`state_root`]; `name` must be a [`safe_name`].
pub(crate) fn host_blocks(name: &str, exe: &str, root: &Path) -> anyhow::Result<String> {
    let dir = root.join(name);
    let prepare = format!("{} ssh-prepare {}", shell_quote(exe)?, shell_quote(name)?);
    let file = |file: &str| quote(&dir.join(file).display().to_string());
    Ok(format!(
        "\nMatch originalhost {name} exec {exec}\n\
         \t# (ssh-prepare has put a session for {name} on disk, or failed: then ssh fails)\n\
         Match originalhost {name}\n\
         \tInclude {options}\n\
         \tIdentityFile {key}\n\
         \tIdentitiesOnly yes\n\
         \tIdentityAgent none\n\
         \tUserKnownHostsFile {known}\n\
         \tStrictHostKeyChecking yes\n\
         \tProxyCommand {exe} connect {qname} --stdio --session-file {session}\n",
        exec = quote(&prepare),
        options = file(prepare::OPTIONS),
        key = file(prepare::KEY),
        known = file(prepare::KNOWN_HOSTS),
        exe = shell_quote(exe)?,
        qname = shell_quote(name)?,
        session = shell_quote(&dir.join(prepare::SESSION).display().to_string())?,
    ))
}

/// The wildcard block for every host `*SUFFIX` (see the module doc). `exe` is the portcullis
/// executable (a bare name is looked up on ssh's PATH at each run), `root` the
/// [`state_root`], `profile` the profile to pass on (none: the environment's settings).
pub(crate) fn wildcard_block(
    suffix: &str,
    exe: &str,
    root: &Path,
    profile: Option<&str>,
) -> anyhow::Result<String> {
    check_suffix(suffix)?;
    let exe = shell_quote(exe)?;
    let profile_arg = match profile {
        Some(name) => format!(" --profile {}", shell_quote(name)?),
        None => String::new(),
    };
    let root_text = root.display().to_string();
    if root_text.contains(['"', '\'', '\n', '\\']) {
        anyhow::bail!(
            "the session directory {root_text} cannot be written to an ssh configuration"
        );
    }
    // `%` in the directory would be taken for a token (not by `Include`, which expands none).
    let dir = root_text.replace('%', "%%");
    let pattern = format!("*{suffix}");
    let prepare = format!(
        "{exe} ssh-prepare{profile_arg} --suffix {} '%n'",
        shell_quote(suffix)?
    );
    Ok(format!(
        "\n# Every host *{suffix} is a Portcullis target: `ssh web-01{suffix}` reaches web-01{profile_note}.\n\
         Match originalhost {pattern} exec {exec}\n\
         \t# (ssh-prepare has put a session for the target on disk, or failed: then ssh fails)\n\
         Match originalhost {pattern}\n\
         \tIdentityFile \"{dir}/%n/{key}\"\n\
         \tIdentitiesOnly yes\n\
         \tIdentityAgent none\n\
         \tUserKnownHostsFile \"{dir}/%n/{known}\"\n\
         \tStrictHostKeyChecking yes\n\
         \tProxyCommand {exe}{profile_arg} connect '%n' --stdio --session-file \"{dir}/%n/{session}\"\n\
         Match all\n\
         # The session's login, host key alias and certificate, one Match block per host.\n\
         Include \"{root_text}/*/{host_conf}\"\n\
         Match all\n",
        profile_note = match profile {
            Some(name) => format!(" (profile {name})"),
            None => String::new(),
        },
        exec = quote(&prepare),
        key = prepare::KEY,
        known = prepare::KNOWN_HOSTS,
        session = prepare::SESSION,
        host_conf = prepare::HOST_CONF,
    ))
}

/// The executable the blocks run: `portcullis` when that name is on the PATH, else this
/// one's absolute path.
fn block_executable() -> anyhow::Result<String> {
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::metadata(dir.join("portcullis"))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    });
    if on_path {
        return Ok("portcullis".to_owned());
    }
    let exe = std::env::current_exe().context("cannot find the portcullis executable")?;
    Ok(exe.display().to_string())
}

pub(crate) async fn run_config(args: SshConfigArgs) -> anyhow::Result<i32> {
    check_suffix(&args.suffix)?;
    let api = ApiClient::from_args(&args.client)?;
    // Fails early (and says why) when the settings do not reach a controller.
    let targets: List<Target> = api
        .get("/v1/targets")
        .await
        .context("cannot list targets")?;
    let exe = block_executable()?;
    let root = state_root()?;
    let mut out = String::from(
        "# Generated by `portcullis ssh-config`: targets reached through Portcullis.\n",
    );
    out.push_str(&wildcard_block(
        &args.suffix,
        &exe,
        &root,
        api.profile().map(|p| p.name.as_str()),
    )?);
    let unpinned: Vec<&str> = targets
        .items
        .iter()
        .filter(|t| safe_name(&t.name) && super::connect::ssh::known_hosts(t).is_none())
        .map(|t| t.name.as_str())
        .collect();
    if !unpinned.is_empty() {
        out.push_str(&format!(
            "# No pinned SSH host key or host CA (ssh to them fails until one is): {}\n",
            unpinned.join(", ")
        ));
    }
    super::output::write_stdout(&out)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_wildcard_block_with_paths_derived_from_the_host() {
        let root = std::path::Path::new("/run/user/1/portcullis/ssh");
        let block = super::wildcard_block(".pc", "portcullis", root, Some("prod")).unwrap();
        assert!(block.contains(
            "Match originalhost *.pc exec \"portcullis ssh-prepare --profile prod --suffix .pc '%n'\"\n"
        ), "{block}");
        assert!(block.contains("IdentityFile \"/run/user/1/portcullis/ssh/%n/id_ed25519\""));
        assert!(block.contains(
            "ProxyCommand portcullis --profile prod connect '%n' --stdio --session-file \"/run/user/1/portcullis/ssh/%n/session.json\""
        ), "{block}");
        assert!(block.contains("Include \"/run/user/1/portcullis/ssh/*/host.conf\""));
        assert!(block.trim_end().ends_with("Match all"));
        let plain = super::wildcard_block(".pc", "/opt/x y/portcullis", root, None).unwrap();
        assert!(
            plain.contains("exec \"'/opt/x y/portcullis' ssh-prepare --suffix .pc '%n'\""),
            "{plain}"
        );
        let odd = std::path::Path::new("/tmp/100%/ssh");
        let odd = super::wildcard_block(".pc", "portcullis", odd, None).unwrap();
        assert!(odd.contains("\"/tmp/100%%/ssh/%n/id_ed25519\""), "{odd}");
        assert!(
            odd.contains("Include \"/tmp/100%/ssh/*/host.conf\""),
            "{odd}"
        );
        for bad in ["pc", ".", ".a b", "*.pc", ".pc.", ".p'c"] {
            assert!(super::check_suffix(bad).is_err(), "{bad}");
            assert!(super::wildcard_block(bad, "portcullis", root, None).is_err());
        }
    }

    #[test]
    fn the_target_is_the_host_without_the_suffix() {
        let args = |target: &str, suffix: Option<&str>| super::SshPrepareArgs {
            target: target.into(),
            suffix: suffix.map(Into::into),
            client: Default::default(),
        };
        assert_eq!(
            args("web-01.pc", Some(".pc")).target_and_dir().unwrap(),
            ("web-01".to_owned(), "web-01.pc".to_owned())
        );
        assert_eq!(
            args("web-01", None).target_and_dir().unwrap(),
            ("web-01".to_owned(), "web-01".to_owned())
        );
        assert!(args("web-01.stg", Some(".pc")).target_and_dir().is_err());
        assert!(args(".pc", Some(".pc")).target_and_dir().is_err());
    }

    #[test]
    fn names_and_quotes() {
        assert!(super::safe_name("web-01"));
        assert!(!super::safe_name("../etc"));
        assert!(!super::safe_name("a b"));
        assert_eq!(super::quote(r#"a "b""#), r#""a \"b\"""#);
    }
}
