//! `portcullis-bench fleet SOURCES`: one load generator of the fleet bench and soak
//! (scripts/fleet.py). It holds echo connections from the comma-separated source addresses
//! SOURCES (each connection binds the next one in turn, so a (source, destination) pair's
//! ephemeral ports are not run out), and obeys one command per stdin line, answering each
//! with one JSON line on stdout:
//!
//! - `open DST COUNT`: opens COUNT connections to DST, each checked by an echo of 8 bytes;
//! - `check`: every held connection echoes 8 bytes (a failed one is dropped and counted);
//! - `churn PER_SEC`: from now on, PER_SEC times a second, a random held connection (of a
//!   destination not paused) is closed (half-close, the echo's EOF read) and a new one opened
//!   to the same destination, and another random one echoes; 0 stops;
//! - `pause DST`: churn leaves DST's connections alone (its session is about to be cancelled);
//! - `retarget OLD NEW`: every connection to OLD must have been cut (EOF or an error within
//!   10 s: its session was cancelled), and as many are opened to NEW;
//! - `close`: closes every held connection as churn does;
//! - `totals`: what happened since the start.
//!
//! EOF on stdin ends the process. Errors are counted, never fatal: the harness decides.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;

/// Connections opened at once (checks and closes: 8 times as many). Four generators opening
/// through one CLI stay within the worker's handshake gate per source (64, the default).
const PARALLEL: usize = 8;
/// How long one connect, echo or close may take before it counts as an error.
const STEP: Duration = Duration::from_secs(10);
/// How many error messages are quoted in an answer.
const QUOTED: usize = 5;

struct Conn {
    dst: SocketAddr,
    stream: TcpStream,
}

#[derive(Default)]
struct Totals {
    /// Connections opened and checked by an echo.
    opened: u64,
    /// Closed by this process, the echo's EOF read.
    closed: u64,
    /// Found cut after their session was cancelled (`retarget`).
    cut: u64,
    /// Still echoing after their session was cancelled.
    survived: u64,
    /// Echoes checked on held connections (`check`, churn).
    echoes: u64,
    /// Opens, echoes or closes that failed.
    errors: u64,
    /// The first few failures, quoted.
    said: Vec<String>,
}

impl Totals {
    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.said.len() < QUOTED {
            self.said.push(what);
        }
    }
}

struct Gen {
    sources: Vec<IpAddr>,
    next_source: usize,
    pool: Vec<Conn>,
    paused: HashSet<SocketAddr>,
    totals: Totals,
    rng: u64,
}

pub(crate) async fn run(sources: &str) -> anyhow::Result<()> {
    let sources = sources
        .split(',')
        .map(|s| s.parse().with_context(|| format!("source address {s:?}")))
        .collect::<anyhow::Result<Vec<IpAddr>>>()?;
    if sources.is_empty() {
        bail!("name at least one source address");
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id());
    let mut gen = Gen {
        sources,
        next_source: 0,
        pool: Vec::new(),
        paused: HashSet::new(),
        totals: Totals::default(),
        rng: seed | 1,
    };
    let (tx, mut lines) = tokio::sync::mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    println!("{{\"ready\":true}}");
    let mut rate = 0u32;
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            line = lines.recv() => {
                let Some(line) = line else { return Ok(()) };
                let words: Vec<&str> = line.split_whitespace().collect();
                let answer = match words.as_slice() {
                    ["churn", per_sec] => {
                        rate = per_sec.parse().context("churn PER_SEC")?;
                        let period = if rate == 0 { 3600.0 } else { 1.0 / f64::from(rate) };
                        tick = tokio::time::interval(Duration::from_secs_f64(period));
                        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        tick.reset();
                        format!("{{\"churn\":{rate}}}")
                    }
                    _ => gen.command(&words).await?,
                };
                println!("{answer}");
            }
            _ = tick.tick(), if rate > 0 => gen.churn_once().await,
        }
    }
}

