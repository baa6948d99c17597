#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::net::UnixStream;

use super::*;

fn non_blocking(fd: impl std::os::fd::AsFd) -> bool {
    rustix::fs::fcntl_getfl(fd)
        .unwrap()
        .contains(OFlags::NONBLOCK)
}

#[test]
fn pipes_sockets_and_the_rest_are_told_apart() {
    let (reader, writer) = io::pipe().unwrap();
    assert_eq!(classify(reader.as_fd()), StreamKind::Pipe);
    assert_eq!(classify(writer.as_fd()), StreamKind::Pipe);
    let (a, _b) = UnixStream::pair().unwrap();
    assert_eq!(classify(a.as_fd()), StreamKind::Socket);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    assert_eq!(classify(tcp.as_fd()), StreamKind::Socket);
    let file = tempfile::tempfile().unwrap();
    assert_eq!(classify(file.as_fd()), StreamKind::Other);
    let null = std::fs::File::open("/dev/null").unwrap();
    assert_eq!(classify(null.as_fd()), StreamKind::Other);
}

#[test]
fn a_pipe_is_blocking_again_after_the_connection() {
    let (reader, writer) = io::pipe().unwrap();
    assert!(!non_blocking(&reader));
    let mut restore = RestoreFlags::default();
    restore.push(NonBlocking::set(reader.as_fd()).unwrap());
    restore.push(NonBlocking::set(writer.as_fd()).unwrap());
    // The description is shared: our own, untouched descriptors see the change.
    assert!(non_blocking(&reader) && non_blocking(&writer));
    drop(restore);
    assert!(!non_blocking(&reader) && !non_blocking(&writer));
}

#[test]
fn a_stream_non_blocking_before_stays_so() {
    let (a, _b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    drop(NonBlocking::set(a.as_fd()).unwrap());
    assert!(non_blocking(&a));
}

#[test]
fn one_socket_on_stdin_and_stdout_is_blocking_again() {
    // A socketpair end given as both stdin and stdout: one description, set twice.
    let (a, _b) = UnixStream::pair().unwrap();
    let stdin = a.try_clone().unwrap();
    let stdout = a.try_clone().unwrap();
    let mut restore = RestoreFlags::default();
    restore.push(NonBlocking::set(stdin.as_fd()).unwrap());
    restore.push(NonBlocking::set(stdout.as_fd()).unwrap());
    drop(restore);
    assert!(!non_blocking(&a));
}

#[test]
fn other_flags_set_meanwhile_are_kept() {
    let file = tempfile::tempfile().unwrap();
    let guard = NonBlocking::set(file.as_fd()).unwrap();
    let flags = rustix::fs::fcntl_getfl(&file).unwrap();
    rustix::fs::fcntl_setfl(&file, flags | OFlags::APPEND).unwrap();
    drop(guard);
    let flags = rustix::fs::fcntl_getfl(&file).unwrap();
    assert!(flags.contains(OFlags::APPEND) && !flags.contains(OFlags::NONBLOCK));
}

#[tokio::test(flavor = "current_thread")]
async fn a_driven_pipe_and_socket_carry_bytes_and_name_a_failed_stdout() {
    let (reader, writer) = io::pipe().unwrap();
    let (mut rx, _guard) = driven(reader.as_fd(), "stdin", |kind, fd| {
        assert_eq!(kind, StreamKind::Pipe);
        tokio::net::unix::pipe::Receiver::from_owned_fd(fd)
    })
    .unwrap();
    let (a, b) = UnixStream::pair().unwrap();
    let (tx, _guard_a) = driven(a.as_fd(), "stdout", |kind, fd| {
        assert_eq!(kind, StreamKind::Socket);
        socket(fd)
    })
    .unwrap();
    let mut tx = DrivenStdout {
        inner: tx.into_write(),
    };
    std::thread::spawn(move || (&writer).write_all(b"through the pipe").unwrap());
    let mut got = Vec::new();
    rx.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"through the pipe");

    tx.write_all(&got).await.unwrap();
    tx.shutdown().await.unwrap();
    let mut back = vec![0u8; got.len()];
    (&b).read_exact(&mut back).unwrap();
    assert_eq!(back, got);
    drop(b); // The reader went away: the next writes fail, naming stdout.
    let err = loop {
        if let Err(err) = tx.write_all(&[0u8; 4096]).await {
            break err;
        }
    };
    assert!(
        err.to_string().starts_with("cannot write to stdout: "),
        "{err}"
    );
    assert!(matches!(
        err.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    ));
}
