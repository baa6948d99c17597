//! `portcullis man --out-dir DIR`: the manual pages, one per command (portcullis.1,
//! portcullis-connect.1, portcullis-connect-ssh.1, ...), made from the clap tree with
//! clap_mangen, so they say what `--help` says. The packages install them, gzipped, in
//! /usr/share/man/man1 (scripts/package-assets).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::CommandFactory as _;

use super::Cli;

/// Write the manual pages, one per command.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  portcullis man --out-dir man
  portcullis man --out-dir man | wc -l        # the pages written, one path a line

Read one in place with `man -l man/portcullis-connect.1`.
Hidden commands get no page. The client-only build writes the pages of the commands it has.")]
pub(crate) struct ManArgs {
    /// The directory to write NAME.1 files into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
}

pub(crate) fn run(args: &ManArgs) -> anyhow::Result<i32> {
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    for path in write_pages(&args.out_dir)? {
        println!("{}", path.display());
    }
    Ok(0)
}

/// Writes one page per visible command into `dir`; their paths.
pub(crate) fn write_pages(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    // Gives each subcommand its display name, `portcullis-connect-ssh`: the page's name.
    cmd.build();
    let mut written = Vec::new();
    write_tree(cmd, dir, &mut written)?;
    Ok(written)
}

fn write_tree(cmd: clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_tree(sub.clone(), dir, written)?;
    }
    let page = clap_mangen::Man::new(cmd);
    let path = page
        .generate_to(dir)
        .with_context(|| format!("cannot write {}", dir.join(page.get_filename()).display()))?;
    written.push(path);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_visible_command_gets_a_page_named_for_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let pages = write_pages(dir.path()).unwrap();
        let names: Vec<String> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for name in [
            "portcullis.1",
            "portcullis-connect.1",
            "portcullis-connect-ssh.1",
        ] {
            assert!(names.iter().any(|n| n == name), "{name}: {names:?}");
        }
        // `ssh-prepare` is hidden: no page.
        assert!(
            !names.iter().any(|n| n.contains("ssh-prepare")),
            "{names:?}"
        );
        let connect = std::fs::read_to_string(dir.path().join("portcullis-connect.1")).unwrap();
        assert!(
            connect.starts_with(".ie") || connect.contains(".TH"),
            "{connect}"
        );
        assert!(connect.contains("listen\\-port"), "{connect}");
    }
}
