//! The Debian packages (`cargo deb`, `cargo deb --variant client`; docs/deploy.md,
//! "Packages") installed, upgraded, removed and purged with dpkg in a Debian 12 chroot, never
//! on the host: their files, modes and owners, the accounts, the units in place and not
//! enabled, nothing started, and the client package's binary without the daemons.
//!
//! The packages are made from the debug binaries (a release build is too slow for a test):
//! the suite's own full binary, and a client-only build in a target directory of its own.
//! cargo-deb packs them with its `--no-build`, as `cargo deb` packs a release binary. Needs
//! root, debootstrap and cargo-deb (scripts/test installs both); the chroot's base system is
//! downloaded once per machine (tests/common/chroot.rs).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::chroot::{require_root, Chroot};

const UNITS: [&str; 2] = ["portcullis-controller.service", "portcullis-worker.service"];
const EXAMPLES: [&str; 3] = ["controller.toml", "worker.toml", "policy.toml"];
/// What scripts/test installs; named in the failure when cargo-deb is missing.
const CARGO_DEB: &str = "cargo install cargo-deb --version 3.8.0 --locked";

/// The two packages, made once per test process.
struct Packages {
    server: PathBuf,
    client: PathBuf,
    _dir: tempfile::TempDir,
}

fn packages() -> &'static Packages {
    static PACKAGES: OnceLock<Packages> = OnceLock::new();
    PACKAGES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let server = package(
            dir.path(),
            None,
            Path::new(env!("CARGO_BIN_EXE_portcullis")),
        );
        let client = package(dir.path(), Some("client"), &client_binary());
        Packages {
            server,
            client,
            _dir: dir,
        }
    })
}

/// A fresh chroot and the packages, made side by side: on a machine's first run the chroot's
/// download overlaps the client-only build.
fn chroot_and_packages() -> (Chroot, &'static Packages) {
    let chroot = std::thread::spawn(Chroot::new);
    let packages = packages();
    let chroot = chroot
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    (chroot, packages)
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// The client-only binary (`--no-default-features`), built in a target directory of its own
/// so that it does not replace the suite's full binary (`.ci/run` builds it there first: then
/// this finds it up to date).
fn client_binary() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("client-only-build");
    let out = cargo()
        .args(["build", "--no-default-features", "--bin", "portcullis"])
        .args(["--locked", "--offline", "--quiet"])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the client-only build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    target.join("debug/portcullis")
}

/// The .deb of `variant` (None: the server package) around `binary`: cargo-deb takes
/// binaries from `$CARGO_TARGET_DIR/release`, so `binary` is staged there and packed with
/// `--no-build` (gzip at its fastest: the test's time goes to compressing otherwise).
fn package(out_dir: &Path, variant: Option<&str>, binary: &Path) -> PathBuf {
    let version = cargo().args(["deb", "--version"]).output();
    assert!(
        version.is_ok_and(|v| v.status.success()),
        "cargo-deb is missing: `{CARGO_DEB}` (scripts/test does)"
    );
    let stage = out_dir.join(format!("target-{}", variant.unwrap_or("server")));
    std::fs::create_dir_all(stage.join("release")).unwrap();
    std::fs::copy(binary, stage.join("release/portcullis")).unwrap();
    // The completions and man pages, made by the binary packed (scripts/package-assets), where
    // the assets of Cargo.toml look for them.
    let assets = stage.join(match variant {
        Some(_) => "release/assets-client",
        None => "release/assets",
    });
    let made = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/package-assets"))
        .arg(stage.join("release/portcullis"))
        .arg(&assets)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "scripts/package-assets failed: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let mut deb = cargo();
    deb.args([
        "deb",
        "--no-build",
        "--no-strip",
        "--fast",
        "-Z",
        "gz",
        "--compress-system",
    ])
    .arg("--output")
    .arg(format!("{}/", out_dir.display()))
    .env("CARGO_TARGET_DIR", &stage)
    .env("CARGO_NET_OFFLINE", "true")
    .current_dir(env!("CARGO_MANIFEST_DIR"));
    if let Some(variant) = variant {
        deb.args(["--variant", variant]);
    }
    let out = deb.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cargo deb failed: {stderr}");
    // cargo-deb prints the path of the package it wrote, last.
    let stdout = String::from_utf8(out.stdout).unwrap();
    let path = PathBuf::from(stdout.lines().last().unwrap().trim());
    assert!(
        path.is_file(),
        "cargo deb wrote no package: {stdout}{stderr}"
    );
    path
}

