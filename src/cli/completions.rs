//! `portcullis completions bash|zsh|fish`: the shell's completion script, and the completion
//! engine it calls back into. The script is clap_complete's dynamic one: at each Tab the shell
//! runs `PORTCULLIS_COMPLETE=SHELL portcullis -- WORDS...`, which [`complete_from_env`]
//! answers from the same clap tree the parser uses, so subcommands, flags and values never
//! drift from the binary installed. TARGET arguments are completed with the names of the
//! targets the controller lets the user see ([`targets`]).

mod targets;

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::engine::ArgValueCandidates;

use super::Cli;

/// The environment variable that turns the binary into its own completion engine.
pub(crate) const VAR: &str = "PORTCULLIS_COMPLETE";

const EXAMPLES: &str = "\
Examples:
  portcullis completions bash > portcullis.bash
  portcullis completions zsh --out-dir completions     # writes completions/_portcullis
  portcullis completions fish --out-dir completions    # writes completions/portcullis.fish

In your shell's startup file (the packages install the scripts system-wide):
  # ~/.bashrc
  source <(portcullis completions bash)
  # ~/.zshrc
  source <(portcullis completions zsh)
  # ~/.config/fish/config.fish
  portcullis completions fish | source

The script runs `portcullis` (from PATH) at each Tab. Target names come from the controller
(`portcullis targets list`, with the same PORTCULLIS_ADDR/CA/TOKEN or login files), asked at
most once a minute (cached 0600 in $XDG_RUNTIME_DIR/portcullis/, else ~/.cache/portcullis/);
with no controller in reach the names are simply not offered.";

/// Print the shell completion script.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub(crate) struct CompletionsArgs {
    /// The shell the script is for.
    #[arg(value_enum)]
    pub shell: Shell,
    /// Write the script into DIR under the name the shell looks for (portcullis,
    /// _portcullis or portcullis.fish) instead of printing it.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Shell {
    Bash,
    Zsh,
    Fish,
}

impl Shell {
    fn completer(self) -> &'static dyn clap_complete::env::EnvCompleter {
        match self {
            Shell::Bash => &clap_complete::env::Bash,
            Shell::Zsh => &clap_complete::env::Zsh,
            Shell::Fish => &clap_complete::env::Fish,
        }
    }

    /// The file name the shell's completion directory expects.
    pub(crate) fn file_name(self) -> &'static str {
        match self {
            Shell::Bash => "portcullis",
            Shell::Zsh => "_portcullis",
            Shell::Fish => "portcullis.fish",
        }
    }
}

/// The completion script for `shell`: it calls `portcullis` from PATH.
pub(crate) fn script(shell: Shell) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    shell
        .completer()
        .write_registration(VAR, "portcullis", "portcullis", "portcullis", &mut out)
        .context("cannot write the completion script")?;
    Ok(out)
}

pub(crate) fn run(args: &CompletionsArgs) -> anyhow::Result<i32> {
    let script = script(args.shell)?;
    match &args.out_dir {
        None => std::io::stdout()
            .write_all(&script)
            .context("cannot write the script to stdout")?,
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let path = dir.join(args.shell.file_name());
            std::fs::write(&path, &script)
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!("{}", path.display());
        }
    }
    Ok(0)
}

/// When the shell's script called (`PORTCULLIS_COMPLETE` set), prints the completions of the
/// words after `--` and exits; otherwise returns and the command line is parsed as usual.
pub(crate) fn complete_from_env() {
    clap_complete::CompleteEnv::with_factory(command)
        .var(VAR)
        .bin("portcullis")
        .complete();
}

/// The clap tree with target-name completion on every argument that names a target: any
/// positional with the id `target` (`connect`, `connect ssh`, ...) and the ID_OR_NAME of
/// `targets show|update|delete`. (`audit list --target` takes an id: not completed.)
pub(crate) fn command() -> clap::Command {
    with_target_completion(Cli::command(), false)
}

fn with_target_completion(cmd: clap::Command, under_targets: bool) -> clap::Command {
    // `mut_args` and `mut_subcommands` keep the order (`mut_arg` would move the argument
    // last, and with it a positional's index).
    let here_targets = cmd.get_name() == "targets";
    cmd.mut_args(|arg| {
        if arg.is_positional() && names_a_target(arg.get_id().as_str(), under_targets) {
            arg.add(ArgValueCandidates::new(targets::candidates))
        } else {
            arg
        }
    })
    .mut_subcommands(|sub| with_target_completion(sub, here_targets))
}

/// Whether the argument `id` holds a target's name.
fn names_a_target(id: &str, under_targets: bool) -> bool {
    id == "target" || (under_targets && id == "id_or_name")
}

#[cfg(test)]
mod tests;
