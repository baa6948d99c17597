//! `--stdio`: one connection carried over stdin and stdout (for ssh's `ProxyCommand`).
//! Nothing but the proxied bytes is written to stdout.
//!
//! Stdin and stdout are served by two plain threads joined to the connection through
//! in-memory pipes. A blocking read of stdin parked in tokio's blocking pool would keep the
//! runtime, and so the process, alive after the connection ended; a detached thread does
//! not. The stdout thread is waited for, so every byte received is written before exit.

use std::io::{Read as _, Write as _};

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use super::tunnel::{SessionTicket, Transfer};

const PIPE_BUFFER: usize = 64 * 1024;

/// Opens one connection of the session and splices it with stdin/stdout until both
/// directions end (stdin's EOF is passed on as a half-close, and so is the worker's).
pub async fn carry_stdio(ticket: &SessionTicket) -> anyhow::Result<Transfer> {
    let connection = ticket.open().await?;
    tracing::debug!(connection.id = %connection.id, "connection accepted by the worker");
    let stdin = stdin_pipe()?;
    let (stdout, written) = stdout_pipe()?;
    let transfer = connection.splice(stdin, stdout).await?;
    // The splice ended after handing the last bytes to the pipe: wait until they are out.
    if let Ok(Err(err)) = written.await {
        return Err(err).context("cannot write to stdout");
    }
    Ok(transfer)
}

/// Stdin, read on its own thread.
fn stdin_pipe() -> anyhow::Result<DuplexStream> {
    let (reader, mut writer) = tokio::io::duplex(PIPE_BUFFER);
    let runtime = Handle::current();
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0u8; PIPE_BUFFER / 2];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        // Fails only when the connection is gone: stop reading then.
                        if runtime.block_on(writer.write_all(&buf[..n])).is_err() {
                            return;
                        }
                    }
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(err) => {
                        eprintln!("cannot read stdin: {err}");
                        break;
                    }
                }
            }
            let _ = runtime.block_on(writer.shutdown());
        })
        .context("cannot start the stdin reader")?;
    Ok(reader)
}

/// Stdout, written on its own thread; the receiver reports when all is written (or failed).
fn stdout_pipe() -> anyhow::Result<(DuplexStream, oneshot::Receiver<std::io::Result<()>>)> {
    let (mut reader, writer) = tokio::io::duplex(PIPE_BUFFER);
    let (done_tx, done_rx) = oneshot::channel();
    let runtime = Handle::current();
    std::thread::Builder::new()
        .name("stdout".into())
        .spawn(move || {
            let mut stdout = std::io::stdout().lock();
            let mut buf = vec![0u8; PIPE_BUFFER / 2];
            let result = loop {
                match runtime.block_on(reader.read(&mut buf)) {
                    Ok(0) => break stdout.flush(),
                    Ok(n) => {
                        if let Err(err) = stdout.write_all(&buf[..n]).and_then(|()| stdout.flush())
                        {
                            break Err(err);
                        }
                    }
                    Err(err) => break Err(err),
                }
            };
            // Dropping the reader tells the splice that stdout is gone, if it failed.
            drop(reader);
            let _ = done_tx.send(result);
        })
        .context("cannot start the stdout writer")?;
    Ok((writer, done_rx))
}