/// The shell completions and man pages a package installs (scripts/package-assets).
const COMPLETIONS: [&str; 3] = [
    "/usr/share/bash-completion/completions/portcullis",
    "/usr/share/zsh/vendor-completions/_portcullis",
    "/usr/share/fish/vendor_completions.d/portcullis.fish",
];

/// `package` (installed in the chroot from `deb`) ships the completion scripts and a gzipped
/// man page per command: in the .deb, in `dpkg -L`, and readable as roff. `daemons`: whether
/// the controller's pages are among them.
fn assert_completions_and_man_pages(chroot: &Chroot, deb: &Path, package: &str, daemons: bool) {
    let contents = Command::new("dpkg-deb")
        .arg("-c")
        .arg(deb)
        .output()
        .unwrap();
    assert!(contents.status.success());
    let contents = String::from_utf8(contents.stdout).unwrap();
    let listed = chroot.ok(&["dpkg", "-L", package]);
    for file in COMPLETIONS {
        assert!(
            contents.contains(&format!(".{file}")),
            "{file} not in {deb:?}:\n{contents}"
        );
        assert!(
            listed.lines().any(|l| l == file),
            "{file} not in dpkg -L:\n{listed}"
        );
    }
    for page in [
        "portcullis.1.gz",
        "portcullis-connect.1.gz",
        "portcullis-targets-list.1.gz",
    ] {
        let path = format!("/usr/share/man/man1/{page}");
        assert!(
            listed.lines().any(|l| l == path),
            "{path} not in dpkg -L:\n{listed}"
        );
    }
    let controller = "/usr/share/man/man1/portcullis-controller.1.gz";
    assert_eq!(listed.lines().any(|l| l == controller), daemons, "{listed}");
    // Unpacked where dpkg put them (a minimal system may exclude /usr/share/man: then the
    // package's copy is read instead).
    let page = "/usr/share/man/man1/portcullis-connect.1.gz";
    let unpacked = tempfile::tempdir().unwrap();
    let gz = if chroot.exists(page) {
        chroot.host_path(page)
    } else {
        assert!(Command::new("dpkg-deb")
            .arg("-x")
            .arg(deb)
            .arg(unpacked.path())
            .status()
            .unwrap()
            .success());
        unpacked.path().join(page.trim_start_matches('/'))
    };
    let roff = Command::new("gzip").arg("-dc").arg(&gz).output().unwrap();
    assert!(roff.status.success(), "{gz:?} is not gzip");
    let roff = String::from_utf8(roff.stdout).unwrap();
    assert!(roff.contains(".TH portcullis-connect"), "{roff}");
    let bash = std::fs::read_to_string(chroot.host_path(COMPLETIONS[0])).unwrap();
    assert!(bash.contains("PORTCULLIS_COMPLETE"), "{bash}");
}

/// A field of a package's control file.
fn control_field(deb: &Path, field: &str) -> String {
    let out = Command::new("dpkg-deb")
        .arg("-f")
        .arg(deb)
        .arg(field)
        .output()
        .unwrap();
    assert!(out.status.success(), "dpkg-deb -f failed");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// dpkg's status of `package` in the chroot (`install ok installed`, `deinstall ok
/// config-files`), or `not installed` (whether dpkg still knows its name or not).
fn status(chroot: &Chroot, package: &str) -> String {
    let out = chroot.run(&["dpkg-query", "-W", "-f", "${Status}", package]);
    let status = String::from_utf8(out.stdout).unwrap();
    if !out.status.success() || status.ends_with(" not-installed") {
        "not installed".into()
    } else {
        status
    }
}

/// An account's passwd entry in the chroot, split into its fields.
fn passwd(chroot: &Chroot, name: &str) -> Vec<String> {
    let line = chroot.ok(&["getent", "passwd", name]);
    line.trim().split(':').map(str::to_owned).collect()
}

/// `args` run as `account` (its uid, gid and groups) inside the chroot.
fn as_account<'a>(account: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec![
        "setpriv",
        "--reuid",
        account,
        "--regid",
        account,
        "--init-groups",
    ];
    all.extend_from_slice(args);
    all
}

/// Every Portcullis name under the chroot's `/etc/systemd/system` (the `*.wants` links that
/// enable a unit) and `/var/lib/systemd` (deb-systemd-helper's record of enabled units).
fn systemd_links(chroot: &Chroot) -> Vec<String> {
    chroot
        .ok(&[
            "find",
            "/etc/systemd/system",
            "/var/lib/systemd",
            "-name",
            "*portcullis*",
        ])
        .lines()
        .map(str::to_owned)
        .collect()
}

