//! Which controller the CLI asks, when it has several (a profile's `controllers`, or a comma
//! list in `--addr`/`PORTCULLIS_ADDR`): as a worker does, it tries them in order, starting
//! with the one that answered last, moves on at once when one cannot be reached (connect or
//! TLS handshake failed, within the short connect timeout) or answers 502/503 (a proxy with
//! no upstream, a controller not serving), and never after any other answer: a 4xx is the
//! controller's word. A name with several DNS records is tried address by address by the
//! connector itself, under the same TLS name.

/// The order to try `count` controllers in: `first` (the last that answered), then the
/// others in their listed order.
pub(super) fn order(count: usize, first: usize) -> Vec<usize> {
    let first = if first < count { first } else { 0 };
    std::iter::once(first)
        .chain((0..count).filter(|i| *i != first))
        .take(count)
        .collect()
}

/// Whether an answer with this status sends the request to the next controller.
pub(super) fn moves_on_status(status: u16) -> bool {
    matches!(status, 502 | 503)
}

/// Whether a transport failure sends the request to the next controller: only one before
/// the request was sent (connect, TLS), so nothing is ever sent twice.
pub(super) fn moves_on_error(err: &reqwest::Error) -> bool {
    err.is_connect()
}

/// The error after every controller failed: each one and why.
pub(super) fn all_failed(tried: &[(String, String)]) -> String {
    let mut text = String::from("no controller answered:");
    for (addr, why) in tried {
        text.push_str(&format!("\n  {addr}: {why}"));
    }
    text.push_str(
        "\ncheck the network, or the controllers listed by `portcullis status` (PORTCULLIS_ADDR, \
         --addr or the profile)",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_good_controller_goes_first_then_the_list() {
        assert_eq!(order(1, 0), vec![0]);
        assert_eq!(order(3, 0), vec![0, 1, 2]);
        assert_eq!(order(3, 2), vec![2, 0, 1]);
        assert_eq!(order(3, 7), vec![0, 1, 2]);
        assert_eq!(order(0, 0), Vec::<usize>::new());
    }

    #[test]
    fn only_unavailable_answers_move_on() {
        assert!(moves_on_status(502));
        assert!(moves_on_status(503));
        for status in [200, 400, 401, 403, 404, 409, 429, 500, 504] {
            assert!(!moves_on_status(status), "{status}");
        }
    }

    #[test]
    fn the_error_names_every_controller_tried() {
        let text = all_failed(&[
            ("https://a:9200".into(), "connection refused".into()),
            ("https://b:9200".into(), "503 Service Unavailable".into()),
        ]);
        assert!(
            text.contains("https://a:9200: connection refused"),
            "{text}"
        );
        assert!(text.contains("https://b:9200: 503"), "{text}");
    }
}
