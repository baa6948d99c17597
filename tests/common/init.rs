//! `portcullis controller init` on a fresh directory: the first start of a controller without
//! an OpenID provider. [`init_controller`] gives a test the bootstrap credential of a
//! controller it then starts with [`super::cluster::Controller::start_on`] (same directory,
//! same store: it reuses the master key `init` made).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::dev::bin;

/// A controller config in `dir` (`controller.toml`) on the store at `url`, naming the master
/// key `dir/master.key` (which need not exist), with `extra` lines appended.
pub(crate) fn write_config(dir: &Path, url: &str, extra: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("controller.toml");
    std::fs::write(
        &path,
        format!(
            "[store]\nurl = \"{url}\"\n[keys]\nmaster_key_file = \"{}\"\n\
             [api]\nlisten = \"127.0.0.1:0\"\n[cluster]\nlisten = \"127.0.0.1:0\"\n{extra}",
            dir.join("master.key").display()
        ),
    )
    .unwrap();
    path
}

/// `portcullis controller init --config CONFIG ARGS`, with `PORTCULLIS_LOG` at `log`.
pub(crate) fn run_init(config: &Path, args: &[&str], log: &str) -> Output {
    Command::new(bin())
        .args(["controller", "init", "--config"])
        .arg(config)
        .args(args)
        .env("PORTCULLIS_LOG", log)
        .env_remove("PORTCULLIS_MASTER_KEY")
        .output()
        .unwrap()
}

/// Initialises a controller in `dir` on the store at `url` (the first admin `admin` in
/// `admins`) and returns its bootstrap credential.
pub(crate) fn init_controller(dir: &Path, url: &str) -> String {
    let config = write_config(dir, url, "");
    let out = run_init(&config, &[], "warn");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
