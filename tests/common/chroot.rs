//! A Debian 12 (bookworm) chroot to install packages into with dpkg, never on the host.
//!
//! A minbase debootstrap (plus what the packages under test depend on) is made once per
//! machine and cached as a tarball under `~/.cache/portcullis-test/`; each test unpacks a
//! fresh copy into a temporary directory, deleted when the [`Chroot`] drops. Nothing is
//! mounted into it: dpkg, adduser and the packages' maintainer scripts need neither `/proc`
//! nor `/sys`, so there is no mount to leak when a test panics. Needs root (debootstrap,
//! chroot, files owned by the chroot's accounts) and debootstrap (scripts/test installs it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

const SUITE: &str = "bookworm";
/// The mirror debootstrap downloads from; `PORTCULLIS_TEST_DEBIAN_MIRROR` names another
/// (a local mirror or caching proxy).
const MIRROR: &str = "http://deb.debian.org/debian";
/// Beyond minbase (the `required` packages and apt): what the packages under test depend on,
/// so that `dpkg -i` finds their dependencies installed.
const INCLUDE: &str = "adduser";
/// The PATH inside the chroot.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Fails the test, saying why, unless it runs as root.
pub(crate) fn require_root(test: &str) {
    assert!(
        rustix::process::geteuid().is_root(),
        "{test} needs root: it runs debootstrap, chroot and dpkg (scripts/test runs as root)"
    );
}

/// A fresh Debian chroot in a temporary directory.
pub(crate) struct Chroot {
    dir: tempfile::TempDir,
}

impl Chroot {
    /// Unpacks the cached base system (making it first if this machine has none) and forbids
    /// services to start inside it (`policy-rc.d` exits 101).
    pub(crate) fn new() -> Chroot {
        let tarball = base_tarball();
        let dir = tempfile::Builder::new()
            .prefix("portcullis-chroot.")
            .tempdir()
            .unwrap();
        run(
            Command::new("tar")
                .arg("-C")
                .arg(dir.path())
                .args(["-xpf"])
                .arg(&tarball)
                .arg("--numeric-owner"),
            "unpacking the cached chroot",
        );
        let chroot = Chroot { dir };
        let policy = chroot.host_path("/usr/sbin/policy-rc.d");
        std::fs::write(
            &policy,
            "#!/bin/sh\n# No service starts inside a test chroot.\nexit 101\n",
        )
        .unwrap();
        set_mode(&policy, 0o755);
        chroot
    }

    /// Where `inside` (an absolute path in the chroot) is on the host. Only for paths whose
    /// directories are not symbolic links to absolute targets (the chroot's `/lib` and `/bin`
    /// point into `usr` relatively, so they resolve inside it).
    pub(crate) fn host_path(&self, inside: &str) -> PathBuf {
        self.dir.path().join(inside.trim_start_matches('/'))
    }

    /// Copies `file` into the chroot's `/tmp` and returns its path inside.
    pub(crate) fn copy_in(&self, file: &Path) -> String {
        let name = file.file_name().unwrap().to_str().unwrap();
        let inside = format!("/tmp/{name}");
        std::fs::copy(file, self.host_path(&inside)).unwrap();
        inside
    }

    /// Runs `args` inside the chroot with a clean environment.
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        Command::new("chroot")
            .arg(self.dir.path())
            .args(args)
            .env_clear()
            .env("PATH", PATH)
            .env("LC_ALL", "C")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .unwrap_or_else(|e| panic!("cannot run chroot: {e}"))
    }

    /// Runs `args` inside the chroot and returns its standard output; fails the test, with
    /// both outputs, when the command fails.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "`{}` failed in the chroot ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `args` inside the chroot, expecting it to fail; returns its standard error.
    pub(crate) fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "`{}` succeeded in the chroot, but should have failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    /// `MODE OWNER GROUP` of `path` inside the chroot, names from the chroot's own accounts
    /// (e.g. `751 root portcullis`).
    pub(crate) fn stat(&self, path: &str) -> String {
        self.ok(&["stat", "-c", "%a %U %G", path]).trim().to_owned()
    }

    /// True when `path` exists inside the chroot (a dangling link does not).
    pub(crate) fn exists(&self, path: &str) -> bool {
        self.run(&["test", "-e", path]).status.success()
    }
}

/// The cached tarball of the base system, made on first use on this machine (about a minute
/// and 50 MB of downloads; timed on stderr), then shared by every test.
fn base_tarball() -> PathBuf {
    static MAKING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = MAKING.lock().unwrap_or_else(PoisonError::into_inner);
    let cache = cache_dir();
    let tarball = cache.join(format!("debian-{SUITE}-minbase-{INCLUDE}.tar"));
    if tarball.exists() {
        return tarball;
    }
    std::fs::create_dir_all(&cache).unwrap();
    // Made beside its final place and renamed into it whole: a run stopped halfway leaves
    // no tarball, so the next one makes it again.
    let work = tempfile::tempdir_in(&cache).unwrap();
    let root = work.path().join("root");
    let mirror = std::env::var("PORTCULLIS_TEST_DEBIAN_MIRROR").unwrap_or_else(|_| MIRROR.into());
    let started = Instant::now();
    let debootstrap = Command::new("debootstrap")
        .args(["--variant=minbase", &format!("--include={INCLUDE}"), SUITE])
        .arg(&root)
        .arg(&mirror)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run debootstrap ({e}): install it with `apt-get install debootstrap` \
                 (scripts/test does)"
            )
        });
    assert!(
        debootstrap.status.success(),
        "debootstrap of {SUITE} from {mirror} failed:\n{}{}",
        String::from_utf8_lossy(&debootstrap.stdout),
        String::from_utf8_lossy(&debootstrap.stderr)
    );
    let partial = work.path().join("base.tar");
    run(
        Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&partial)
            .arg("."),
        "packing the chroot",
    );
    std::fs::rename(&partial, &tarball).unwrap();
    // Straight to stderr, past the test harness's capture: the one-time cost must be seen.
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "made the {SUITE} chroot cache {} in {:.0?}",
        tarball.display(),
        started.elapsed()
    );
    tarball
}

fn cache_dir() -> PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".cache/portcullis-test")
}

fn run(command: &mut Command, what: &str) {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
