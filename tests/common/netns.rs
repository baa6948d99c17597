//! Zones as network namespaces: a router namespace with one veth pair to a namespace per
//! zone, so a test can load the policy's nftables export into the router and watch it
//! decide real traffic between the zones.
//!
//! Only the namespaces created here are touched: the addresses live inside them, the host's
//! interfaces, routes and ruleset are never changed. Every namespace carries this process's
//! id in its name (parallel runs never collide) and is deleted when its owner is dropped,
//! also while a failed test unwinds; namespaces a killed run left behind are removed by the
//! next run.
//!
//! Needs `ip` (iproute2), `nft` and `python3` (targets and probes inside the namespaces), and
//! the right to create namespaces (root, or CAP_NET_ADMIN and CAP_SYS_ADMIN). A test calls
//! [`available`] first and skips with its message when namespaces cannot be made here;
//! `PORTCULLIS_TEST_REQUIRE_NETNS=1` (set in CI) turns that skip into a failure.

use std::ffi::OsStr;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Every namespace this harness creates starts with this, then the creating process's id.
const PREFIX: &str = "portcullis-test-";

/// Where a process of a test runs: on this host, or inside a zone's namespace; `ip` is the
/// address it listens on.
#[derive(Clone, Debug)]
pub(crate) struct Place {
    pub netns: Option<String>,
    pub ip: String,
}

impl Place {
    /// This host's 127.0.0.1, where every other integration test runs.
    pub(crate) fn host() -> Place {
        Place {
            netns: None,
            ip: "127.0.0.1".into(),
        }
    }

    /// `program`, to be run in this place (through `ip netns exec`, which keeps the
    /// environment and execs, so the child's id is the program's own).
    pub(crate) fn command(&self, program: impl AsRef<OsStr>) -> Command {
        match &self.netns {
            None => Command::new(program),
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns]).arg(program);
                cmd
            }
        }
    }
}

/// Whether this machine lets the test create network namespaces and has the tools: `Err`
/// says what is missing. Probed once per test process: the tests of a file run side by side,
/// and two probes would race for the one probe namespace's name.
pub(crate) fn available() -> Result<(), String> {
    static PROBED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    PROBED.get_or_init(probe).clone()
}

fn probe() -> Result<(), String> {
    for (tool, arg) in [("ip", "-V"), ("nft", "--version"), ("python3", "--version")] {
        match Command::new(tool).arg(arg).output() {
            Ok(out) if out.status.success() => {}
            _ => return Err(format!("`{tool}` is missing (scripts/test installs it)")),
        }
    }
    let probe = Netns::create(&format!("{PREFIX}{}-probe", std::process::id()))
        .map_err(|e| format!("network namespaces are not available here ({e}); run as root"))?;
    // Entering one (it mounts a /sys of its own) and nftables inside it must work too.
    match probe.command("nft").args(["list", "ruleset"]).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "nftables does not work inside a network namespace here: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run `ip netns exec`: {e}")),
    }
}

/// True when the test may go on; otherwise prints why it is skipped (or fails, when
/// `PORTCULLIS_TEST_REQUIRE_NETNS` is set).
pub(crate) fn ready_or_skip(test: &str) -> bool {
    match available() {
        Ok(()) => true,
        Err(why) if std::env::var_os("PORTCULLIS_TEST_REQUIRE_NETNS").is_some() => {
            panic!("{test}: {why}, and PORTCULLIS_TEST_REQUIRE_NETNS is set")
        }
        Err(why) => {
            // Straight to stderr, past the test harness's capture: a skip must be seen.
            let _ = writeln!(std::io::stderr(), "skipping {test}: {why}");
            false
        }
    }
}

/// One named network namespace, deleted at drop.
pub(crate) struct Netns {
    pub name: String,
}

