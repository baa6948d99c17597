//! The entry point of the fuzz target `sftp_tracker`.

use portcullis_proto::recording::Event;

use super::{SftpTracker, MAX_PATH};

/// The fuzz target `sftp_tracker` (see `fuzz/README.md`): `data` is a sequence of records,
/// each a byte (its low bit the direction, the rest the record's length) and that many bytes
/// of channel data, fed to one tracker; no input may panic it. Fed again one byte at a time,
/// the same input must give the same events, and events end when the tracker gives up.
pub(crate) fn fuzz_streams(data: &[u8]) {
    let whole = fuzz_run(data, usize::MAX);
    let bytewise = fuzz_run(data, 1);
    assert_eq!(
        whole, bytewise,
        "the events depend on how the bytes were split"
    );
}

pub(super) fn fuzz_run(mut data: &[u8], piece: usize) -> Vec<Event> {
    let mut tracker = SftpTracker::new();
    let mut events = Vec::new();
    while let Some((&head, rest)) = data.split_first() {
        let len = usize::from(head >> 1).min(rest.len());
        let (record, rest) = rest.split_at(len);
        data = rest;
        for piece in record.chunks(piece) {
            let gave_up = tracker.gave_up().is_some();
            let new = if head & 1 == 0 {
                tracker.from_client(piece)
            } else {
                tracker.from_server(piece)
            };
            assert!(!gave_up || new.is_empty(), "events after giving up");
            events.extend(new);
        }
    }
    events.extend(tracker.finish());
    assert!(tracker.finish().is_empty(), "events after finish");
    for event in &events {
        if let Event::Sftp { path, to, .. } = event {
            for path in std::iter::once(path).chain(to) {
                assert!(path.len() <= 3 * MAX_PATH + 3, "a path longer than the cap");
            }
        }
    }
    events
}
