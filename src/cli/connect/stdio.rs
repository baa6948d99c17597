//! `--stdio`: one connection carried over stdin and stdout (for ssh's `ProxyCommand`).
//! Nothing but the proxied bytes is written to stdout.
//!
//! A stdin or stdout that is a pipe or a socket (the usual case: a `ProxyCommand`, a shell
//! pipeline) is driven by the runtime itself with non-blocking I/O on a duplicate of its
//! descriptor: each chunk goes straight between the pipe and the TLS stream. O_NONBLOCK
//! belongs to the open file description, which other processes may share (`(portcullis
//! connect x --stdio; cat more) | consumer`), so it is put back as it was when the
//! connection ends, on every path out.
//!
//! Anything else (a terminal, a regular file, /dev/null) cannot wait in the runtime and is
//! served by a plain thread joined to the connection through an in-memory pipe. A blocking
//! read of stdin parked in tokio's blocking pool would keep the runtime, and so the
//! process, alive after the connection ended; a detached thread does not. The stdout thread
//! is waited for, so every byte received is written before exit.

use std::io::{self, Read as _, Write as _};
use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use anyhow::Context as _;
use rustix::fs::{FileType, OFlags};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use super::tunnel::{SessionTicket, Transfer};

const PIPE_BUFFER: usize = 64 * 1024;

type BoxedRead = Box<dyn AsyncRead + Send + Unpin>;
type BoxedWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// Opens one connection of the session and splices it with stdin/stdout until both
/// directions end (stdin's EOF is passed on as a half-close, and so is the worker's). What
/// stdin holds by the time the worker is reached goes with the hello.
pub(super) async fn carry_stdio(ticket: &SessionTicket) -> anyhow::Result<Transfer> {
    let mut streams = StdStreams::open()?;
    let mut early = Vec::new();
    let connection = ticket.open_with(&mut streams.stdin, &mut early).await?;
    tracing::debug!(connection.id = %connection.id, "connection accepted by the worker");
    let mut transfer = streams.carry(connection.into_stream()).await?;
    transfer.up += early.len() as u64;
    Ok(transfer)
}

/// Splices `stream` (to the worker, or to the `portcullis run` relaying one) with
/// stdin/stdout, as [`carry_stdio`] does.
pub(super) async fn carry_stdio_on<S>(stream: S) -> anyhow::Result<Transfer>
where
    S: AsyncRead + AsyncWrite,
{
    StdStreams::open()?.carry(stream).await
}

/// Stdin and stdout ready to carry a connection, and the flags to restore after it.
struct StdStreams {
    stdin: BoxedRead,
    stdout: BoxedWrite,
    /// Tells when the stdout thread has written everything, if there is one.
    written: Option<oneshot::Receiver<io::Result<()>>>,
    // Dropped last: whatever happens, the flags are restored when the connection ends.
    _restore: RestoreFlags,
}

impl StdStreams {
    fn open() -> anyhow::Result<Self> {
        let mut restore = RestoreFlags::default();
        let stdin = match driven_stdin(&mut restore) {
            Some(stdin) => stdin,
            None => Box::new(stdin_thread()?),
        };
        let (stdout, written): (BoxedWrite, _) = match driven_stdout(&mut restore) {
            Some(stdout) => (stdout, None),
            None => {
                let (stdout, written) = stdout_thread()?;
                (Box::new(stdout), Some(written))
            }
        };
        Ok(Self {
            stdin,
            stdout,
            written,
            _restore: restore,
        })
    }

    async fn carry<S>(self, stream: S) -> anyhow::Result<Transfer>
    where
        S: AsyncRead + AsyncWrite,
    {
        let Self {
            stdin,
            stdout,
            written,
            _restore,
        } = self;
        let transfer = super::tunnel::splice(stream, stdin, stdout).await?;
        // The splice ended after handing the last bytes to the stdout thread: wait until
        // they are out. (Driven by the runtime, they are already written.)
        if let Some(written) = written {
            if let Ok(Err(err)) = written.await {
                return Err(err).context("cannot write to stdout");
            }
        }
        Ok(transfer)
    }
}

