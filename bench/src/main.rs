//! `portcullis-bench`: the load generators `scripts/bench` drives. Each prints one JSON line
//! with what it measured. Not part of the product.
#![forbid(unsafe_code)]

mod fleet;
mod pve;
mod scaling;

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const CHUNK: usize = 1 << 20;

fn usage() -> anyhow::Result<()> {
    bail!(
        "usage: portcullis-bench sink ADDR | echo ADDR | send ADDR BYTES | generate BYTES | \
         latency ADDR[,ADDR...] COUNT [GAP_MS] | hold ADDR COUNT ACTIVE SECONDS | pve ADDR DIR | \
         scaling (send|echo) ... | fleet SOURCE[,SOURCE...] (commands on stdin: see fleet.rs)"
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["sink", addr] => sink(addr).await,
        ["echo", addr] => echo(addr).await,
        ["send", addr, bytes] => send(addr, bytes.parse()?).await,
        ["generate", bytes] => generate(bytes.parse()?).await,
        ["latency", addrs, count] => latency(addrs, count.parse()?, 0).await,
        ["latency", addrs, count, gap] => latency(addrs, count.parse()?, gap.parse()?).await,
        ["pve", addr, dir] => pve::serve(addr, dir).await,
        ["scaling", rest @ ..] => scaling::main(rest).await,
        ["fleet", sources] => fleet::run(sources).await,
        ["hold", addr, count, active, secs] => {
            hold(addr, count.parse()?, active.parse()?, secs.parse()?).await
        }
        _ => usage(),
    }
}

/// What the sink writes first on every connection: a client (through any relay) sees the path
/// is up when it arrives, and times the bulk transfer from there.
const GREETING: &[u8] = b"sink\n";

/// Accepts connections; greets each ([`GREETING`]), counts what it reads until EOF, answers
/// the count (`N\n`) and closes: a relay that truncated or added bytes shows in the count
/// its sender reads back.
async fn sink(addr: &str) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    println!("{{\"ready\":\"{}\"}}", listener.local_addr()?);
    loop {
        let (mut s, _) = listener.accept().await?;
        tokio::spawn(async move {
            if s.write_all(GREETING).await.is_err() {
                return;
            }
            let mut buf = vec![0u8; CHUNK];
            let mut total = 0u64;
            loop {
                match s.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => total += n as u64,
                    // No count: the sender reads none and fails its row.
                    Err(_) => return,
                }
            }
            let _ = s.write_all(format!("{total}\n").as_bytes()).await;
            let _ = s.shutdown().await;
        });
    }
}

/// The byte count in what a sender read back from the sink (greeting, then `N\n`), or None
/// when it is not exactly that.
fn sink_count(reply: &[u8]) -> Option<u64> {
    let count = reply.strip_prefix(GREETING)?.strip_suffix(b"\n")?;
    std::str::from_utf8(count).ok()?.parse().ok()
}

async fn echo(addr: &str) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    println!("{{\"ready\":\"{}\"}}", listener.local_addr()?);
    loop {
        let (mut s, _) = listener.accept().await?;
        let _ = s.set_nodelay(true);
        tokio::spawn(async move {
            let (mut r, mut w) = s.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
            let _ = w.shutdown().await;
        });
    }
}

/// Reads the sink's greeting ([`GREETING`]): the path through any relay is up.
async fn read_greeting(s: &mut TcpStream) -> anyhow::Result<()> {
    let mut greeting = [0u8; GREETING.len()];
    s.read_exact(&mut greeting)
        .await
        .context("read the sink's greeting")?;
    if greeting != GREETING {
        bail!("the far end did not greet as the sink does: {greeting:?}");
    }
    Ok(())
}

/// Waits for the sink's greeting, then sends BYTES (timed from there: the transfer, not the
/// set-up), half-closes and reads the sink's count. Prints what the sink received (null when
/// its answer was not a count); the caller fails the row when that differs from BYTES.
async fn send(addr: &str, bytes: u64) -> anyhow::Result<()> {
    let mut s = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    read_greeting(&mut s).await?;
    let start = Instant::now();
    let buf = vec![0x5au8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left.min(CHUNK as u64))?;
        s.write_all(&buf[..n]).await?;
        left -= n as u64;
    }
    s.shutdown().await?;
    let mut rest = GREETING.to_vec();
    s.read_to_end(&mut rest).await?;
    let secs = start.elapsed().as_secs_f64();
    let received = sink_count(&rest).map_or("null".to_owned(), |n| n.to_string());
    println!(
        "{{\"bytes\":{bytes},\"received\":{received},\"seconds\":{secs:.4},\"mib_per_s\":{:.1}}}",
        bytes as f64 / secs / 1048576.0
    );
    Ok(())
}

