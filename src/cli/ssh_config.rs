//! `portcullis ssh-config` and its helper `portcullis ssh-prepare`: plain `ssh`, scp and
//! Ansible through Portcullis, unchanged.
//!
//! OpenSSH loads `CertificateFile` right after it spawns the `ProxyCommand`, so a certificate
//! written by the ProxyCommand would race. Instead each target gets two blocks. The first,
//! `Match originalhost TARGET exec "portcullis ssh-prepare TARGET"`, only runs ssh-prepare
//! while ssh reads its configuration, before anything else: it makes sure a session that can
//! take one more connection is on disk (see `ssh_config/prepare.rs`). The second,
//! `Match originalhost TARGET`, applies whatever the exec returned: it sets the key, the
//! certificate, the pinned host keys, the login, and a `ProxyCommand` that joins the prepared
//! session with `connect --stdio --session-file`. When ssh-prepare fails there is no session
//! file to join, so ssh fails: it never falls through to a direct connection to the host.

mod prepare;
mod reuse;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use portcullis_proto::api::{List, Target};

use super::connect::ssh::shell_quote;
use super::http::{ApiClient, ClientArgs};

pub(crate) use prepare::run as run_prepare;

/// Print ~/.ssh/config blocks so that plain ssh and Ansible reach targets through Portcullis.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  portcullis ssh-config >> ~/.ssh/config\n  ssh web-01                      # as the first login the policy grants you\n  ssh -l deploy web-01            # or another one it grants\n  ansible -i inventory all -m ping      # with ansible_host=web-01\n\nFor Ansible, let ssh multiplex its connections (fewer brokered connections, faster):\n  # ansible.cfg\n  [ssh_connection]\n  ssh_args = -o ControlMaster=auto -o ControlPersist=60s\n  pipelining = True\n\nThe same blocks serve both SSH modes the policy can choose per role, grant or zone. In\ncertificate mode ssh gets a certificate for the session and checks the target's host key.\nIn gateway mode (`ssh_mode = \"gateway\"`) ssh logs into the worker's SSH gateway with the\nsession's key only, checks the gateway's host certificate (HostKeyAlias portcullis-gateway,\ntrusted through one `@cert-authority portcullis-gateway` line, never `*`), and the gateway\nlogs into the target with a credential you never hold; scp, sftp, rsync, `-L` to the\ntarget's localhost (if your role allows forwarding) work unchanged:\n  ssh web-01 -L 8080:localhost:80\n  rsync -a -e ssh ./site/ web-01:/srv/site/\n\nEach ssh run reuses the target's session while it is live, has a minute left and has room\nunder its connection limit; otherwise it opens a fresh one. When no session can be had, ssh\nfails: it never connects to the host directly.\n\nTargets without a pinned SSH host key are listed as comments: pin one with\n`portcullis targets update NAME --ssh-host-key KEY`."
)]
pub(crate) struct SshConfigArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Make sure a session that can take one more connection, with its key, certificate and
/// login, is on disk for TARGET (used by the blocks `portcullis ssh-config` prints; fails when
/// no session can be had).
#[derive(clap::Args, Debug)]
pub(crate) struct SshPrepareArgs {
    pub target: String,
    #[command(flatten)]
    pub client: ClientArgs,
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

pub(crate) async fn run_config(args: SshConfigArgs) -> anyhow::Result<i32> {
    let api = ApiClient::from_args(&args.client)?;
    let targets: List<Target> = api
        .get("/v1/targets")
        .await
        .context("cannot list targets")?;
    let exe = std::env::current_exe().context("cannot find the portcullis executable")?;
    let exe = exe.display().to_string();
    let root = state_root()?;
    let mut out = String::from(
        "# Generated by `portcullis ssh-config`: targets reached through Portcullis.\n",
    );
    for t in &targets.items {
        if !safe_name(&t.name) {
            continue;
        }
        if super::connect::ssh::known_hosts(t).is_none() {
            out.push_str(&format!(
                "# {}: no pinned SSH host key or host CA; skipped\n",
                t.name
            ));
            continue;
        }
        out.push_str(&host_blocks(&t.name, &exe, &root)?);
    }
    super::output::write_stdout(&out)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_and_quotes() {
        assert!(super::safe_name("web-01"));
        assert!(!super::safe_name("../etc"));
        assert!(!super::safe_name("a b"));
        assert_eq!(super::quote(r#"a "b""#), r#""a \"b\"""#);
    }
}