impl Gen {
    async fn command(&mut self, words: &[&str]) -> anyhow::Result<String> {
        Ok(match words {
            ["open", dst, count] => {
                let dst: SocketAddr = dst.parse().context("open DST")?;
                let (opened, errors) = self.open(dst, count.parse()?).await;
                format!(
                    "{{\"opened\":{opened},\"errors\":{errors},\"held\":{}}}",
                    self.pool.len()
                )
            }
            ["check"] => {
                let conns = std::mem::take(&mut self.pool);
                let checked = conns.len();
                let before = self.totals.errors;
                self.pool = self.each(conns, |c| async move { echo(c).await }).await;
                let errors = self.totals.errors - before;
                self.totals.echoes += checked as u64;
                format!(
                    "{{\"checked\":{checked},\"ok\":{},\"errors\":{errors}}}",
                    self.pool.len()
                )
            }
            ["pause", dst] => {
                let dst: SocketAddr = dst.parse().context("pause DST")?;
                self.paused.insert(dst);
                let held = self.pool.iter().filter(|c| c.dst == dst).count();
                format!("{{\"paused\":\"{dst}\",\"held\":{held}}}")
            }
            ["retarget", old, new] => {
                let (old, new): (SocketAddr, SocketAddr) = (
                    old.parse().context("retarget OLD")?,
                    new.parse().context("retarget NEW")?,
                );
                let (doomed, kept) = std::mem::take(&mut self.pool)
                    .into_iter()
                    .partition(|c| c.dst == old);
                self.pool = kept;
                let (cut, survived) = self.check_cut(doomed).await;
                self.paused.remove(&old);
                let before = self.totals.errors;
                let (opened, _) = self.open(new, cut + survived).await;
                let errors = self.totals.errors - before;
                format!("{{\"cut\":{cut},\"survived\":{survived},\"opened\":{opened},\"errors\":{errors}}}")
            }
            ["close"] => {
                let conns = std::mem::take(&mut self.pool);
                let before = (self.totals.closed, self.totals.errors);
                let left = self
                    .each(conns, |c| async move { close(c).await.map(|()| None) })
                    .await;
                debug_assert!(left.is_empty());
                format!(
                    "{{\"closed\":{},\"errors\":{}}}",
                    self.totals.closed - before.0,
                    self.totals.errors - before.1
                )
            }
            ["totals"] => {
                let t = &self.totals;
                format!(
                    "{{\"opened\":{},\"closed\":{},\"cut\":{},\"survived\":{},\"echoes\":{},\"errors\":{},\"held\":{},\"said\":[{}]}}",
                    t.opened, t.closed, t.cut, t.survived, t.echoes, t.errors, self.pool.len(),
                    t.said.iter().map(|s| json_string(s)).collect::<Vec<_>>().join(",")
                )
            }
            _ => bail!(
                "unknown command {words:?}: open DST COUNT | check | churn PER_SEC | pause DST | \
                 retarget OLD NEW | close | totals"
            ),
        })
    }

    fn source(&mut self) -> IpAddr {
        let s = self.sources[self.next_source % self.sources.len()];
        self.next_source += 1;
        s
    }

    fn draw(&mut self, below: usize) -> usize {
        // xorshift64: enough to pick connections at random.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        usize::try_from(self.rng % below.max(1) as u64).unwrap_or(0)
    }

    /// Opens `count` connections to `dst`, PARALLEL at a time; returns (opened, failed).
    async fn open(&mut self, dst: SocketAddr, count: usize) -> (usize, usize) {
        let mut tasks = JoinSet::new();
        let (mut opened, mut failed) = (0, 0);
        for i in 0..count {
            if tasks.len() >= PARALLEL {
                self.opened_one(tasks.join_next().await, &mut opened, &mut failed);
            }
            let src = self.source();
            tasks.spawn(async move { (src, connect(src, dst, i as u64).await) });
        }
        while let Some(done) = tasks.join_next().await {
            self.opened_one(Some(done), &mut opened, &mut failed);
        }
        (opened, failed)
    }

    fn opened_one(
        &mut self,
        done: Option<Result<(IpAddr, anyhow::Result<Conn>), tokio::task::JoinError>>,
        opened: &mut usize,
        failed: &mut usize,
    ) {
        match done {
            Some(Ok((_, Ok(conn)))) => {
                self.pool.push(conn);
                self.totals.opened += 1;
                *opened += 1;
            }
            Some(Ok((src, Err(e)))) => {
                self.totals.error(format!("open from {src}: {e:#}"));
                *failed += 1;
            }
            Some(Err(e)) => {
                self.totals.error(format!("open: {e}"));
                *failed += 1;
            }
            None => {}
        }
    }

    /// Runs `step` on every connection, PARALLEL at a time; keeps those it gives back,
    /// counts its errors, and counts a close for every `Ok(None)`.
    async fn each<F, Fut>(&mut self, conns: Vec<Conn>, step: F) -> Vec<Conn>
    where
        F: Fn(Conn) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Option<Conn>>> + Send + 'static,
    {
        let mut kept = Vec::with_capacity(conns.len());
        let mut tasks = JoinSet::new();
        let mut outcome = |done: Result<anyhow::Result<Option<Conn>>, tokio::task::JoinError>,
                           totals: &mut Totals| match done {
            Ok(Ok(Some(c))) => kept.push(c),
            Ok(Ok(None)) => totals.closed += 1,
            Ok(Err(e)) => totals.error(format!("{e:#}")),
            Err(e) => totals.error(e.to_string()),
        };
        for c in conns {
            if tasks.len() >= PARALLEL * 8 {
                if let Some(done) = tasks.join_next().await {
                    outcome(done, &mut self.totals);
                }
            }
            tasks.spawn(step(c));
        }
        while let Some(done) = tasks.join_next().await {
            outcome(done, &mut self.totals);
        }
        kept
    }

