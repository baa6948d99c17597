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
