//! `portcullis-bench scaling ...`: the load of the scaling table (`BENCH_ONLY=scaling
//! scripts/bench`). N connections open at once, then either move their shares of a fixed
//! number of bytes to the sink at the same time, or time small echo round trips at the same
//! time. Each first opens every connection and prints how many opened; it starts the measured
//! phase on a line on stdin (the caller waits for the daemons to go quiet, and reads their CPU
//! time, meanwhile; EOF starts it too) and prints one JSON line with what it measured.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::{percentile, sink_count, GREETING};

/// How long one connection may take to open (and be greeted, or echo its first message)
/// before it counts as an error.
const OPEN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the measured phase may take before the connections still at it count as errors.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);
/// How many connections may be opening at once: a burst through one `connect --listen-port`
/// opens that many TLS connections to the worker from one address, and the worker closes
/// any beyond `max_handshakes_per_source` (64 by default) at once.
const OPEN_AT_ONCE: usize = 32;
/// The size of each write of the bulk transfer; one buffer shared by every connection.
const WRITE: usize = 256 << 10;
/// The byte every echo message is made of.
const ECHO_BYTE: u8 = 0x65;

pub(crate) async fn main(args: &[&str]) -> anyhow::Result<()> {
    match args {
        ["send", addr, conns, bytes] => send(addr, conns.parse()?, bytes.parse()?).await,
        ["echo", addr, conns, rounds, size] => {
            echo(addr, conns.parse()?, rounds.parse()?, size.parse()?).await
        }
        _ => bail!(
            "usage: portcullis-bench scaling send ADDR CONNS TOTAL_BYTES | \
             scaling echo ADDR CONNS ROUNDS SIZE"
        ),
    }
}

/// The bytes connection `i` of `conns` sends: `total` split as evenly as whole bytes allow
/// (the first `total % conns` carry one more), so that the shares add up to `total`.
fn share(total: u64, conns: usize, i: usize) -> u64 {
    let n = conns.max(1) as u64;
    total / n + u64::from((i as u64) < total % n)
}

/// What makes a new connection ready for the measured phase.
#[derive(Clone, Copy)]
enum Ready {
    /// The sink's greeting read: the path to the sink is up.
    Greeted,
    /// One echo round trip of this many bytes: the path to the echo target is up.
    Echoed(usize),
}

async fn open_one(addr: String, ready: Ready) -> anyhow::Result<TcpStream> {
    let mut s = TcpStream::connect(&addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    s.set_nodelay(true)?;
    match ready {
        Ready::Greeted => super::read_greeting(&mut s).await?,
        Ready::Echoed(size) => round_trip(&mut s, &vec![ECHO_BYTE; size]).await?,
    }
    Ok(s)
}

/// Opens `conns` connections to `addr`, OPEN_AT_ONCE at a time, each made ready (`ready`)
/// within OPEN_TIMEOUT; the ones that opened, and how many did not (the first reasons on
/// stderr).
async fn open_all(addr: &str, conns: usize, ready: Ready) -> (Vec<TcpStream>, usize) {
    let gate = Arc::new(Semaphore::new(OPEN_AT_ONCE));
    let mut opening = JoinSet::new();
    for _ in 0..conns {
        let (addr, gate) = (addr.to_owned(), gate.clone());
        opening.spawn(async move {
            let _turn = gate.acquire_owned().await?;
            tokio::time::timeout(OPEN_TIMEOUT, open_one(addr, ready))
                .await
                .context("timed out")?
        });
    }
    let mut open = Vec::with_capacity(conns);
    let mut errors = 0;
    while let Some(joined) = opening.join_next().await {
        match joined.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok(s) => open.push(s),
            Err(e) => {
                if errors < 5 {
                    eprintln!("a connection did not open: {e:#}");
                }
                errors += 1;
            }
        }
    }
    (open, errors)
}

/// Prints how many opened, then waits for the go (a line on stdin, or EOF).
async fn opened_then_wait(open: usize, errors: usize) -> anyhow::Result<()> {
    println!("{{\"opened\":{open},\"errors\":{errors}}}");
    tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new())).await??;
    Ok(())
}

/// Writes `bytes` (from the shared `buf`), half-closes, and reads the sink's count.
async fn transfer(mut s: TcpStream, bytes: u64, buf: Arc<[u8]>) -> anyhow::Result<Option<u64>> {
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left.min(buf.len() as u64))?;
        s.write_all(&buf[..n]).await?;
        left -= n as u64;
    }
    s.shutdown().await?;
    let mut reply = GREETING.to_vec();
    s.read_to_end(&mut reply).await?;
    Ok(sink_count(&reply))
}

