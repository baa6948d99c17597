//! Shell completion as a user gets it: `portcullis completions bash` sourced in a real bash,
//! completing `portcullis connect e` against `portcullis dev` offers `echo` (a name the
//! controller lists); with the controller gone it offers nothing, quickly and silently. The
//! zsh and fish scripts are made too (fish checks the syntax of its own when installed).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::dev::{bin, Dev};

fn script(shell: &str) -> String {
    let out = Command::new(bin())
        .args(["completions", shell])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// In `bash --norc`, with the bash script sourced from `dir`, completes `words` (the last
/// one being completed) as bash would on Tab, and prints COMPREPLY one per line.
fn complete_in_bash(dev: &Dev, dir: &Path, words: &[&str]) -> Output {
    let script_file = dir.join("portcullis.bash");
    std::fs::write(&script_file, script("bash")).unwrap();
    let bin_dir = Path::new(bin()).parent().unwrap();
    let cword = words.len() - 1;
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        ". {script}\n\
         COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}\n\
         _clap_complete_portcullis portcullis '{current}' '{previous}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script = script_file.display(),
        words = quoted.join(" "),
        line = words.join(" "),
        current = words[cword],
        previous = words[cword - 1],
    );
    let runtime = dir.join("run");
    std::fs::create_dir_all(&runtime).unwrap();
    Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("HOME", dir)
        .env("XDG_RUNTIME_DIR", &runtime)
        .env_remove("XDG_CONFIG_HOME")
        .envs(dev.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap()
}

fn offered(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completes_target_names_from_dev_and_nothing_when_it_is_gone() {
    let mut dev = Dev::start(&[]);
    let dir = tempfile::tempdir().unwrap();

    let out = complete_in_bash(&dev, dir.path(), &["portcullis", "connect", "e"]);
    assert_eq!(
        offered(&out),
        ["echo"],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Subcommands and flags come from the same tree.
    let out = complete_in_bash(&dev, dir.path(), &["portcullis", "tar"]);
    assert_eq!(offered(&out), ["targets"]);
    let out = complete_in_bash(&dev, dir.path(), &["portcullis", "targets", "show", ""]);
    assert!(offered(&out).contains(&"echo".to_owned()), "{out:?}");

    // The list is cached 0600 for a minute, in the runtime directory.
    let cache = dir.path().join("run/portcullis/completion-targets.json");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&cache).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    // The controller gone and the cache gone: no names, no error, no wait.
    dev.stop();
    std::fs::remove_file(&cache).unwrap();
    let started = Instant::now();
    let out = complete_in_bash(&dev, dir.path(), &["portcullis", "connect", "e"]);
    let took = started.elapsed();
    assert!(out.status.success());
    assert!(offered(&out).is_empty(), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn zsh_and_fish_scripts_are_made_and_fish_parses_its_own() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, file) in [
        ("zsh", "_portcullis"),
        ("fish", "portcullis.fish"),
        ("bash", "portcullis"),
    ] {
        let out = Command::new(bin())
            .args(["completions", shell, "--out-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(dir.path().join(file)).unwrap();
        assert!(text.contains("PORTCULLIS_COMPLETE"), "{shell}: {text}");
    }
    let bash = Command::new("bash")
        .arg("-n")
        .arg(dir.path().join("portcullis"))
        .status()
        .unwrap();
    assert!(bash.success());
    // fish is not installed for this alone; when it is there, it checks its script.
    if let Ok(fish) = Command::new("fish")
        .arg("-n")
        .arg(dir.path().join("portcullis.fish"))
        .status()
    {
        assert!(fish.success(), "fish -n refused the script");
    }
}
