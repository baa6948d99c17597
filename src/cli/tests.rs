use clap::CommandFactory as _;

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
    fn walk(cmd: &clap::Command, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, clap::Command)>) {
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

/// The words: every leaf command's `--help` has at least one example that works
/// against `portcullis dev` (tests/help_examples.rs runs them).
#[test]
fn every_leaf_has_an_example_that_runs_on_dev() {
    use super::help_examples::{examples, Block};
    let mut missing = Vec::new();
    for (path, mut cmd) in leaves() {
        let help = cmd.render_long_help().to_string();
        let runnable = examples(&help)
            .iter()
            .any(|e| e.block == Block::Dev && e.is_portcullis());
        if !runnable {
            missing.push(path.join(" "));
        }
    }
    assert!(
        missing.is_empty(),
        "leaf commands without an `Examples:` line `portcullis ...` that runs on dev: {missing:?}"
    );
}

/// Every `portcullis ...` line of every examples block parses: its flags exist. The
/// `In a deployment:` ones cannot run here; this at least keeps them in step with the CLI.
#[test]
fn every_example_line_parses() {
    use super::help_examples::examples;
    let mut bad = Vec::new();
    for (path, mut cmd) in leaves() {
        let help = cmd.render_long_help().to_string();
        for example in examples(&help).iter().filter(|e| e.is_portcullis()) {
            let Some(words) = command_words(&example.line) else {
                continue;
            };
            if let Err(err) = Cli::try_parse_from(&words) {
                if !matches!(
                    err.kind(),
                    clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
                ) {
                    bad.push(format!("{}: `{}`: {err}", path.join(" "), example.line));
                }
            }
        }
    }
    assert!(bad.is_empty(), "examples that do not parse:\n{}", bad.join("\n"));
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
            matches!(w.as_str(), "|" | "||" | "&&" | ";" | "&" | ">" | ">>" | "2>" | "<")
                || w.starts_with('#')
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