/// CONNS connections to the sink at ADDR at once; once all are greeted (and the go came),
/// each sends its share of TOTAL_BYTES at the same time, timed from the go to the last
/// count. Prints the bytes sent and what the sinks counted in all, the connections whose
/// count was not their share (`miscounted`) or that failed (`errors`), the aggregate MiB/s
/// and when the connections finished (p50 and last, seconds after the go: how evenly they
/// were served).
async fn send(addr: &str, conns: usize, total: u64) -> anyhow::Result<()> {
    let (open, mut errors) = open_all(addr, conns, Ready::Greeted).await;
    opened_then_wait(open.len(), errors).await?;
    let buf: Arc<[u8]> = vec![0x5au8; WRITE].into();
    let sent: u64 = (0..open.len()).map(|i| share(total, conns, i)).sum();
    let start = Instant::now();
    let mut running = JoinSet::new();
    for (i, s) in open.into_iter().enumerate() {
        let (bytes, buf) = (share(total, conns, i), buf.clone());
        running.spawn(async move {
            let counted = tokio::time::timeout(RUN_TIMEOUT, transfer(s, bytes, buf)).await;
            (bytes, counted, start.elapsed())
        });
    }
    let (mut received, mut miscounted) = (0u64, 0usize);
    let mut finished = Vec::with_capacity(conns);
    while let Some(joined) = running.join_next().await {
        match joined {
            Ok((bytes, Ok(Ok(counted)), at)) => {
                received += counted.unwrap_or(0);
                miscounted += usize::from(counted != Some(bytes));
                finished.push(at);
            }
            Ok((_, Ok(Err(e)), _)) => {
                if errors < 5 {
                    eprintln!("a transfer failed: {e:#}");
                }
                errors += 1;
            }
            Ok((_, Err(_), _)) | Err(_) => errors += 1,
        }
    }
    let secs = start.elapsed().as_secs_f64();
    finished.sort();
    println!(
        "{{\"conns\":{conns},\"bytes\":{total},\"sent\":{sent},\"received\":{received},\
         \"miscounted\":{miscounted},\"errors\":{errors},\"seconds\":{secs:.4},\
         \"mib_per_s\":{:.1},\"finished_p50_s\":{:.4},\"finished_last_s\":{:.4}}}",
        sent as f64 / secs / 1048576.0,
        percentile(&finished, 0.5) / 1000.0,
        percentile(&finished, 1.0) / 1000.0,
    );
    Ok(())
}

/// Sends `msg` and reads it back: an error unless the same bytes come back.
async fn round_trip(s: &mut TcpStream, msg: &[u8]) -> anyhow::Result<()> {
    s.write_all(msg).await?;
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).await?;
    if back != msg {
        bail!("the echo sent back other bytes than it was sent");
    }
    Ok(())
}

/// ROUNDS round trips of `msg` on one connection, each timed.
async fn rounds(mut s: TcpStream, rounds: usize, msg: Arc<[u8]>) -> anyhow::Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t0 = Instant::now();
        round_trip(&mut s, &msg).await?;
        times.push(t0.elapsed());
    }
    Ok(times)
}

/// CONNS connections to the echo service at ADDR at once, each ready after one untimed round
/// trip; after the go, each makes ROUNDS round trips of SIZE bytes, one after the other, all
/// connections at the same time. Prints the round trips made, the connections that failed
/// (`errors`: any failed round trip, or echoed bytes that differ), round trips per second
/// in all, and the p50, p99 and longest round trip.
async fn echo(addr: &str, conns: usize, rounds_each: usize, size: usize) -> anyhow::Result<()> {
    let (open, mut errors) = open_all(addr, conns, Ready::Echoed(size)).await;
    opened_then_wait(open.len(), errors).await?;
    let msg: Arc<[u8]> = vec![ECHO_BYTE; size].into();
    let start = Instant::now();
    let mut running = JoinSet::new();
    for s in open {
        let msg = msg.clone();
        running.spawn(tokio::time::timeout(
            RUN_TIMEOUT,
            rounds(s, rounds_each, msg),
        ));
    }
    let mut times = Vec::with_capacity(conns * rounds_each);
    while let Some(joined) = running.join_next().await {
        match joined {
            Ok(Ok(Ok(t))) => times.extend(t),
            Ok(Ok(Err(e))) => {
                if errors < 5 {
                    eprintln!("a connection's round trips failed: {e:#}");
                }
                errors += 1;
            }
            Ok(Err(_)) | Err(_) => errors += 1,
        }
    }
    let secs = start.elapsed().as_secs_f64();
    times.sort();
    println!(
        "{{\"conns\":{conns},\"round_trips\":{},\"errors\":{errors},\"seconds\":{secs:.4},\
         \"per_s\":{:.1},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3}}}",
        times.len(),
        times.len() as f64 / secs,
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        percentile(&times, 1.0),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shares_add_up_to_the_total_and_differ_by_at_most_a_byte() {
        for (total, conns) in [
            (1u64 << 28, 1usize),
            (1 << 28, 10),
            (1 << 28, 1000),
            (7, 3),
            (2, 5),
        ] {
            let shares: Vec<u64> = (0..conns).map(|i| share(total, conns, i)).collect();
            assert_eq!(shares.iter().sum::<u64>(), total, "{total} over {conns}");
            let (min, max) = (shares.iter().min(), shares.iter().max());
            assert!(max.zip(min).is_some_and(|(a, b)| a - b <= 1), "{shares:?}");
        }
        assert_eq!(share(7, 3, 0), 3);
        assert_eq!(share(7, 3, 2), 2);
    }

    #[tokio::test]
    async fn a_relay_that_truncates_shows_in_the_counts() {
        // A sink that counts at most 1,000 bytes per connection, as a truncating relay's
        // far end would see it.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    s.write_all(GREETING).await.unwrap();
                    let mut buf = vec![0u8; 4096];
                    let mut total = 0u64;
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        total += n as u64;
                    }
                    let _ = s
                        .write_all(format!("{}\n", total.min(1000)).as_bytes())
                        .await;
                });
            }
        });
        let (open, errors) = open_all(&addr.to_string(), 3, Ready::Greeted).await;
        assert_eq!((open.len(), errors), (3, 0));
        let buf: Arc<[u8]> = vec![0u8; 4096].into();
        let mut counts = Vec::new();
        for (s, bytes) in open.into_iter().zip([10u64, 1000, 5000]) {
            counts.push(transfer(s, bytes, buf.clone()).await.unwrap());
        }
        assert_eq!(counts, [Some(10), Some(1000), Some(1000)]);
    }
}
