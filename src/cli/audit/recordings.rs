//! `audit verify` on the live store also checks recordings: for every recording head sealed
//! in the events it walked (`recording_checkpoint`, `recording_finished`), the stored chunks
//! must chain up to that head. An altered, missing or unreadable chunk fails the verify,
//! naming the recording and the chunk. Without `recordings:read` the recordings are not
//! checked, and the report says so rather than failing.

use std::collections::{BTreeMap, BTreeSet};

use portcullis_proto::recording::StoredChunk;
use serde::Serialize;
use serde_json::Value;

use crate::cli::http::{ApiClient, ApiError};
use crate::cli::recordings::check::{check, State};
use crate::cli::recordings::seal::{RecordingEvent, Seal};
use crate::cli::sessions::recordings::all_chunks;

/// The recording events of the walked chain, by (session, recording).
#[derive(Debug, Default)]
pub(super) struct SealedHeads {
    seals: BTreeMap<(String, String), Vec<Seal>>,
    deleted: BTreeSet<(String, String)>,
    /// Recording events whose fields this CLI cannot read.
    unreadable: Vec<String>,
}

impl SealedHeads {
    /// Notes `event` if it seals or deletes a recording (call it for verified events only).
    pub(super) fn push(&mut self, event: &Value) {
        match RecordingEvent::of(event) {
            None => {}
            Some(Ok(RecordingEvent::Sealed(seal))) => {
                let key = (seal.session_id.clone(), seal.recording_id.clone());
                self.seals.entry(key).or_default().push(seal);
            }
            Some(Ok(RecordingEvent::Deleted {
                session_id,
                recording_id,
            })) => {
                self.deleted.insert((session_id, recording_id));
            }
            Some(Err(why)) => self.unreadable.push(format!(
                "event {}: {why}",
                event.get("sequence").unwrap_or(&Value::Null)
            )),
        }
    }
}

/// What checking the recordings found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub(super) enum RecordingsCheck {
    /// Every sealed recording still stored reaches its sealed heads.
    Checked {
        recordings: usize,
        /// Of those, how many have chunks after their newest seal or no final chunk yet.
        incomplete: usize,
        /// Sealed recordings the retention deleted since (audited), not checked.
        deleted: usize,
    },
    /// The recordings could not be read.
    NotChecked { recordings: usize, why: String },
    /// A recording does not reach a head sealed in the audit log.
    Failed {
        session_id: String,
        recording_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        chunk: Option<u64>,
        why: String,
    },
}

/// Fetches and checks every sealed recording still stored.
pub(super) async fn check_sealed(api: &ApiClient, heads: &SealedHeads) -> RecordingsCheck {
    check_sealed_from(
        heads,
        async |session: &str, recording: &str, enough: u64| {
            all_chunks(api, session, recording, Some(enough)).await
        },
    )
    .await
}

/// [`check_sealed`] with the chunks from `fetch(session, recording, enough)`, which returns
/// at least the first `enough` stored chunks (all there are, if fewer).
async fn check_sealed_from(
    heads: &SealedHeads,
    mut fetch: impl AsyncFnMut(&str, &str, u64) -> anyhow::Result<Vec<StoredChunk>>,
) -> RecordingsCheck {
    if let Some(why) = heads.unreadable.first() {
        return RecordingsCheck::Failed {
            session_id: String::new(),
            recording_id: String::new(),
            chunk: None,
            why: format!("a recording event this CLI cannot read ({why}): upgrade portcullis"),
        };
    }
    let mut checked = 0;
    let mut incomplete = 0;
    let mut deleted = 0;
    for ((session, recording), seals) in &heads.seals {
        if heads
            .deleted
            .contains(&(session.clone(), recording.clone()))
        {
            deleted += 1;
            continue;
        }
        let newest = seals.iter().map(|s| s.chunks).max().unwrap_or(0);
        let chunks = match fetch(session, recording, newest).await {
            Ok(chunks) => chunks,
            Err(err) => {
                let status = err
                    .chain()
                    .find_map(|cause| cause.downcast_ref::<ApiError>())
                    .map(|e| e.status);
                return match status {
                    Some(403) => RecordingsCheck::NotChecked {
                        recordings: heads.seals.len(),
                        why: "reading recordings needs the permission recordings:read".into(),
                    },
                    Some(404) => RecordingsCheck::Failed {
                        session_id: session.clone(),
                        recording_id: recording.clone(),
                        chunk: None,
                        why: "the store no longer holds this sealed recording, and no \
                              recording_deleted event says the retention removed it"
                            .into(),
                    },
                    _ => RecordingsCheck::NotChecked {
                        recordings: heads.seals.len(),
                        why: format!("{err:#}"),
                    },
                };
            }
        };
        let report = check(&chunks, &seals.iter().collect::<Vec<_>>());
        match report.state {
            State::Broken => {
                return RecordingsCheck::Failed {
                    session_id: session.clone(),
                    recording_id: recording.clone(),
                    chunk: report.broken_at,
                    why: report.why.unwrap_or_default(),
                }
            }
            State::Incomplete => incomplete += 1,
            State::Complete => {}
        }
        checked += 1;
    }
    RecordingsCheck::Checked {
        recordings: checked,
        incomplete,
        deleted,
    }
}

