//! The loopback redirect of `portcullis login`: what the request head the browser sends to
//! 127.0.0.1 means. Pure (the socket stays in `redirect.rs`) and free of other modules of the
//! CLI, so that the fuzz target `login_loopback` compiles this very file (see
//! `fuzz/README.md`).

/// What one request to the loopback port brought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Callback {
    /// Not this login's redirect (another login's, a probe, a favicon): answered 400.
    Foreign,
    /// The login failed; the message from the controller or the provider.
    Failed(String),
    /// This login's redirect without a code: answered 400.
    NoCode,
    /// The one-time code to redeem.
    Code(String),
}

/// Reads a request head (`GET /callback?login=..&code=.. HTTP/1.1`); only the target of the
/// request line matters.
pub(super) fn parse_callback(head: &[u8], login_id: &str) -> Callback {
    let head = String::from_utf8_lossy(head);
    let target = head
        .lines()
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .unwrap_or_default();
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let params = url_pairs(query);
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    if !target.starts_with("/callback") || get("login").as_deref() != Some(login_id) {
        return Callback::Foreign;
    }
    if let Some(error) = get("error") {
        return Callback::Failed(error);
    }
    match get("code") {
        Some(code) => Callback::Code(code),
        None => Callback::NoCode,
    }
}

/// The `key=value` pairs of a query, decoded as the URL standard's
/// `application/x-www-form-urlencoded` (which the controller encodes with); a pair without
/// `=` carries nothing the CLI needs and is skipped.
pub(super) fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| pair.contains('='))
        .flat_map(|pair| url::form_urlencoded::parse(pair.as_bytes()))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The fuzz entry point: the input is a request head. Its query must decode as the URL
/// standard's `application/x-www-form-urlencoded` parser decodes it (the controller encodes
/// with that standard), and an error or code the controller sends must come back unchanged.
#[cfg(any(test, fuzzing))]
pub(super) fn fuzz_loopback(data: &[u8]) {
    let _ = parse_callback(data, "lg_fuzz");
    let head = String::from_utf8_lossy(data);
    let line = head.lines().next().unwrap_or_default();
    let query = line
        .split(' ')
        .nth(1)
        .and_then(|t| t.split_once('?'))
        .map(|(_, q)| q)
        .unwrap_or_default();
    // The standard parser skips empty pairs and keeps pairs without `=`; the CLI needs
    // only pairs with a value.
    let standard: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .zip(query.split('&').filter(|p| !p.is_empty()))
        .filter(|(_, raw)| raw.contains('='))
        .map(|((k, v), _)| (k.into_owned(), v.into_owned()))
        .collect();
    assert_eq!(
        url_pairs(query),
        standard,
        "the query {query:?} decodes unlike the URL standard"
    );
    let message = String::from_utf8_lossy(data);
    let error: String = url::form_urlencoded::byte_serialize(message.as_bytes()).collect();
    let redirect = format!("GET /callback?login=lg_fuzz&error={error} HTTP/1.1\r\n\r\n");
    assert_eq!(
        parse_callback(redirect.as_bytes(), "lg_fuzz"),
        Callback::Failed(message.into_owned()),
        "an error the controller sends arrives changed"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_query_is_decoded() {
        let pairs = url_pairs("login=lg_1&error=the%20provider+said%3A%20no");
        assert_eq!(pairs[1].1, "the provider said: no");
        assert_eq!(url_pairs("e=%zz%4")[0].1, "%zz%4");
    }

    #[test]
    fn only_two_hex_digits_make_an_escape() {
        // `u8::from_str_radix` takes a sign: "%+6" once decoded to the byte 0x06.
        assert_eq!(url_pairs("e=%+6%-1%2B")[0].1, "% 6%-1+");
    }

    #[test]
    fn callback_is_this_logins_code_or_error() {
        let head = |target: &str| format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        let parse = |target: &str| parse_callback(head(target).as_bytes(), "lg_1");
        assert_eq!(
            parse("/callback?login=lg_1&code=c%2B1"),
            Callback::Code("c+1".into())
        );
        assert_eq!(
            parse("/callback?login=lg_1&error=no+way"),
            Callback::Failed("no way".into())
        );
        assert_eq!(parse("/callback?login=lg_1"), Callback::NoCode);
        assert_eq!(parse("/callback?login=lg_2&code=c"), Callback::Foreign);
        assert_eq!(parse("/favicon.ico"), Callback::Foreign);
    }

    #[test]
    fn login_loopback_corpus_replays() {
        let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut count = 0;
        for kind in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(fuzz.join(kind).join("login_loopback")) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                eprintln!("replaying {}", path.display());
                fuzz_loopback(&std::fs::read(&path).unwrap());
                count += 1;
            }
        }
        assert!(count > 0, "no seed corpus under {}", fuzz.display());
    }
}
