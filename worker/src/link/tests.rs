use portcullis_proto::link::Frame;
use tokio::io::DuplexStream;

use super::*;
use crate::chunks::ChunkName;

/// The request in the next frame the controller's end reads.
async fn next_request(controller: &mut Framed<DuplexStream, LengthDelimitedCodec>) -> Request {
    let frame = controller.next().await.unwrap().unwrap();
    match serde_json::from_slice::<Frame>(&frame).unwrap() {
        Frame::Request { body, .. } => body,
        other => panic!("not a request: {other:?}"),
    }
}

fn is_marker(request: &Request) -> bool {
    matches!(request, Request::Heartbeat { .. })
}

#[tokio::test]
async fn chunks_are_sent_only_when_no_other_request_waits_and_none_are_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Shared::for_tests(dir.path());
    for seq in 0..2 {
        let name = ChunkName {
            session_id: "s_1".into(),
            connection_id: "c_1".into(),
            recording_id: "c_1".into(),
            seq,
        };
        shared
            .chunks
            .write(name, vec![b'x'; 300 * 1024])
            .await
            .unwrap();
    }
    let (worker_io, controller_io) = tokio::io::duplex(4 << 20);
    let mut link = Link {
        shared: &shared,
        stream: Framed::new(worker_io, link::codec()),
        peer: Peer::new(Role::Worker, SILENCE, Instant::now()),
    };
    let mut controller = Framed::new(controller_io, link::codec());
    // A marker the worker sends after each attempt: what comes before it was sent by it.
    async fn marker<S: LinkIo>(link: &mut Link<'_, S>) {
        let heartbeat = protocol::heartbeat(link.shared);
        link.ask(heartbeat, Awaits::Heartbeat, None).await.unwrap();
    }

    // Another task's request waits: no chunks.
    let (tx, mut rx) = mpsc::channel::<Outgoing>(4);
    let (reply, _answer) = tokio::sync::oneshot::channel();
    tx.send(Outgoing {
        body: Request::Ping,
        reply,
        timeout: Duration::from_secs(5),
    })
    .await
    .unwrap();
    link.send_chunks(&rx).await.unwrap();
    marker(&mut link).await;
    assert!(is_marker(&next_request(&mut controller).await));

    // Nothing waits: a batch, under the frame's budget (one 300 KiB chunk of the two).
    let _ = rx.recv().await.unwrap();
    link.send_chunks(&rx).await.unwrap();
    match next_request(&mut controller).await {
        Request::RecordingChunks { chunks } => {
            assert_eq!(chunks.len(), 1);
            assert_eq!((chunks[0].recording_id.as_str(), chunks[0].seq), ("c_1", 0));
        }
        other => panic!("expected chunks, got {other:?}"),
    }

    // A batch in flight: no second one.
    link.send_chunks(&rx).await.unwrap();
    marker(&mut link).await;
    assert!(is_marker(&next_request(&mut controller).await));
}

#[tokio::test]
async fn the_controllers_answers_drop_stored_chunks_and_keep_the_rest() {
    use portcullis_proto::recording::{ChunkAck, ChunkOutcome};
    let dir = tempfile::tempdir().unwrap();
    let shared = Shared::for_tests(dir.path());
    for seq in 0..2 {
        let name = ChunkName {
            session_id: "s_1".into(),
            connection_id: "c_1".into(),
            recording_id: "c_1".into(),
            seq,
        };
        shared.chunks.write(name, b"chunk".to_vec()).await.unwrap();
    }
    // A controller of an earlier release: an error, every chunk kept.
    let old = Response::error("workers do not serve this request");
    protocol::answered(&shared, Awaits::Chunks, old);
    assert_eq!(shared.chunks.len(), 2);
    // A timed-out batch: kept too.
    protocol::failed(Awaits::Chunks, LinkError::Closed);
    assert_eq!(shared.chunks.len(), 2);
    let acks = vec![
        ChunkAck {
            recording_id: "c_1".into(),
            seq: 0,
            outcome: ChunkOutcome::Stored,
        },
        ChunkAck {
            recording_id: "c_1".into(),
            seq: 1,
            outcome: ChunkOutcome::Later {
                reason: "an earlier chunk has not arrived".into(),
            },
        },
    ];
    protocol::answered(&shared, Awaits::Chunks, Response::ChunksStored { acks });
    assert_eq!(shared.chunks.len(), 1);
    assert_eq!(shared.chunks.batch()[0].seq, 1);
}
