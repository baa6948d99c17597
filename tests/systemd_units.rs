//! The systemd units in dist/systemd/ are valid (`systemd-analyze verify`) and hardened
//! (`systemd-analyze security` rates each 3.0 or less); docs/deploy.md argues each exposure
//! that remains. Needs systemd-analyze (Debian's `systemd` package; scripts/test installs it).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const UNITS: [&str; 2] = ["portcullis-controller.service", "portcullis-worker.service"];
/// Where the units expect the binary (the .deb puts it there).
const INSTALLED_BINARY: &str = "/usr/bin/portcullis";
/// The highest exposure the issue allows.
const MAX_EXPOSURE: f64 = 3.0;

fn unit_text(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("dist/systemd")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The unit `name`, copied into `dir` with ExecStart pointing at the binary under test:
/// `verify` refuses a unit whose binary does not exist, and none is installed here.
fn unit_for_test(dir: &Path, name: &str) -> PathBuf {
    let text = unit_text(name);
    assert!(
        text.contains(&format!("ExecStart={INSTALLED_BINARY} ")),
        "{name} runs {INSTALLED_BINARY}"
    );
    let path = dir.join(name);
    let built = env!("CARGO_BIN_EXE_portcullis");
    std::fs::write(
        &path,
        text.replace(
            &format!("ExecStart={INSTALLED_BINARY} "),
            &format!("ExecStart={built} "),
        ),
    )
    .unwrap();
    path
}

fn systemd_analyze(dir: &Path, args: &[&str]) -> Output {
    Command::new("systemd-analyze")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run systemd-analyze ({e}): install it with `apt-get install systemd` \
                 (scripts/test does)"
            )
        })
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[test]
fn the_units_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    for name in UNITS {
        let unit = unit_for_test(dir.path(), name);
        let out = systemd_analyze(dir.path(), &["verify", unit.to_str().unwrap()]);
        let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "{name}: {said}");
        // Warnings (an unknown key, a bad value) leave the exit status 0: none may name the
        // unit. Lines about the host's own units are not ours to judge.
        assert!(!said.contains("portcullis"), "{name}: {said}");
    }
}

#[test]
fn the_units_are_exposed_three_or_less() {
    let dir = tempfile::tempdir().unwrap();
    for name in UNITS {
        let unit = unit_for_test(dir.path(), name);
        // The issue's `--threshold=3.0`: systemd 252 (Debian 12) takes the threshold as a
        // whole number of tenths and refuses "3.0", so 30; the exit status is non-zero when
        // the exposure is above it. The printed level is checked too, whatever the version.
        let out = systemd_analyze(
            dir.path(),
            &[
                "security",
                "--offline=true",
                "--threshold=30",
                "--no-pager",
                unit.to_str().unwrap(),
            ],
        );
        let said = text(&out.stdout);
        assert!(out.status.success(), "{name}: {said}{}", text(&out.stderr));
        let level = overall_exposure(&said).unwrap_or_else(|| panic!("{name}: {said}"));
        assert!(level <= MAX_EXPOSURE, "{name} is exposed {level}: {said}");
    }
}

/// `→ Overall exposure level for NAME: 1.1 OK 🙂` → 1.1.
fn overall_exposure(report: &str) -> Option<f64> {
    let line = report
        .lines()
        .find(|l| l.contains("Overall exposure level for"))?;
    let (_, rest) = line.rsplit_once(": ")?;
    rest.split_whitespace().next()?.parse().ok()
}

#[test]
fn the_units_run_the_daemons_as_dedicated_users_and_reload_the_controller_on_hangup() {
    let controller = unit_text(UNITS[0]);
    let worker = unit_text(UNITS[1]);
    for (text, user, command) in [
        (&controller, "portcullis", "controller run --config "),
        (&worker, "portcullis-worker", "worker run --config "),
    ] {
        for line in [
            format!("User={user}\n"),
            format!("ExecStart={INSTALLED_BINARY} {command}"),
            "Type=notify\n".into(),
            "WatchdogSec=30s\n".into(),
            "CapabilityBoundingSet=\n".into(),
            "ProtectSystem=strict\n".into(),
            "NoNewPrivileges=yes\n".into(),
            "UMask=0077\n".into(),
        ] {
            assert!(text.contains(&line), "{line:?} missing from:\n{text}");
        }
    }
    assert!(controller.contains("ExecReload=/bin/kill -HUP $MAINPID\n"));
    // The worker has no SIGHUP handler: a reload would kill it.
    assert!(!worker.contains("ExecReload="));
}

#[test]
fn the_exposure_is_read_from_the_report() {
    let report = "  NAME  DESCRIPTION  EXPOSURE\n✗ PrivateNetwork= ... 0.5\n\n\
                  → Overall exposure level for portcullis-worker.service: 1.1 OK 🙂\n";
    assert_eq!(overall_exposure(report), Some(1.1));
    assert_eq!(overall_exposure("no summary"), None);
}
