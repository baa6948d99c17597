//! `--exec CMD -- ARGS...`: run a command against a local listener of the session.

use std::os::unix::process::ExitStatusExt as _;
use std::process::ExitStatus;

use std::fmt;

use anyhow::Context as _;
use zeroize::Zeroizing;

use super::signals::{Caught, Signals};
use super::template::{Context, SecretValues, Template};

/// The host the `--exec` listener binds, substituted for `{host}`.
pub(super) const EXEC_HOST: &str = "127.0.0.1";

/// Fills in one argument's placeholders (`{{addr}}`, `{{host}}`, `{{port}}`, and the older
/// `{host}` and `{port}`); a secret placeholder is an error here: [`ExecCommand::check`]
/// refuses those before any session is opened.
pub(super) fn substitute(text: &str, host: &str, port: u16) -> anyhow::Result<String> {
    let template = Template::parse(text)?;
    let none = SecretValues::default();
    let at = Context {
        host,
        port,
        secrets: &none,
    };
    Ok(template.expand(&at)?.as_str().to_owned())
}

/// Variables set for the command beyond the session's own (`PORTCULLIS_SESSION_ID`,
/// `PORTCULLIS_CONNECT_HOST`, `PORTCULLIS_CONNECT_PORT`). Values may be secret: `Debug`
/// shows the names only, and the values are wiped when dropped.
#[derive(Clone, Default)]
pub(super) struct ChildEnv(Vec<(String, Zeroizing<String>)>);

impl ChildEnv {
    pub(super) fn new(vars: Vec<(&'static str, String)>) -> Self {
        Self(
            vars.into_iter()
                .map(|(name, value)| (name.to_owned(), Zeroizing::new(value)))
                .collect(),
        )
    }

    /// Adds (or replaces) a variable.
    pub(super) fn set(&mut self, name: &str, value: Zeroizing<String>) {
        self.0.retain(|(n, _)| n != name);
        self.0.push((name.to_owned(), value));
    }

    /// The variables of `self`, then those of `other` (which win).
    pub(super) fn merged(&self, other: &ChildEnv) -> ChildEnv {
        let mut env = self.clone();
        for (name, value) in &other.0 {
            env.set(name, value.clone());
        }
        env
    }

    pub(super) fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }

    #[cfg(test)]
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.vars().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// `export NAME='VALUE'` lines, for a file a shell sources.
    pub(super) fn shell_exports(&self) -> String {
        self.vars()
            .map(|(name, value)| {
                let quoted =
                    shlex::try_quote(value).map_or_else(|_| "''".into(), |q| q.into_owned());
                format!("export {name}={quoted}\n")
            })
            .collect()
    }
}

impl fmt::Debug for ChildEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| name))
            .finish()
    }
}

/// What to run, with placeholders still in it.
#[derive(Debug, Clone)]
pub(super) struct ExecCommand {
    pub program: String,
    pub args: Vec<String>,
}

impl ExecCommand {
    /// The command with `{known_hosts}` replaced by the gateway's known_hosts file (with
    /// `--ssh-key`, in gateway mode).
    pub(super) fn with_known_hosts(self, path: &str) -> Self {
        Self {
            program: self.program.replace("{known_hosts}", path),
            args: self
                .args
                .iter()
                .map(|a| a.replace("{known_hosts}", path))
                .collect(),
        }
    }

    /// Refuses, before any session is opened, a command line with a placeholder that is
    /// unknown or names a secret: a command line is readable by every local user.
    pub(super) fn check(&self) -> anyhow::Result<()> {
        for text in std::iter::once(&self.program).chain(&self.args) {
            if Template::parse(text)?.uses_secrets() {
                anyhow::bail!(
                    "{{{{secret.*}}}} may not appear in the command or its arguments (every local \
                     user can read a command line: ps, /proc): pass the secret in the environment \
                     instead, e.g. --env PGPASSWORD={{{{secret.password}}}}"
                );
            }
        }
        Ok(())
    }

    /// The program and arguments with their placeholders filled in.
    pub(super) fn resolved(&self, host: &str, port: u16) -> anyhow::Result<(String, Vec<String>)> {
        Ok((
            substitute(&self.program, host, port)?,
            self.args
                .iter()
                .map(|a| substitute(a, host, port))
                .collect::<anyhow::Result<_>>()?,
        ))
    }
}

