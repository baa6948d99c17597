//! Every example `--help` shows works as printed against `portcullis dev`: the command tree
//! is walked through `--help` itself (so commands added later are checked too), the command
//! lines of each `Examples:` block (src/cli/help_examples.rs reads them) run in order with
//! `sh -c`, with dev.env's environment, in a scratch directory of the command's own (also
//! its HOME), and each must exit 0. A line ending in `# Ctrl-C ends it` runs until it prints
//! its first line, then gets SIGINT and must exit 0. `In a deployment:` lines are only parsed
//! (src/cli/tests.rs). Also: an expired dev token says how to get a new one.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

#[allow(dead_code)]
#[path = "../src/cli/help_examples.rs"]
mod help_examples;

use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::dev::{bin, Dev};
use common::wait::{poll, poll_within};
use help_examples::{examples, Block};

/// `portcullis PATH --help`.
fn help(path: &[String]) -> String {
    let out = Command::new(bin())
        .args(path)
        .arg("--help")
        .env("PORTCULLIS_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{path:?} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands a help text lists under `Commands:`, without `help`.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim_end() != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // A description's wrapped lines are indented further.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// Every command path with its help, parents before children, in the order `--help` lists.
fn tree() -> Vec<(Vec<String>, String)> {
    let mut out = Vec::new();
    let mut todo = vec![Vec::new()];
    while let Some(path) = todo.pop() {
        let text = help(&path);
        let subs = subcommands(&text);
        for sub in subs.iter().rev() {
            let mut child = path.clone();
            child.push(sub.clone());
            todo.push(child);
        }
        out.push((path, text));
    }
    out
}

/// `sh -c LINE` as a user who ran `. STATE/dev.env` in `dir` (also HOME), with this build's
/// `portcullis` first on PATH.
fn shell(dev: &Dev, dir: &Path, line: &str) -> Command {
    let bin_dir = Path::new(bin()).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let runtime = dir.join(".run");
    std::fs::create_dir_all(&runtime).unwrap();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(line)
        .current_dir(dir)
        .env_remove("XDG_CONFIG_HOME")
        .env("HOME", dir)
        .env("XDG_RUNTIME_DIR", &runtime)
        .env("PATH", path)
        .env("PORTCULLIS_LOG", "warn")
        .envs(dev.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null());
    cmd
}

/// Runs an example that should finish by itself, for at most a minute: one that is still
/// running then is killed (with its process group) and reported, so a long-running example
/// not marked `# Ctrl-C ends it` fails the test instead of hanging it.
fn run_to_end(dev: &Dev, dir: &Path, line: &str) -> Result<(), String> {
    let mut child = shell(dev, dir, line)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let status = match poll_within(Duration::from_secs(60), || {
        child.try_wait().unwrap().ok_or(())
    }) {
        Ok(status) => Some(status),
        Err(()) => {
            let _ = Command::new("kill")
                .args(["-KILL", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            None
        }
    };
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    match status {
        Some(status) if status.success() => Ok(()),
        Some(status) => Err(format!(
            "exit {:?}\nstdout: {out}\nstderr: {err}",
            status.code()
        )),
        None => Err(format!(
            "still running after 60 s (a long-running example must end with `# Ctrl-C ends \
             it`)\nstdout: {out}\nstderr: {err}"
        )),
    }
}

/// Runs one example line; `Err` says what went wrong.
fn run(dev: &Dev, dir: &Path, line: &str, long_running: bool) -> Result<(), String> {
    if !long_running {
        return run_to_end(dev, dir, line);
    }
    // `exec`: the signal reaches the command itself, not a shell waiting for it.
    let mut child = shell(dev, dir, &format!("exec {line}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    // Ready once it printed its first line on stdout (the listening line, dev's readiness
    // line); what it says on stderr is kept for the failure message.
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let stderr = child.stderr.take().unwrap();
    let said = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let first = rx.recv_timeout(Duration::from_secs(60));
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = poll(
        "the example to exit after SIGINT",
        Duration::from_secs(30),
        || {
            child
                .try_wait()
                .map_err(|e| e.to_string())?
                .ok_or_else(|| "running".to_owned())
        },
    );
    let said = said.join().unwrap_or_default();
    // Ctrl-C is a clean end: 0, or 130 as `connect` documents (docs/cli.md).
    let clean = matches!(status.code(), Some(0 | 130));
    match first {
        Ok(_) if clean => Ok(()),
        Ok(first) => Err(format!("after SIGINT: {status}; it said: {first}\n{said}")),
        Err(_) => Err(format!(
            "no line on stdout within 60 s; then {status}: {said}"
        )),
    }
}

#[test]
fn every_help_example_works_against_dev() {
    let dev = Dev::start(&[]);
    let scratch = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut ran = 0;
    let mut failed = Vec::new();
    for (path, text) in tree() {
        let lines: Vec<_> = examples(&text)
            .into_iter()
            .filter(|e| e.block == Block::Dev)
            .collect();
        if lines.is_empty() {
            continue;
        }
        // Each command's examples share a directory of their own, in order: a line may use
        // a file an earlier one made.
        let dir = scratch.path().join(if path.is_empty() {
            "portcullis".to_owned()
        } else {
            path.join("-")
        });
        std::fs::create_dir_all(&dir).unwrap();
        for example in lines {
            ran += 1;
            if let Err(why) = run(&dev, &dir, &example.line, example.long_running()) {
                failed.push(format!("`{}` ({}): {why}", example.line, path.join(" ")));
            }
        }
    }
    eprintln!("ran {ran} examples in {:?}", started.elapsed());
    assert!(ran > 30, "only {ran} examples found");
    assert!(
        failed.is_empty(),
        "{} examples failed:\n{}",
        failed.len(),
        failed.join("\n\n")
    );
}

/// dev.env marks its token as dev's; once the token has expired, the CLI says how to get a
/// new one. The token lives 2 s here (`api.token_lifetime` in a --config file).
#[test]
fn an_expired_dev_token_says_to_restart_dev_and_source_its_env_again() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("short.toml");
    std::fs::write(&config, "[api]\ntoken_lifetime = \"2s\"\n").unwrap();
    let dev = Dev::start(&["--config", config.to_str().unwrap()]);
    let state = std::fs::canonicalize(&dev.state_dir).unwrap();
    assert_eq!(dev.var("PORTCULLIS_DEV_STATE"), state.display().to_string());
    let stderr = poll("the dev token to expire", Duration::from_secs(30), || {
        let out = dev.cli().arg("whoami").output().unwrap();
        if out.status.success() {
            Err("still valid".to_owned())
        } else {
            Ok(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    });
    assert!(stderr.contains("not authenticated"), "{stderr}");
    let restart = format!("portcullis dev --state-dir {}", state.display());
    assert!(stderr.contains(&restart), "{stderr}");
    let source = format!(". {}/dev.env", state.display());
    assert!(stderr.contains(&source), "{stderr}");
}