impl Netns {
    fn create(name: &str) -> Result<Netns, String> {
        let out = Command::new("ip")
            .args(["netns", "add", name])
            .output()
            .map_err(|e| format!("cannot run `ip netns add`: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "`ip netns add` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let ns = Netns {
            name: name.to_owned(),
        };
        ns.ip(&["link", "set", "lo", "up"]);
        Ok(ns)
    }

    /// `ip -n NAME ARGS`, which must succeed.
    fn ip(&self, args: &[&str]) {
        run(Command::new("ip").args(["-n", &self.name]).args(args));
    }

    /// `program` run inside this namespace.
    pub(crate) fn command(&self, program: impl AsRef<OsStr>) -> Command {
        self.place(String::new()).command(program)
    }

    fn place(&self, ip: String) -> Place {
        Place {
            netns: Some(self.name.clone()),
            ip,
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting a namespace also deletes the veth ends inside it, and so their peers.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A router namespace and one namespace per zone, each on a /24 of its own through a veth
/// pair to the router (the router holds the subnet's `.1`, the zone's default route).
pub(crate) struct Lab {
    // Zones first: they are dropped before the router.
    zones: Vec<Netns>,
    router: Netns,
    tag: String,
}

impl Lab {
    /// A router with forwarding on and no ruleset.
    pub(crate) fn new() -> Lab {
        static RUN: AtomicU32 = AtomicU32::new(0);
        remove_leftovers();
        let tag = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            RUN.fetch_add(1, Ordering::SeqCst)
        );
        let router = Netns::create(&format!("{tag}-router")).expect("router namespace");
        run(router
            .command("sysctl")
            .args(["-qw", "net.ipv4.ip_forward=1"]));
        Lab {
            zones: Vec::new(),
            router,
            tag,
        }
    }

    /// A namespace for `zone` holding `host` on its /24, routed through the router.
    pub(crate) fn zone(&mut self, zone: &str, host: Ipv4Addr) -> Place {
        let [a, b, c, d] = host.octets();
        assert!(
            d > 1,
            "{host}: .1 is the router's address on the zone's /24"
        );
        let ns = Netns::create(&format!("{}-{}", self.tag, zone.to_ascii_lowercase()))
            .expect("zone namespace");
        let leg = format!("z{}", self.zones.len());
        let gateway = Ipv4Addr::new(a, b, c, 1);
        self.router.ip(&[
            "link", "add", &leg, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
        ]);
        self.router
            .ip(&["addr", "add", &format!("{gateway}/24"), "dev", &leg]);
        self.router.ip(&["link", "set", &leg, "up"]);
        ns.ip(&["addr", "add", &format!("{host}/24"), "dev", "eth0"]);
        ns.ip(&["link", "set", "eth0", "up"]);
        ns.ip(&["route", "add", "default", "via", &gateway.to_string()]);
        let place = ns.place(host.to_string());
        self.zones.push(ns);
        place
    }

    /// Loads a ruleset into the router (`nft -f -`); panics with nft's message if refused.
    pub(crate) fn load_ruleset(&self, ruleset: &str) {
        let mut nft = self
            .router
            .command("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        nft.stdin
            .take()
            .unwrap()
            .write_all(ruleset.as_bytes())
            .unwrap();
        let out = nft.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "nft refused the ruleset in the router namespace: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The router's ruleset, as `nft list ruleset` prints it.
    pub(crate) fn ruleset(&self) -> String {
        let out = self
            .router
            .command("nft")
            .args(["list", "ruleset"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// What a TCP connection attempt from one place to an address came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Connected, and the bytes sent came back.
    Echoed,
    /// No answer within the probe's time: the SYN (or its answer) was dropped.
    TimedOut,
    /// Refused or reset, or another error (in words).
    Failed(String),
}

/// Tries a TCP connection from `from` to `to` and sends a few bytes to echo, giving up
/// after `timeout`.
pub(crate) fn reach(from: &Place, to: SocketAddr, timeout: Duration) -> Reach {
    const PROBE: &str = r#"
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    c.sendall(b"probe")
    got = b""
    while len(got) < 5:
        chunk = c.recv(5 - len(got))
        if not chunk:
            break
        got += chunk
    print("echoed" if got == b"probe" else "no echo: %r" % got)
except socket.timeout:
    print("timeout")
except OSError as e:
    print("error: %s" % e)
"#;
    let out = from
        .command("python3")
        .args(["-c", PROBE])
        .arg(to.ip().to_string())
        .arg(to.port().to_string())
        .arg(format!("{:.1}", timeout.as_secs_f64()))
        .output()
        .unwrap();
    match String::from_utf8_lossy(&out.stdout).trim() {
        "echoed" => Reach::Echoed,
        "timeout" => Reach::TimedOut,
        other => Reach::Failed(format!(
            "{other} {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// A TCP echo target (with half-close) in a place, killed at drop.
pub(crate) struct Echo {
    child: Child,
    pub addr: SocketAddr,
}

impl Echo {
    pub(crate) fn start(place: &Place, port: u16) -> Echo {
        const SERVER: &str = r#"
import socket, sys, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(64)
print("ready", flush=True)
def serve(c):
    with c:
        while True:
            b = c.recv(65536)
            if not b:
                break
            c.sendall(b)
        c.shutdown(socket.SHUT_WR)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;
        let mut child = place
            .command("python3")
            .args(["-c", SERVER, &place.ip, &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "the echo target in {place:?} did not start"
        );
        Echo {
            child,
            addr: SocketAddr::new(place.ip.parse().unwrap(), port),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Deletes namespaces of this harness whose creating process is gone (a run that was killed
/// before its drops ran).
fn remove_leftovers() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !std::path::Path::new("/proc").join(pid).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}
