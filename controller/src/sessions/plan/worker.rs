//! Which live worker carries a new session: the one with the fewest live sessions.
//!
//! Why: the first linked worker used to take nearly every session (1,008 of 1,023 in a drill),
//! so one worker carried the load and its loss ended almost everything. The counts come from
//! the store (read at most every 250 ms) plus the sessions this controller has given each
//! worker since, so a burst of authorisations spreads at once instead of following a stale
//! count. Among equally loaded workers, one linked to this controller is preferred (it hears of
//! a cancel at once), then a random one (`draw`), so that several controllers reading the same
//! counts do not all pick the same worker.

use crate::store::workers::WorkerRecord;

/// A live worker that may carry a new session, with what the choice weighs.
#[derive(Debug, Clone)]
pub(crate) struct Candidate<'a> {
    pub worker: &'a WorkerRecord,
    /// Its live sessions: the store's count, plus those this controller gave it since.
    pub live_sessions: i64,
    /// Linked to this controller, which can then tell it of a cancel at once.
    pub linked_here: bool,
}

/// The worker for a new session (see the module doc); `None` without a candidate. `draw` is
/// a random number.
pub(crate) fn choose_worker<'a>(
    candidates: &[Candidate<'a>],
    draw: u64,
) -> Option<&'a WorkerRecord> {
    let least = candidates.iter().map(|c| c.live_sessions).min()?;
    let fewest: Vec<&Candidate<'a>> = candidates
        .iter()
        .filter(|c| c.live_sessions == least)
        .collect();
    let linked: Vec<&Candidate<'a>> = fewest.iter().copied().filter(|c| c.linked_here).collect();
    let pool = if linked.is_empty() { fewest } else { linked };
    let len = u64::try_from(pool.len()).unwrap_or(u64::MAX);
    let index = usize::try_from(draw % len).unwrap_or(0);
    pool.get(index).map(|c| c.worker)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(id: &str) -> WorkerRecord {
        WorkerRecord {
            id: id.to_owned(),
            name: id.to_owned(),
            proxy_addr: "127.0.0.1:9202".to_owned(),
            key_fingerprint: String::new(),
            state: "active".to_owned(),
            created_at: 0,
            last_seen_at: Some(0),
            cert_expires_at: 0,
            draining_since: None,
            stopped_at: None,
        }
    }

    fn candidate(worker: &WorkerRecord, live_sessions: i64, linked_here: bool) -> Candidate<'_> {
        Candidate {
            worker,
            live_sessions,
            linked_here,
        }
    }

    fn chosen(candidates: &[Candidate<'_>], draw: u64) -> Option<String> {
        choose_worker(candidates, draw).map(|w| w.id.clone())
    }

    #[test]
    fn without_a_live_worker_none_is_chosen() {
        assert_eq!(chosen(&[], 7), None);
    }

    #[test]
    fn the_worker_with_the_fewest_live_sessions_is_chosen_even_when_another_is_linked_here() {
        let (a, b, c) = (worker("w_a"), worker("w_b"), worker("w_c"));
        let candidates = [
            candidate(&a, 5, true),
            candidate(&b, 2, false),
            candidate(&c, 3, false),
        ];
        for draw in 0..10 {
            assert_eq!(
                chosen(&candidates, draw).as_deref(),
                Some("w_b"),
                "draw {draw}"
            );
        }
    }

    #[test]
    fn among_equally_loaded_workers_one_linked_here_is_preferred() {
        let (a, b, c) = (worker("w_a"), worker("w_b"), worker("w_c"));
        let candidates = [
            candidate(&a, 1, false),
            candidate(&b, 1, true),
            candidate(&c, 4, true),
        ];
        for draw in 0..10 {
            assert_eq!(
                chosen(&candidates, draw).as_deref(),
                Some("w_b"),
                "draw {draw}"
            );
        }
    }

    #[test]
    fn among_equals_the_draw_decides_so_every_one_of_them_can_be_chosen() {
        let (a, b, c) = (worker("w_a"), worker("w_b"), worker("w_c"));
        let candidates = [
            candidate(&a, 0, false),
            candidate(&b, 0, false),
            candidate(&c, 9, false),
        ];
        let picked: std::collections::BTreeSet<String> = (0..10)
            .filter_map(|draw| chosen(&candidates, draw))
            .collect();
        assert_eq!(picked, ["w_a".to_owned(), "w_b".to_owned()].into());
        assert_eq!(chosen(&candidates, u64::MAX).as_deref(), Some("w_b"));
    }

    #[test]
    fn counting_each_choice_spreads_a_burst_evenly() {
        // What authorize-session does: each session it gives a worker counts at once.
        let workers = [worker("w_a"), worker("w_b"), worker("w_c")];
        let mut counts = [0i64; 3];
        for draw in 0..300u64 {
            let candidates: Vec<Candidate<'_>> = workers
                .iter()
                .zip(counts)
                .map(|(w, n)| candidate(w, n, w.id == "w_a"))
                .collect();
            let id = chosen(&candidates, draw.wrapping_mul(2_654_435_761)).unwrap();
            let i = workers.iter().position(|w| w.id == id).unwrap();
            counts[i] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
    }
}