/// What a standard stream is open on, which decides how it is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamKind {
    /// A pipe or FIFO: driven by the runtime.
    Pipe,
    /// A socket (some `ProxyCommand` runners pass a socketpair): driven by the runtime.
    Socket,
    /// A terminal, a regular file, a device: served by a thread.
    Other,
}

fn classify(fd: BorrowedFd<'_>) -> StreamKind {
    match rustix::fs::fstat(fd).map(|stat| FileType::from_raw_mode(stat.st_mode)) {
        Ok(FileType::Fifo) => StreamKind::Pipe,
        Ok(FileType::Socket) => StreamKind::Socket,
        _ => StreamKind::Other,
    }
}

/// Stdin as a runtime-driven reader, or `None` when it needs the thread.
fn driven_stdin(restore: &mut RestoreFlags) -> Option<BoxedRead> {
    let stdin = io::stdin();
    let (reader, guard) = driven(stdin.as_fd(), "stdin", |kind, fd| match kind {
        StreamKind::Pipe => {
            Ok(Box::new(tokio::net::unix::pipe::Receiver::from_owned_fd(fd)?) as BoxedRead)
        }
        _ => socket(fd).map(|socket| socket.into_read()),
    })?;
    restore.push(guard);
    Some(Box::new(DrivenStdin {
        inner: reader,
        ended: false,
    }))
}

/// Stdout as a runtime-driven writer, or `None` when it needs the thread.
fn driven_stdout(restore: &mut RestoreFlags) -> Option<BoxedWrite> {
    let stdout = io::stdout();
    let (writer, guard) = driven(stdout.as_fd(), "stdout", |kind, fd| match kind {
        StreamKind::Pipe => {
            Ok(Box::new(tokio::net::unix::pipe::Sender::from_owned_fd(fd)?) as BoxedWrite)
        }
        _ => socket(fd).map(|socket| socket.into_write()),
    })?;
    restore.push(guard);
    Some(Box::new(DrivenStdout { inner: writer }))
}

/// Makes a duplicate of `fd` non-blocking and hands it to `open` if it is a pipe or a
/// socket. Any failure leaves the flags as they were and asks for the thread instead.
fn driven<T>(
    fd: BorrowedFd<'_>,
    name: &str,
    open: impl FnOnce(StreamKind, OwnedFd) -> io::Result<T>,
) -> Option<(T, NonBlocking)> {
    let kind = classify(fd);
    if kind == StreamKind::Other {
        tracing::debug!(stream = name, "served by a thread");
        return None;
    }
    let attempt = NonBlocking::set(fd).and_then(|guard| {
        let io = open(kind, fd.try_clone_to_owned()?)?;
        Ok((io, guard))
    });
    match attempt {
        Ok(driven) => {
            tracing::debug!(stream = name, ?kind, "driven by the runtime");
            Some(driven)
        }
        Err(err) => {
            tracing::debug!(stream = name, ?kind, error = %err, "served by a thread");
            None
        }
    }
}

/// A connected socket on stdin or stdout, as the runtime's stream of its family.
enum Socket {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

impl Socket {
    fn into_read(self) -> BoxedRead {
        match self {
            Socket::Unix(stream) => Box::new(stream),
            Socket::Tcp(stream) => Box::new(stream),
        }
    }