impl RecordingsCheck {
    pub(super) fn failed(&self) -> bool {
        matches!(self, RecordingsCheck::Failed { .. })
    }

    /// A line for people.
    pub(super) fn sentence(&self) -> String {
        match self {
            RecordingsCheck::Checked {
                recordings,
                incomplete,
                deleted,
            } => {
                let mut text = format!(
                    "Recordings: {recordings} sealed recording(s) reach their sealed heads"
                );
                if *incomplete > 0 {
                    text.push_str(&format!(
                        " ({incomplete} still incomplete or with chunks not sealed yet)"
                    ));
                }
                if *deleted > 0 {
                    text.push_str(&format!(
                        "; {deleted} deleted by the retention were not checked"
                    ));
                }
                text.push('.');
                text
            }
            RecordingsCheck::NotChecked { recordings, why } => {
                format!("Recordings were NOT checked ({recordings} sealed in the chain): {why}.")
            }
            RecordingsCheck::Failed {
                session_id,
                recording_id,
                chunk,
                why,
            } => {
                let at = chunk.map(|c| format!(" at chunk {c}")).unwrap_or_default();
                if recording_id.is_empty() {
                    format!("Recordings are NOT intact: {why}.")
                } else {
                    format!(
                        "Recording {recording_id} of session {session_id} is NOT intact{at}: {why}."
                    )
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sealed(sequence: u64, recording: &str, chunks: u64) -> Value {
        json!({
            "sequence": sequence,
            "type": "recording_checkpoint",
            "session": "s_1",
            "details": {
                "recording_id": recording,
                "connection_id": recording,
                "chunks": chunks,
                "head_hash": "ab".repeat(32),
                "bytes": 10,
                "complete": false,
            },
        })
    }

    #[test]
    fn the_walk_collects_seals_by_recording_and_notes_deletions() {
        let mut heads = SealedHeads::default();
        heads.push(&sealed(3, "c_1", 2));
        heads.push(&json!({"sequence": 4, "type": "session_authorized", "session": "s_1"}));
        heads.push(&sealed(5, "c_1", 4));
        heads.push(&sealed(6, "c_2", 1));
        heads.push(&json!({
            "sequence": 7, "type": "recording_deleted", "session": "s_1",
            "details": {"recording_id": "c_2", "chunks": 1, "bytes": 10},
        }));
        let c1 = &heads.seals[&("s_1".to_owned(), "c_1".to_owned())];
        assert_eq!(c1.iter().map(|s| s.chunks).collect::<Vec<_>>(), [2, 4]);
        assert!(heads
            .deleted
            .contains(&("s_1".to_owned(), "c_2".to_owned())));
        assert!(heads.unreadable.is_empty());
        heads.push(&json!({"sequence": 8, "type": "recording_finished", "details": {}}));
        assert_eq!(heads.unreadable.len(), 1);
    }

    /// A stored recording of several chunks, the final one last, and a seal of all of them.
    fn stored() -> (Vec<StoredChunk>, Value) {
        use portcullis_proto::recording::{Event, Recorder, RecordingId};
        let mut rec = Recorder::with_chunk_len(RecordingId::new("c_1").unwrap(), 256);
        let mut encoded = Vec::new();
        for i in 0..20 {
            let event = Event::Output(format!("some output line {i}\r\n"));
            let at = std::time::Duration::from_millis(i);
            encoded.extend(rec.record(0, at, &event).unwrap());
        }
        encoded.extend(rec.finish().unwrap());
        assert!(encoded.len() > 3, "the tests need several chunks");
        let mut seal = sealed(9, "c_1", encoded.len() as u64);
        seal["type"] = json!("recording_finished");
        seal["details"]["complete"] = json!(true);
        seal["details"]["head_hash"] = json!(encoded[encoded.len() - 1].hash.to_hex());
        let chunks = encoded
            .iter()
            .map(|e| StoredChunk {
                seq: e.seq,
                data: Some(e.bytes.clone()),
                unreadable: None,
            })
            .collect();
        (chunks, seal)
    }

    fn forbidden() -> anyhow::Error {
        anyhow::Error::new(ApiError {
            status: 403,
            body: portcullis_proto::api::ErrorBody {
                error: "forbidden".into(),
                message: "recordings:read".into(),
                field: None,
                step_up: None,
            },
        })
        .context("cannot read the chunks")
    }

    #[tokio::test]
    async fn sealed_recordings_are_checked_against_the_store() {
        let (chunks, seal) = stored();
        let mut heads = SealedHeads::default();
        heads.push(&sealed(3, "c_1", 2));
        heads.push(&seal);
        let intact = chunks.clone();
        let result =
            check_sealed_from(&heads, async |_: &str, _: &str, _: u64| Ok(intact.clone())).await;
        assert_eq!(
            result,
            RecordingsCheck::Failed {
                session_id: "s_1".into(),
                recording_id: "c_1".into(),
                chunk: Some(1),
                why: "chunk 1 is not the head audit event 3 sealed: it was altered or replaced"
                    .into(),
            },
            "the checkpoint's made-up head does not match"
        );

        // Only the genuine seal: intact.
        let mut heads = SealedHeads::default();
        heads.push(&seal);
        let result =
            check_sealed_from(&heads, async |_: &str, _: &str, _: u64| Ok(intact.clone())).await;
        assert_eq!(
            result,
            RecordingsCheck::Checked {
                recordings: 1,
                incomplete: 0,
                deleted: 0
            }
        );

        // A flipped byte in a stored chunk, and an unreadable one.
        let mut altered = chunks.clone();
        let data = altered[1].data.as_mut().unwrap();
        let at = data.len() - 2;
        data[at] ^= 1;
        let result =
            check_sealed_from(&heads, async |_: &str, _: &str, _: u64| Ok(altered.clone())).await;
        assert!(
            matches!(&result, RecordingsCheck::Failed { chunk: Some(1), recording_id, .. } if recording_id == "c_1"),
            "{result:?}"
        );
        let mut unreadable = chunks.clone();
        unreadable[2].data = None;
        unreadable[2].unreadable = Some("the ciphertext does not authenticate".into());
        let result = check_sealed_from(&heads, async |_: &str, _: &str, _: u64| {
            Ok(unreadable.clone())
        })
        .await;
        assert!(
            matches!(&result, RecordingsCheck::Failed { chunk: Some(2), why, .. } if why.contains("cannot be read")),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn without_permission_recordings_are_not_checked_and_deleted_ones_are_skipped() {
        let (_, seal) = stored();
        let mut heads = SealedHeads::default();
        heads.push(&seal);
        let result =
            check_sealed_from(&heads, async |_: &str, _: &str, _: u64| Err(forbidden())).await;
        assert!(
            matches!(&result, RecordingsCheck::NotChecked { recordings: 1, why } if why.contains("recordings:read")),
            "{result:?}"
        );
        assert!(!result.failed());
        heads.push(&json!({
            "sequence": 20, "type": "recording_deleted", "session": "s_1",
            "details": {"recording_id": "c_1", "chunks": 3, "bytes": 10},
        }));
        let result = check_sealed_from(&heads, async |_: &str, _: &str, _: u64| {
            anyhow::bail!("a deleted recording is not fetched")
        })
        .await;
        assert_eq!(
            result,
            RecordingsCheck::Checked {
                recordings: 0,
                incomplete: 0,
                deleted: 1
            }
        );
    }

    #[test]
    fn the_report_names_the_recording_and_chunk() {
        let failed = RecordingsCheck::Failed {
            session_id: "s_1".into(),
            recording_id: "c_1".into(),
            chunk: Some(3),
            why: "chunk 3 is not the head audit event 9 sealed".into(),
        };
        assert!(failed.failed());
        assert_eq!(
            failed.sentence(),
            "Recording c_1 of session s_1 is NOT intact at chunk 3: chunk 3 is not the head \
             audit event 9 sealed."
        );
        let value = serde_json::to_value(&failed).unwrap();
        assert_eq!(value["result"], "failed");
        assert_eq!(value["chunk"], 3);
        let skipped = RecordingsCheck::NotChecked {
            recordings: 2,
            why: "reading recordings needs the permission recordings:read".into(),
        };
        assert!(!skipped.failed());
        assert!(skipped.sentence().contains("NOT checked"));
    }
}