fn repo_file(path: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

#[test]
fn the_server_package_installs_the_daemons_units_and_accounts_and_starts_nothing() {
    require_root("the_server_package_installs_the_daemons_units_and_accounts_and_starts_nothing");
    let (chroot, packages) = chroot_and_packages();
    assert!(control_field(&packages.server, "Depends").contains("adduser"));
    let deb = chroot.copy_in(&packages.server);
    let installed = chroot.ok(&["dpkg", "-i", &deb]);
    assert_eq!(status(&chroot, "portcullis"), "install ok installed");
    assert!(
        installed.contains("no service was enabled or started")
            && installed.contains("systemctl enable --now portcullis-controller"),
        "the postinst says how to start: {installed}"
    );

    // The full binary, runnable in the chroot, with the daemons.
    assert_eq!(chroot.stat("/usr/bin/portcullis"), "755 root root");
    let version = chroot.ok(&["portcullis", "--version"]);
    assert!(version.starts_with("portcullis 0.1.0 ("), "{version}");
    chroot.ok(&["portcullis", "controller", "--help"]);
    chroot.ok(&["portcullis", "worker", "--help"]);
    assert_completions_and_man_pages(&chroot, &packages.server, "portcullis", true);

    // The units, as in dist/systemd, and not enabled: no link anywhere, no enablement state.
    for unit in UNITS {
        let path = format!("/lib/systemd/system/{unit}");
        assert_eq!(chroot.stat(&path), "644 root root");
        assert_eq!(
            std::fs::read(chroot.host_path(&path)).unwrap(),
            repo_file(&format!("dist/systemd/{unit}"))
        );
    }
    assert_eq!(
        systemd_links(&chroot),
        Vec::<String>::new(),
        "a unit was enabled"
    );

    // The accounts the units run as: system ids, their own groups, no shell, homes in
    // /var/lib; the worker's is not in the controller's group.
    for (name, home) in [
        ("portcullis", "/var/lib/portcullis"),
        ("portcullis-worker", "/var/lib/portcullis-worker"),
    ] {
        let entry = passwd(&chroot, name);
        let uid: u32 = entry[2].parse().unwrap();
        assert!(uid < 1000, "{name} is a system account: {entry:?}");
        assert_eq!(entry[5], home);
        assert_eq!(entry[6], "/usr/sbin/nologin");
        assert_eq!(
            chroot.ok(&["id", "-nG", name]).trim(),
            name,
            "{name}'s groups"
        );
    }

    // The directories: configs root's, listed by the controller's group alone; the state and
    // log directories each account's own.
    assert_eq!(chroot.stat("/etc/portcullis"), "751 root portcullis");
    assert_eq!(
        chroot.stat("/var/lib/portcullis"),
        "700 portcullis portcullis"
    );
    assert_eq!(
        chroot.stat("/var/log/portcullis"),
        "700 portcullis portcullis"
    );
    assert_eq!(
        chroot.stat("/var/lib/portcullis-worker"),
        "700 portcullis-worker portcullis-worker"
    );

    // Examples, not conffiles: /etc/portcullis is empty, so no unit could start a daemon on
    // a placeholder config; the controller refuses to run without one.
    assert_eq!(chroot.ok(&["ls", "-A", "/etc/portcullis"]), "");
    assert!(!chroot.exists("/var/lib/dpkg/info/portcullis.conffiles"));
    for example in EXAMPLES {
        let path = format!("/usr/share/doc/portcullis/examples/{example}");
        assert_eq!(chroot.stat(&path), "644 root root");
        assert_eq!(
            std::fs::read(chroot.host_path(&path)).unwrap(),
            repo_file(&format!("config/{example}"))
        );
    }
    let dashboard = "/usr/share/doc/portcullis/examples/grafana-dashboard.json";
    assert_eq!(
        std::fs::read(chroot.host_path(dashboard)).unwrap(),
        repo_file("dist/grafana/portcullis.json")
    );
    let copyright =
        std::fs::read_to_string(chroot.host_path("/usr/share/doc/portcullis/copyright")).unwrap();
    assert!(copyright.contains("License: Apache-2.0"), "{copyright}");
    let refused = chroot.fails(&[
        "portcullis",
        "controller",
        "run",
        "--config",
        "/etc/portcullis/controller.toml",
    ]);
    assert!(
        refused.contains("/etc/portcullis/controller.toml"),
        "{refused}"
    );

    // What the admin writes as docs/deploy.md says: the worker's account reads worker.toml by
    // name, cannot list the directory or read the controller's config; the controller's can.
    write(
        &chroot,
        "/etc/portcullis/worker.toml",
        "root:portcullis-worker",
        "640",
    );
    write(
        &chroot,
        "/etc/portcullis/controller.toml",
        "root:portcullis",
        "640",
    );
    chroot.ok(&as_account(
        "portcullis-worker",
        &["cat", "/etc/portcullis/worker.toml"],
    ));
    chroot.fails(&as_account(
        "portcullis-worker",
        &["cat", "/etc/portcullis/controller.toml"],
    ));
    chroot.fails(&as_account("portcullis-worker", &["ls", "/etc/portcullis"]));
    chroot.ok(&as_account(
        "portcullis",
        &["cat", "/etc/portcullis/controller.toml"],
    ));
    chroot.ok(&as_account("portcullis", &["ls", "/etc/portcullis"]));
}

/// A file written in the chroot with an owner and a mode.
fn write(chroot: &Chroot, path: &str, owner: &str, mode: &str) {
    std::fs::write(chroot.host_path(path), "# written by the admin\n").unwrap();
    chroot.ok(&["chown", owner, path]);
    chroot.ok(&["chmod", mode, path]);
}

#[test]
fn upgrading_keeps_what_the_admin_set_removing_keeps_files_and_purging_deletes_the_state() {
    require_root(
        "upgrading_keeps_what_the_admin_set_removing_keeps_files_and_purging_deletes_the_state",
    );
    let (chroot, packages) = chroot_and_packages();
    let deb = chroot.copy_in(&packages.server);
    chroot.ok(&["dpkg", "-i", &deb]);
    let accounts = [
        passwd(&chroot, "portcullis"),
        passwd(&chroot, "portcullis-worker"),
    ];
    write(
        &chroot,
        "/etc/portcullis/controller.toml",
        "root:portcullis",
        "640",
    );
    write(
        &chroot,
        "/etc/portcullis/master.key",
        "portcullis:portcullis",
        "600",
    );
    write(
        &chroot,
        "/var/lib/portcullis/portcullis.db",
        "portcullis:portcullis",
        "600",
    );
    write(
        &chroot,
        "/var/lib/portcullis-worker/key.pem",
        "portcullis-worker:",
        "600",
    );
    write(
        &chroot,
        "/var/log/portcullis/audit.jsonl",
        "portcullis:portcullis",
        "600",
    );
    // The admin's own choice, which an upgrade must keep.
    chroot.ok(&["chmod", "750", "/etc/portcullis"]);

    // An upgrade (the same version again runs every maintainer script as one): the accounts
    // and the admin's mode stay, nothing is enabled.
    let upgraded = chroot.ok(&["dpkg", "-i", &deb]);
    assert!(!upgraded.contains("no service was enabled"), "{upgraded}");
    assert_eq!(
        [
            passwd(&chroot, "portcullis"),
            passwd(&chroot, "portcullis-worker")
        ],
        accounts
    );
    assert_eq!(chroot.stat("/etc/portcullis"), "750 root portcullis");
    assert_eq!(
        systemd_links(&chroot),
        Vec::<String>::new(),
        "a unit was enabled"
    );

    // Remove: the package's files go, everything the admin and the daemons made stays.
    chroot.ok(&["dpkg", "-r", "portcullis"]);
    assert_eq!(status(&chroot, "portcullis"), "deinstall ok config-files");
    assert!(!chroot.exists("/usr/bin/portcullis"));
    for unit in UNITS {
        assert!(!chroot.exists(&format!("/lib/systemd/system/{unit}")));
    }
    assert!(!chroot.exists("/usr/share/doc/portcullis"));
    for kept in [
        "/etc/portcullis/controller.toml",
        "/etc/portcullis/master.key",
        "/var/lib/portcullis/portcullis.db",
        "/var/lib/portcullis-worker/key.pem",
        "/var/log/portcullis/audit.jsonl",
    ] {
        assert!(chroot.exists(kept), "{kept} is kept by dpkg -r");
    }

    // Purge: the state and logs go; the admin's configs and master key, and the accounts
    // (Debian keeps system accounts), stay.
    chroot.ok(&["dpkg", "-P", "portcullis"]);
    assert_eq!(status(&chroot, "portcullis"), "not installed");
    for gone in [
        "/var/lib/portcullis",
        "/var/lib/portcullis-worker",
        "/var/log/portcullis",
    ] {
        assert!(!chroot.exists(gone), "{gone} is deleted by dpkg -P");
    }
    assert!(chroot.exists("/etc/portcullis/controller.toml"));
    assert!(chroot.exists("/etc/portcullis/master.key"));
    assert_eq!(
        [
            passwd(&chroot, "portcullis"),
            passwd(&chroot, "portcullis-worker")
        ],
        accounts
    );
}

#[test]
fn the_client_package_has_the_client_alone_no_units_and_no_accounts() {
    require_root("the_client_package_has_the_client_alone_no_units_and_no_accounts");
    let (chroot, packages) = chroot_and_packages();
    assert_eq!(
        control_field(&packages.client, "Package"),
        "portcullis-client"
    );
    assert_eq!(control_field(&packages.client, "Conflicts"), "portcullis");
    assert_eq!(control_field(&packages.client, "Replaces"), "portcullis");
    assert!(!control_field(&packages.client, "Depends").contains("adduser"));
    let deb = chroot.copy_in(&packages.client);
    chroot.ok(&["dpkg", "-i", &deb]);
    assert_eq!(status(&chroot, "portcullis-client"), "install ok installed");

    assert_eq!(chroot.stat("/usr/bin/portcullis"), "755 root root");
    let version = chroot.ok(&["portcullis", "--version"]);
    assert!(version.starts_with("portcullis 0.1.0 ("), "{version}");
    assert_no_daemons(&chroot);
    assert_completions_and_man_pages(&chroot, &packages.client, "portcullis-client", false);
    for unit in UNITS {
        assert!(!chroot.exists(&format!("/lib/systemd/system/{unit}")));
    }
    for account in ["portcullis", "portcullis-worker"] {
        assert!(!chroot.run(&["getent", "passwd", account]).status.success());
    }
    assert!(!chroot.exists("/etc/portcullis"));
    assert!(!chroot.exists("/var/lib/portcullis"));
    assert!(!chroot.exists("/var/lib/dpkg/info/portcullis-client.postinst"));

    chroot.ok(&["dpkg", "-P", "portcullis-client"]);
    assert!(!chroot.exists("/usr/bin/portcullis"));
}

/// The binary at /usr/bin/portcullis is the client-only build: `controller` and `worker`
/// are unknown subcommands.
fn assert_no_daemons(chroot: &Chroot) {
    for daemon in ["controller", "worker"] {
        let refused = chroot.fails(&["portcullis", daemon, "--help"]);
        assert!(
            refused.contains(&format!("unrecognized subcommand '{daemon}'")),
            "{refused}"
        );
    }
}

#[test]
fn each_package_replaces_the_other_and_a_purge_leaves_the_replacement_whole() {
    require_root("each_package_replaces_the_other_and_a_purge_leaves_the_replacement_whole");
    let (chroot, packages) = chroot_and_packages();
    let server = chroot.copy_in(&packages.server);
    let client = chroot.copy_in(&packages.client);

    // The client over the server: dpkg removes the server package (its configuration kept:
    // the state `config-files`), the binary is the client's, the units are gone.
    chroot.ok(&["dpkg", "-i", &server]);
    chroot.ok(&["dpkg", "-i", &client]);
    assert_eq!(status(&chroot, "portcullis-client"), "install ok installed");
    // dpkg keeps the selection (`install`); apt would mark it `deinstall`.
    let replaced = status(&chroot, "portcullis");
    assert!(replaced.ends_with(" ok config-files"), "{replaced}");
    assert_no_daemons(&chroot);
    for unit in UNITS {
        assert!(!chroot.exists(&format!("/lib/systemd/system/{unit}")));
    }
    // Purging the server's remains leaves the client's binary, and an empty /etc/portcullis
    // goes with it.
    chroot.ok(&["dpkg", "-P", "portcullis"]);
    assert_eq!(status(&chroot, "portcullis"), "not installed");
    assert_no_daemons(&chroot);
    assert!(!chroot.exists("/etc/portcullis"));

    // And back: the server over the client.
    chroot.ok(&["dpkg", "-i", &server]);
    assert_eq!(status(&chroot, "portcullis"), "install ok installed");
    // The client package has no conffile and no script: nothing of it is left.
    assert_eq!(status(&chroot, "portcullis-client"), "not installed");
    chroot.ok(&["portcullis", "controller", "--help"]);
    for unit in UNITS {
        assert!(chroot.exists(&format!("/lib/systemd/system/{unit}")));
    }
}