    /// After a cancel: (cut, survived) of the connections whose session ended.
    async fn check_cut(&mut self, doomed: Vec<Conn>) -> (usize, usize) {
        let mut tasks = JoinSet::new();
        for mut c in doomed {
            tasks.spawn(async move {
                let mut buf = [0u8; 64];
                // Cut: EOF or an error. Still open after STEP: it survived the cancel.
                matches!(
                    tokio::time::timeout(STEP, c.stream.read(&mut buf)).await,
                    Ok(Ok(0) | Err(_))
                )
            });
        }
        let (mut cut, mut survived) = (0, 0);
        while let Some(done) = tasks.join_next().await {
            if matches!(done, Ok(true)) {
                cut += 1;
            } else {
                survived += 1;
            }
        }
        self.totals.cut += cut as u64;
        self.totals.survived += survived as u64;
        (cut, survived)
    }

    /// One churn step: close a random connection of a destination not paused and open one in
    /// its place; echo on another.
    async fn churn_once(&mut self) {
        if self.pool.is_empty() {
            return;
        }
        let i = self.draw(self.pool.len());
        if self.paused.contains(&self.pool[i].dst) {
            return;
        }
        let c = self.pool.swap_remove(i);
        let dst = c.dst;
        match close(c).await {
            Ok(()) => self.totals.closed += 1,
            Err(e) => self.totals.error(format!("close: {e:#}")),
        }
        let src = self.source();
        match connect(src, dst, self.totals.opened).await {
            Ok(c) => {
                self.pool.push(c);
                self.totals.opened += 1;
            }
            Err(e) => self.totals.error(format!("open from {src}: {e:#}")),
        }
        let j = self.draw(self.pool.len());
        if self
            .pool
            .get(j)
            .is_some_and(|c| !self.paused.contains(&c.dst))
        {
            let c = self.pool.swap_remove(j);
            self.totals.echoes += 1;
            match echo(c).await {
                Ok(Some(c)) => self.pool.push(c),
                Ok(None) => {}
                Err(e) => self.totals.error(format!("{e:#}")),
            }
        }
    }
}

/// A connection from `src` to `dst` whose first 8 bytes (`seq`) came back.
async fn connect(src: IpAddr, dst: SocketAddr, seq: u64) -> anyhow::Result<Conn> {
    let attempt = async {
        let socket = if src.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // A port of this source still in TIME_WAIT from a churned connection may be bound again.
        socket.set_reuseaddr(true)?;
        socket.bind(SocketAddr::new(src, 0))?;
        let stream = socket.connect(dst).await?;
        stream.set_nodelay(true)?;
        let mut conn = Conn { dst, stream };
        exchange(&mut conn.stream, seq.to_le_bytes()).await?;
        Ok::<_, anyhow::Error>(conn)
    };
    tokio::time::timeout(STEP, attempt)
        .await
        .with_context(|| format!("to {dst}: no echo within {STEP:?}"))?
        .with_context(|| format!("to {dst}"))
}

async fn exchange(s: &mut TcpStream, payload: [u8; 8]) -> anyhow::Result<()> {
    s.write_all(&payload).await?;
    let mut back = [0u8; 8];
    s.read_exact(&mut back).await?;
    if back != payload {
        bail!("the echo answered {back:?} to {payload:?}");
    }
    Ok(())
}

/// Echoes 8 bytes on a held connection; gives it back when they came back.
async fn echo(mut c: Conn) -> anyhow::Result<Option<Conn>> {
    let dst = c.dst;
    tokio::time::timeout(STEP, exchange(&mut c.stream, *b"fleetchk"))
        .await
        .with_context(|| format!("echo on a connection to {dst}: none within {STEP:?}"))?
        .with_context(|| format!("echo on a connection to {dst}"))?;
    Ok(Some(c))
}

/// Half-closes and reads the echo's EOF (nothing else may come).
async fn close(mut c: Conn) -> anyhow::Result<()> {
    let dst = c.dst;
    let done = async {
        c.stream.shutdown().await?;
        let mut rest = Vec::new();
        c.stream.read_to_end(&mut rest).await?;
        if !rest.is_empty() {
            bail!("{} bytes after the half-close", rest.len());
        }
        Ok(())
    };
    tokio::time::timeout(STEP, done)
        .await
        .with_context(|| format!("close of a connection to {dst}: no EOF within {STEP:?}"))?
        .with_context(|| format!("close of a connection to {dst}"))
}

/// `s` as a JSON string.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::json_string;

    #[test]
    fn quoted_errors_are_json_strings() {
        assert_eq!(json_string("a \"b\" c\\d\n"), r#""a \"b\" c\\d\u000a""#);
    }
}