    fn into_write(self) -> BoxedWrite {
        match self {
            Socket::Unix(stream) => Box::new(stream),
            Socket::Tcp(stream) => Box::new(stream),
        }
    }
}

/// Expects `fd` non-blocking already. Other families (vsock, …) are left to the thread.
fn socket(fd: OwnedFd) -> io::Result<Socket> {
    let unix = std::os::unix::net::UnixStream::from(fd);
    if unix.local_addr().is_ok() {
        return tokio::net::UnixStream::from_std(unix).map(Socket::Unix);
    }
    let tcp = std::net::TcpStream::from(OwnedFd::from(unix));
    tcp.local_addr()?;
    tokio::net::TcpStream::from_std(tcp).map(Socket::Tcp)
}

/// Stdin driven by the runtime. A failed read ends stdin like EOF, with a word on stderr,
/// as the thread does: the reply keeps flowing.
struct DrivenStdin {
    inner: BoxedRead,
    ended: bool,
}

impl AsyncRead for DrivenStdin {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.ended {
            return Poll::Ready(Ok(()));
        }
        if let Err(err) = ready!(Pin::new(&mut self.inner).poll_read(cx, buf)) {
            eprintln!("cannot read stdin: {err}");
            self.ended = true;
        }
        Poll::Ready(Ok(()))
    }
}

/// Stdout driven by the runtime. Its errors say that stdout failed (not the worker), and
/// the end of the reply leaves it open as the thread does: a socket on stdout is not shut
/// down under a process that may share it.
struct DrivenStdout {
    inner: BoxedWrite,
}

impl DrivenStdout {
    fn name(result: io::Result<usize>) -> io::Result<usize> {
        result.map_err(|err| io::Error::new(err.kind(), format!("cannot write to stdout: {err}")))
    }
}

impl AsyncWrite for DrivenStdout {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner)
            .poll_write(cx, buf)
            .map(DrivenStdout::name)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

/// O_NONBLOCK set on an open file description, and whether it was set before.
struct NonBlocking {
    fd: OwnedFd,
    was_set: bool,
}

impl NonBlocking {
    fn set(fd: BorrowedFd<'_>) -> io::Result<Self> {
        let fd = fd.try_clone_to_owned()?;
        let flags = rustix::fs::fcntl_getfl(&fd)?;
        rustix::fs::fcntl_setfl(&fd, flags | OFlags::NONBLOCK)?;
        let was_set = flags.contains(OFlags::NONBLOCK);
        Ok(Self { fd, was_set })
    }

    fn restore(&self) -> io::Result<()> {
        // Only our bit goes back: another holder may have changed the others meanwhile.
        let flags = rustix::fs::fcntl_getfl(&self.fd)?;
        let flags = if self.was_set {
            flags | OFlags::NONBLOCK
        } else {
            flags - OFlags::NONBLOCK
        };
        Ok(rustix::fs::fcntl_setfl(&self.fd, flags)?)
    }
}

impl Drop for NonBlocking {
    fn drop(&mut self) {
        if let Err(err) = self.restore() {
            tracing::debug!(error = %err, "cannot restore the flags of a standard stream");
        }
    }
}

/// The flags changed for this connection, restored on drop in the reverse order of their
/// setting: stdin and stdout may share one description (a socket), and the last one set
/// saw the first one's change.
#[derive(Default)]
struct RestoreFlags(Vec<NonBlocking>);

impl RestoreFlags {
    fn push(&mut self, guard: NonBlocking) {
        self.0.push(guard);
    }
}

impl Drop for RestoreFlags {
    fn drop(&mut self) {
        while let Some(guard) = self.0.pop() {
            drop(guard);
        }
    }
}

/// Stdin, read on its own thread.
fn stdin_thread() -> anyhow::Result<tokio::io::DuplexStream> {
    let (reader, mut writer) = tokio::io::duplex(PIPE_BUFFER);
    let runtime = Handle::current();
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut stdin = io::stdin().lock();
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
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
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
fn stdout_thread() -> anyhow::Result<(tokio::io::DuplexStream, oneshot::Receiver<io::Result<()>>)> {
    let (mut reader, writer) = tokio::io::duplex(PIPE_BUFFER);
    let (done_tx, done_rx) = oneshot::channel();
    let runtime = Handle::current();
    std::thread::Builder::new()
        .name("stdout".into())
        .spawn(move || {
            let mut stdout = io::stdout().lock();
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

#[cfg(test)]
mod tests;
