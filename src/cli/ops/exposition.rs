//! The two text formats of `/metrics`. The metrics crate writes OpenMetrics 1.0 text, which
//! Prometheus asks for first; other scrapers and `promtool check metrics` read the older
//! Prometheus text format 0.0.4, in which a counter's family is named with its `_total`
//! suffix and there is no `# EOF`.

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The body and content type for a scrape whose `Accept` header is `accept`.
pub(super) fn negotiate(openmetrics: &str, accept: &str) -> (String, &'static str) {
    if accept.contains("application/openmetrics-text") {
        (openmetrics.to_owned(), OPENMETRICS)
    } else {
        (to_prometheus_text(openmetrics), PROMETHEUS_TEXT)
    }
}

/// OpenMetrics text to Prometheus text 0.0.4: counter families take their samples' `_total`
/// name in `# HELP` and `# TYPE`, and `# EOF` goes.
pub(super) fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(line) => out.push_str(&line),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# HELP x_connections Connections opened.\n\
                          # TYPE x_connections counter\n\
                          x_connections_total 3\n\
                          # HELP x_open Open now.\n\
                          # TYPE x_open gauge\n\
                          x_open 1\n\
                          # EOF\n";

    #[test]
    fn counters_take_their_total_name_and_eof_goes() {
        let text = to_prometheus_text(SAMPLE);
        assert_eq!(
            text,
            "# HELP x_connections_total Connections opened.\n\
             # TYPE x_connections_total counter\n\
             x_connections_total 3\n\
             # HELP x_open Open now.\n\
             # TYPE x_open gauge\n\
             x_open 1\n"
        );
    }

    #[test]
    fn prometheus_asking_for_openmetrics_gets_it_unchanged() {
        let accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(negotiate(SAMPLE, accept), (SAMPLE.to_owned(), OPENMETRICS));
        let (text, content_type) = negotiate(SAMPLE, "*/*");
        assert_eq!(content_type, PROMETHEUS_TEXT);
        assert!(!text.contains("# EOF"));
    }
}
