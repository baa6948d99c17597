use clap::{CommandFactory as _, Parser as _};

use super::Cli;

fn subcommands() -> Vec<String> {
    Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .collect()
}

fn long_help() -> String {
    Cli::command().render_long_help().to_string()
}

#[cfg(feature = "server")]
#[test]
fn the_full_build_runs_the_daemons() {
    let names = subcommands();
    for daemon in ["controller", "worker", "dev"] {
        assert!(names.iter().any(|n| n == daemon), "{daemon}: {names:?}");
    }
    assert!(long_help().contains("portcullis dev"));
}

/// `cargo test --no-default-features -p portcullis --bin portcullis`.
#[cfg(not(feature = "server"))]
#[test]
fn the_client_build_has_no_daemon_and_says_so() {
    let names = subcommands();
    for daemon in ["controller", "worker", "dev"] {
        assert!(!names.iter().any(|n| n == daemon), "{daemon}: {names:?}");
    }
    let help = long_help();
    assert!(help.contains("client-only build"), "{help}");
    assert!(help.contains("portcullis login"), "{help}");
    assert!(!help.contains("portcullis dev"), "{help}");
}

#[test]
fn both_builds_keep_the_client_commands() {
    let names = subcommands();
    for client in ["login", "targets", "connect", "ssh-config", "audit"] {
        assert!(names.iter().any(|n| n == client), "{client}: {names:?}");
    }
}

/// Every command a user runs: those without subcommands, and those runnable with or without
/// one (`connect`), by path (`["targets", "list"]`). Hidden ones and `help` are not shown.
pub(super) fn leaves() -> Vec<(Vec<String>, clap::Command)> {
    fn walk(
        cmd: &clap::Command,
        path: &mut Vec<String>,
        out: &mut Vec<(Vec<String>, clap::Command)>,
    ) {
        for sub in cmd.get_subcommands() {
            if sub.is_hide_set() || sub.get_name() == "help" {
                continue;
            }
            path.push(sub.get_name().to_owned());
            if !sub.is_subcommand_required_set() || !sub.has_subcommands() {
                out.push((path.clone(), sub.clone()));
            }
            walk(sub, path, out);
            path.pop();
        }
    }
    let mut cmd = Cli::command();
    cmd.build();
    let mut out = Vec::new();
    walk(&cmd, &mut Vec::new(), &mut out);
    out
}

/// The leaf commands `portcullis dev` cannot serve at all, and why: they show only
/// `In a deployment:` examples.
const NO_DEV_EXAMPLE: &[(&str, &str)] = &[
    (
        "worker run",
        "a second worker needs dev's cluster address and a config of its own",
    ),
    (
        "workers delete",
        "dev's only worker would take its sessions with it",
    ),
    ("catalog sync", "dev has no Proxmox cluster"),
    (
        "connect postgres",
        "dev has no Vault: leased database credentials need one (docs/secrets.md)",
    ),
    (
        "sessions play",
        "recordings come from the SSH gateway: dev has no SSH target",
    ),
    (
        "sessions export",
        "recordings come from the SSH gateway: dev has no SSH target",
    ),
    (
        "sessions watch",
        "recordings come from the SSH gateway: dev has no SSH target",
    ),
    (
        "recordings verify",
        "a bundle needs a recording: dev has none",
    ),
    (
        "connect ssh",
        "dev's only target is a TCP echo service, no SSH server",
    ),
    (
        "request approve",
        "the approver must be another user than the requester, logged in with MFA",
    ),
    (
        "request deny",
        "the approver must be another user than the requester, logged in with MFA",
    ),
];

/// The words: every leaf command's `--help` has at least one example that works
/// against `portcullis dev` (tests/help_examples.rs runs them); the few dev cannot serve
/// ([`NO_DEV_EXAMPLE`]) have `In a deployment:` ones.
#[test]
fn every_leaf_has_an_example_that_runs_on_dev() {
    use super::help_examples::{examples, Block};
    let mut missing = Vec::new();
    for (path, mut cmd) in leaves() {
        let name = path.join(" ");
        let found = examples(&cmd.render_long_help().to_string());
        let wanted = if NO_DEV_EXAMPLE.iter().any(|(leaf, _)| *leaf == name) {
            Block::Deployment
        } else {
            Block::Dev
        };
        if !found.iter().any(|e| e.block == wanted && e.is_portcullis()) {
            missing.push(format!("{name} (no {wanted:?} example)"));
        }
    }
    assert!(
        missing.is_empty(),
        "leaf commands without a `portcullis ...` line in `Examples:` (or, for those dev \
         cannot serve, `In a deployment:`): {missing:?}"
    );
}

/// Every `portcullis ...` line of the `In a deployment:` blocks parses: its flags exist.
/// They cannot run here; this at least keeps them in step with the CLI. (The `Examples:`
/// lines run against dev in tests/help_examples.rs.)
#[test]
fn every_deployment_example_parses() {
    use super::help_examples::{examples, Block};
    let mut bad = Vec::new();
    let mut parsed = 0;
    for (path, mut cmd) in leaves() {
        let help = cmd.render_long_help().to_string();
        for example in examples(&help)
            .iter()
            .filter(|e| e.block == Block::Deployment && e.is_portcullis())
        {
            let Some(words) = command_words(&example.line) else {
                continue;
            };
            parsed += 1;
            if let Err(err) = Cli::try_parse_from(&words) {
                bad.push(format!("{}: `{}`: {err}", path.join(" "), example.line));
            }
        }
    }
    assert!(parsed > 20, "only {parsed} deployment examples parsed");
    assert!(
        bad.is_empty(),
        "examples that do not parse:\n{}",
        bad.join("\n")
    );
}

/// The words of the `portcullis` command at the start of a shell line, up to the first
/// pipe, redirection, `&&`, `;`, `&` or comment; `None` when it uses a substitution or a
/// variable, which only a shell can expand.
fn command_words(line: &str) -> Option<Vec<String>> {
    if line.contains("$(") || line.contains('`') || line.contains('$') {
        return None;
    }
    let words = shlex::split(line)?;
    let end = words
        .iter()
        .position(|w| {
            matches!(
                w.as_str(),
                "|" | "||" | "&&" | ";" | "&" | ">" | ">>" | "2>" | "<"
            ) || w.starts_with('#')
                || w.starts_with('>')
        })
        .unwrap_or(words.len());
    Some(words[..end].to_vec())
}

#[test]
fn command_words_stop_at_the_shell() {
    assert_eq!(
        command_words("portcullis targets list --json | jq -r .").unwrap(),
        ["portcullis", "targets", "list", "--json"]
    );
    assert_eq!(
        command_words("portcullis man --out-dir m  # note").unwrap(),
        ["portcullis", "man", "--out-dir", "m"]
    );
    assert!(command_words("portcullis connect \"$T\" --stdio").is_none());
}
