//! The ops listeners of a controller and a worker as separate processes: `/health`, `/ready`
//! (503 with a reason when the worker has no controller), `/metrics` moving with a session
//! and accepted by `promtool check metrics` and by a private Prometheus scraping both, which
//! also runs every query of the sample Grafana dashboard (`dist/grafana/portcullis.json`);
//! systemd's READY=1 and WATCHDOG=1 over NOTIFY_SOCKET; no ANSI colours in a piped log.
//! Peers: curl, promtool and prometheus (Debian's `prometheus` package; `scripts/test`
//! installs it).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::client::open_echo;
use common::cluster::{sigterm, wait_exit, Controller};
use common::wait::poll;

/// Ops listeners on free ports (the defaults, 9290 and 9291, may be taken on a test host).
const OPS_ANY_PORT: &str = "[ops]\nlisten = \"127.0.0.1:0\"\n";

/// `curl -s` an ops URL: the status and the body.
fn curl(addr: &str, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-w",
            "\n%{http_code}",
            &format!("http://{addr}{path}"),
        ])
        .output()
        .expect("curl");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap_or(0), body.to_owned())
}

/// The value of the sample `name` (with its labels, as written) in a scrape.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// `promtool check metrics` accepts a scrape (lint included).
fn promtool_accepts(text: &str, whose: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool refused the {whose}'s metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn both_ops_listeners_answer_and_their_counters_move_with_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}",
        dir.path().join("controller/portcullis.db").display()
    );
    // A file sink, so that the sink lag gauge has a series (the dashboard plots it).
    let sink = format!(
        "{OPS_ANY_PORT}[[audit.sink]]\nname = \"local-file\"\ntype = \"file\"\npath = \"{}\"\n",
        dir.path().join("audit.jsonl").display()
    );
    let c = Controller::start_full(&dir.path().join("controller"), &url, &sink, "");
    let w = c.join_worker_with_echo(dir.path(), std::slice::from_ref(&c.cluster), OPS_ANY_PORT);
    let c_ops = c
        .ops
        .clone()
        .expect("the controller's readiness line names its ops address");
    let w_ops = w
        .ops
        .clone()
        .expect("the worker's readiness line names its ops address");

    for ops in [&c_ops, &w_ops] {
        assert_eq!(curl(ops, "/health"), (200, "ok\n".into()));
        assert_eq!(curl(ops, "/ready").0, 200, "{ops} /ready");
        assert_eq!(curl(ops, "/nothing").0, 404);
    }
    let before_c = curl(&c_ops, "/metrics").1;
    let before_w = curl(&w_ops, "/metrics").1;
    assert_eq!(
        sample(&before_w, "portcullis_worker_linked_controllers"),
        1.0
    );
    assert_eq!(
        sample(&before_c, "portcullis_controller_linked_workers"),
        1.0
    );

    // One session through them: authorised, one connection, four bytes each way.
    let listener = common::client::listen(c.cli(), "echo");
    drop(open_echo(listener.port));
    let after_w = poll(
        "the worker to count the closed connection",
        Duration::from_secs(20),
        || {
            let text = curl(&w_ops, "/metrics").1;
            if sample(&text, "portcullis_worker_bytes_total{direction=\"down\"}") >= 4.0 {
                Ok(text)
            } else {
                Err(text)
            }
        },
    );
    let after_c = curl(&c_ops, "/metrics").1;
    let allowed = "portcullis_controller_authorize_decisions_total{outcome=\"allow\"}";
    assert_eq!(sample(&after_c, allowed), sample(&before_c, allowed) + 1.0);
    assert!(
        sample(
            &after_c,
            "portcullis_controller_authorize_duration_seconds_count"
        ) >= 1.0
    );
    assert_eq!(
        sample(&after_c, "portcullis_controller_sessions{state=\"active\"}")
            + sample(
                &after_c,
                "portcullis_controller_sessions{state=\"pending\"}"
            ),
        1.0,
        "the listener's session is live:\n{after_c}"
    );
    let opened = "portcullis_worker_connections_total";
    assert_eq!(sample(&after_w, opened), sample(&before_w, opened) + 1.0);
    assert!(sample(&after_w, "portcullis_worker_bytes_total{direction=\"up\"}") >= 4.0);
    assert_eq!(
        sample(
            &after_w,
            "portcullis_worker_admissions_total{outcome=\"admitted\"}"
        ),
        1.0
    );
    assert!(
        sample(
            &after_w,
            "portcullis_worker_admission_duration_seconds_count"
        ) >= 1.0
    );
    // No user, session, target or token id in any label.
    for text in [&after_c, &after_w] {
        assert!(!text.contains(&listener.session_id), "{text}");
        assert!(!text.contains("admin"), "{text}");
        assert!(!text.contains("echo"), "{text}");
    }
    promtool_accepts(&after_c, "controller");
    promtool_accepts(&after_w, "worker");

    scraped_by_prometheus(dir.path(), &[&c_ops, &w_ops], &[&after_c, &after_w]);

    // Without its controller the worker is not ready, and says why.
    let mut c = c;
    sigterm(&c.child);
    wait_exit(&mut c.child, Duration::from_secs(20));
    let (code, body) = poll(
        "the worker to be unready",
        Duration::from_secs(30),
        || match curl(&w_ops, "/ready") {
            (503, body) => Ok((503, body)),
            other => Err(format!("{other:?}")),
        },
    );
    assert_eq!(code, 503);
    assert!(body.contains("no controller is linked"), "{body}");
    assert_eq!(curl(&w_ops, "/health").0, 200);
}