/// Writes BYTES to stdout (for `--stdio` pipelines).
async fn generate(bytes: u64) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let buf = vec![0x5au8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left.min(CHUNK as u64))?;
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    out.flush()?;
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// COUNT sequential new connections to an echo service: connect, one byte there and back,
/// timed. The connections go round the comma-separated ADDRS in turn, each after a pause of
/// GAP_MS (untimed; none with 0): with N addresses, each sees a gap of N × GAP_MS between its
/// connections.
async fn latency(addrs: &str, count: usize, gap_ms: u64) -> anyhow::Result<()> {
    let addrs: Vec<&str> = addrs.split(',').collect();
    let mut times = Vec::with_capacity(count);
    let mut errors = 0;
    for i in 0..count {
        let addr = addrs[i % addrs.len()];
        if gap_ms > 0 {
            tokio::time::sleep(Duration::from_millis(gap_ms)).await;
        }
        let start = Instant::now();
        let result = async {
            let mut s = TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            s.write_all(b"x").await?;
            let mut one = [0u8; 1];
            s.read_exact(&mut one).await?;
            Ok::<_, std::io::Error>(())
        }
        .await;
        match result {
            Ok(()) => times.push(start.elapsed()),
            Err(_) => errors += 1,
        }
    }
    times.sort();
    println!(
        "{{\"count\":{count},\"errors\":{errors},\"addresses\":{},\"gap_ms\":{gap_ms},\"p50_ms\":{:.3},\"p99_ms\":{:.3}}}",
        addrs.len(),
        percentile(&times, 0.5),
        percentile(&times, 0.99)
    );
    Ok(())
}

/// Opens COUNT connections to an echo service and keeps them, and prints how many opened;
/// waits for a line on stdin (the caller measures memory meanwhile; EOF does too); then ACTIVE
/// of them exchange a byte every 10 ms for SECONDS; then every connection must still echo a
/// byte. Prints the active phase's errors and how many were still open.
async fn hold(addr: &str, count: usize, active: usize, secs: u64) -> anyhow::Result<()> {
    let mut conns = Vec::with_capacity(count);
    let mut errors = 0usize;
    for _ in 0..count {
        match async {
            let mut s = TcpStream::connect(addr).await?;
            s.write_all(b"x").await?;
            let mut one = [0u8; 1];
            s.read_exact(&mut one).await?;
            Ok::<_, std::io::Error>(s)
        }
        .await
        {
            Ok(s) => conns.push(s),
            Err(e) => {
                if errors < 5 {
                    eprintln!("connection {} failed: {e}", conns.len() + errors);
                }
                errors += 1;
            }
        }
    }
    println!("{{\"opened\":{},\"errors\":{errors}}}", conns.len());
    tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new())).await??;
    let deadline = Instant::now() + Duration::from_secs(secs);
    let busy: Vec<TcpStream> = conns.drain(..active.min(conns.len())).collect();
    let mut tasks = Vec::new();
    for mut s in busy {
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let mut one = [0u8; 1];
                if s.write_all(b"y").await.is_err() || s.read_exact(&mut one).await.is_err() {
                    return (s, 1usize);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (s, 0)
        }));
    }
    let mut active_errors = 0usize;
    for t in tasks {
        match t.await {
            Ok((s, errs)) => {
                active_errors += errs;
                conns.push(s);
            }
            Err(_) => active_errors += 1,
        }
    }
    tokio::time::sleep(deadline.saturating_duration_since(Instant::now())).await;
    let held = conns.len();
    let mut still_open = 0usize;
    for s in &mut conns {
        let mut one = [0u8; 1];
        if s.write_all(b"z").await.is_ok() && s.read_exact(&mut one).await.is_ok() && one == *b"z" {
            still_open += 1;
        }
    }
    println!("{{\"held\":{held},\"active_errors\":{active_errors},\"still_open\":{still_open}}}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sink_count_is_read_only_from_a_whole_answer() {
        assert_eq!(sink_count(b"sink\n1073741824\n"), Some(1 << 30));
        assert_eq!(sink_count(b"sink\n0\n"), Some(0));
        assert_eq!(sink_count(b"sink\n"), None, "no count: the sink failed");
        assert_eq!(sink_count(b"sink\n12"), None, "a cut count");
        assert_eq!(sink_count(b"1024\n"), None, "no greeting");
        assert_eq!(sink_count(b"sink\nsink\n5\n"), None, "a greeting twice");
    }
}