/// Runs the command with inherited stdio and returns its exit code (128 + N when killed by
/// signal N).
///
/// Ctrl-C reaches the command too (the terminal signals the whole foreground process
/// group), so the first SIGINT is left to it; a second one, SIGTERM or SIGHUP kill it.
pub(super) async fn run_command(
    command: &ExecCommand,
    port: u16,
    session_id: &str,
    env: &ChildEnv,
    signals: &mut Signals,
) -> anyhow::Result<i32> {
    let (program, args) = command.resolved(EXEC_HOST, port)?;
    let mut child = tokio::process::Command::new(&program)
        .args(&args)
        .env("PORTCULLIS_SESSION_ID", session_id)
        .env("PORTCULLIS_CONNECT_HOST", EXEC_HOST)
        .env("PORTCULLIS_CONNECT_PORT", port.to_string())
        .envs(env.vars())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run {program}"))?;
    let mut interrupts = 0;
    loop {
        tokio::select! {
            status = child.wait() => {
                let status = status.with_context(|| format!("cannot wait for {program}"))?;
                return Ok(exit_code(status));
            }
            caught = signals.recv() => {
                if caught == Caught::Interrupt && interrupts == 0 {
                    interrupts += 1;
                    continue;
                }
                eprintln!("{caught}: stopping {program}");
                let _ = child.start_kill();
            }
        }
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_substituted_everywhere() {
        let command = ExecCommand {
            program: "{host}-tool".into(),
            args: vec![
                "-p".into(),
                "{port}".into(),
                "user@{host}".into(),
                "https://{host}:{port}/{port}".into(),
                "{hostname}".into(),
                "plain".into(),
            ],
        };
        let (program, args) = command.resolved("127.0.0.1", 40022).unwrap();
        assert_eq!(program, "127.0.0.1-tool");
        assert_eq!(
            args,
            [
                "-p",
                "40022",
                "user@127.0.0.1",
                "https://127.0.0.1:40022/40022",
                "{hostname}",
                "plain"
            ]
        );
    }

    #[test]
    fn secrets_and_unknown_placeholders_are_refused_on_the_command_line() {
        let command = |args: &[&str]| ExecCommand {
            program: "psql".into(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        };
        assert!(command(&["-h", "{{host}}", "-p", "{{port}}"])
            .check()
            .is_ok());
        let err = command(&["postgres://u:{{secret.password}}@{{addr}}/db"])
            .check()
            .unwrap_err()
            .to_string();
        assert!(err.contains("--env PGPASSWORD="), "{err}");
        let err = command(&["{{prot}}"]).check().unwrap_err().to_string();
        assert!(err.contains("unknown placeholder"), "{err}");
        let (_, args) = command(&["{{addr}}", "{port}"])
            .resolved("127.0.0.1", 5)
            .unwrap();
        assert_eq!(args, ["127.0.0.1:5", "5"]);
    }

    #[test]
    fn the_known_hosts_placeholder_is_the_gateways_file() {
        let command = ExecCommand {
            program: "ssh".into(),
            args: vec![
                "-o".into(),
                "UserKnownHostsFile={known_hosts}".into(),
                "-p".into(),
                "{port}".into(),
            ],
        }
        .with_known_hosts("/tmp/p/known_hosts");
        let (_, args) = command.resolved("127.0.0.1", 2222).unwrap();
        assert_eq!(
            args,
            ["-o", "UserKnownHostsFile=/tmp/p/known_hosts", "-p", "2222"]
        );
    }

    #[tokio::test]
    async fn exit_code_is_the_commands() {
        let mut signals = Signals::install().unwrap();
        let command = ExecCommand {
            program: "sh".into(),
            args: vec![
                "-c".into(),
                "test \"$1\" = 9 && exit 7".into(),
                "sh".into(),
                "{port}".into(),
            ],
        };
        assert_eq!(
            run_command(&command, 9, "s_1", &ChildEnv::default(), &mut signals)
                .await
                .unwrap(),
            7
        );
        let command = ExecCommand {
            program: "sh".into(),
            args: vec!["-c".into(), "kill -9 $$".into()],
        };
        assert_eq!(
            run_command(&command, 9, "s_1", &ChildEnv::default(), &mut signals)
                .await
                .unwrap(),
            137
        );
        let missing = ExecCommand {
            program: "/nonexistent/portcullis-test".into(),
            args: vec![],
        };
        assert!(
            run_command(&missing, 9, "s_1", &ChildEnv::default(), &mut signals)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn the_child_gets_the_extra_environment() {
        let mut signals = Signals::install().unwrap();
        let env = ChildEnv::new(vec![("PORTCULLIS_TEST_VAR", "it's here".into())]);
        let command = ExecCommand {
            program: "sh".into(),
            args: vec![
                "-c".into(),
                "test \"$PORTCULLIS_TEST_VAR\" = \"it's here\"".into(),
            ],
        };
        assert_eq!(
            run_command(&command, 9, "s_1", &env, &mut signals)
                .await
                .unwrap(),
            0
        );
        assert!(
            !format!("{env:?}").contains("here"),
            "Debug shows names only"
        );
    }
}