/// A private Prometheus (no system service) scrapes both listeners until both targets are
/// `up`; then every query of the sample Grafana dashboard runs on it (see
/// [`dashboard_queries_run`]).
fn scraped_by_prometheus(dir: &std::path::Path, targets: &[&str], scrapes: &[&str]) {
    let port = common::ports::free_port();
    let config = dir.join("prometheus.yml");
    let list = targets
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: portcullis\n    static_configs:\n      - targets: [{list}]\n"
        ),
    )
    .unwrap();
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (Debian package prometheus)");
    let query = format!("http://127.0.0.1:{port}/api/v1/query?query=up");
    let found = common::wait::poll_within(Duration::from_secs(60), || {
        let out = Command::new("curl").args(["-s", &query]).output().unwrap();
        let answer: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        let up: Vec<_> = answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r["value"][1] == "1")
            .map(|r| r["metric"]["instance"].as_str().unwrap_or("").to_owned())
            .collect();
        if targets.iter().all(|t| up.iter().any(|u| u == t)) {
            Ok(())
        } else {
            Err(answer.to_string())
        }
    });
    let dashboard = found.and_then(|()| dashboard_queries_run(port, scrapes));
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    if let Err(last) = dashboard {
        panic!("{last}");
    }
}

/// `dist/grafana/portcullis.json`: every metric a panel queries is one the daemons declare,
/// and every query is valid PromQL that Prometheus evaluates; a query whose metrics all have
/// samples in the scrapes must also return data (counters that no session moved, e.g.
/// credential failures, have no sample yet and only have to parse).
fn dashboard_queries_run(port: u16, scrapes: &[&str]) -> Result<(), String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/dist/grafana/portcullis.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        exprs.len() >= 15,
        "the dashboard lost its panels: {exprs:?}"
    );
    for expr in &exprs {
        let names = metric_names(expr);
        for name in &names {
            assert!(
                scrapes.iter().any(|text| declares(text, name)),
                "the dashboard queries {name}, which neither daemon declares: {expr}"
            );
        }
        let must_have_data = !names.is_empty()
            && names
                .iter()
                .all(|n| scrapes.iter().any(|text| has_sample(text, n)));
        let query = expr
            .replace("$__rate_interval", "1m")
            .replace("$job", "portcullis");
        common::wait::poll_within(Duration::from_secs(30), || {
            let out = Command::new("curl")
                .args(["-s", "-G", &format!("http://127.0.0.1:{port}/api/v1/query")])
                .arg("--data-urlencode")
                .arg(format!("query={query}"))
                .output()
                .unwrap();
            let answer: serde_json::Value =
                serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
            let empty = answer["data"]["result"]
                .as_array()
                .is_none_or(|r| r.is_empty());
            if answer["status"] != "success" || (must_have_data && empty) {
                return Err(format!("{query}: {answer}"));
            }
            Ok(())
        })
        .map_err(|last| format!("a dashboard query failed on Prometheus: {last}"))?;
    }
    Ok(())
}

/// The `portcullis_*` metric names in a PromQL expression, as sampled (`_bucket` kept).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("portcullis_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// The family a sampled name belongs to: without `_bucket`/`_sum`/`_count`, and without
/// `_total` (OpenMetrics declares counters without it).
fn family(name: &str) -> &str {
    let name = ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name);
    name.strip_suffix("_total").unwrap_or(name)
}

/// A `# TYPE` line of the scrape declares the family of `name`.
fn declares(text: &str, name: &str) -> bool {
    text.lines().any(|line| {
        line.strip_prefix("# TYPE ")
            .and_then(|l| l.split_whitespace().next())
            .is_some_and(|declared| family(declared) == family(name))
    })
}

/// The scrape has a sample of `name` (with or without labels).
fn has_sample(text: &str, name: &str) -> bool {
    text.lines().any(|line| {
        line.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
    })
}

#[test]
fn systemd_hears_ready_after_the_readiness_line_then_the_watchdog_repeatedly() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let config = controller_config(dir.path());
    let mut child = Command::new(common::dev::bin())
        .args(["controller", "run", "--config"])
        .arg(&config)
        .env("PORTCULLIS_LOG", "info")
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let ready: serde_json::Value = serde_json::from_str(&line).expect("readiness line");
    assert_eq!(ready["event"], "ready");
    assert_eq!(datagram(&socket), "READY=1");
    let mut watchdogs = 0;
    let started = std::time::Instant::now();
    while watchdogs < 5 {
        assert_eq!(datagram(&socket), "WATCHDOG=1");
        watchdogs += 1;
    }
    // Every 100 ms (half of WATCHDOG_USEC): five within well under the 2.5 s they would
    // take at the full interval's double.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    sigterm(&child);
    wait_exit(&mut child, Duration::from_secs(20));

    // The log went to a pipe: plain text, no escape sequence.
    let mut log = Vec::new();
    child.stderr.take().unwrap().read_to_end(&mut log).unwrap();
    assert!(!log.is_empty(), "the controller logged nothing at info");
    assert!(
        !log.contains(&0x1b),
        "ANSI escapes in a piped log: {}",
        String::from_utf8_lossy(&log)
    );
}

/// The next notification on `socket` (one or more `KEY=VALUE` lines), without its final
/// newline.
fn datagram(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 256];
    let n = socket
        .recv(&mut buf)
        .expect("a notification within the timeout");
    String::from_utf8_lossy(&buf[..n]).trim_end().to_owned()
}

#[test]
fn ops_listen_empty_turns_the_listener_off() {
    let dir = tempfile::tempdir().unwrap();
    let config = controller_config(dir.path());
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "listen = \"127.0.0.1:0\"\n[store]",
        "listen = \"\"\n[store]",
    );
    std::fs::write(&config, text).unwrap();
    let (mut child, ready) = common::cluster::spawn_ready(
        &common::netns::Place::host(),
        &["controller", "run", "--config", config.to_str().unwrap()],
        &[],
    );
    assert_eq!(ready["ops"], serde_json::Value::Null, "{ready}");
    sigterm(&child);
    wait_exit(&mut child, Duration::from_secs(20));
}

/// A controller config on SQLite in `dir` with every listener on a free port.
fn controller_config(dir: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::OpenOptionsExt as _;
    let master = dir.join("master.key");
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&master)
        .unwrap()
        .write_all("ab".repeat(32).as_bytes())
        .unwrap();
    let config = dir.join("controller.toml");
    std::fs::write(
        &config,
        format!(
            "[ops]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"sqlite://{}\"\n[keys]\nmaster_key_file = \"{}\"\n\
             [api]\nlisten = \"127.0.0.1:0\"\n[cluster]\nlisten = \"127.0.0.1:0\"\n",
            dir.join("portcullis.db").display(),
            master.display()
        ),
    )
    .unwrap();
    config
}
