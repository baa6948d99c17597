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
/// request line matters. Its query is decoded by the URL standard's
/// `application/x-www-form-urlencoded` parser (the controller encodes with that standard); a
/// parameter with an empty value counts as absent.
pub(super) fn parse_callback(head: &[u8], login_id: &str) -> Callback {
    let head = String::from_utf8_lossy(head);
    let target = head
        .lines()
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .unwrap_or_default();
    let Some(url) = request_url(target) else {
        return Callback::Foreign;
    };
    let get = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .filter(|v| !v.is_empty())
    };
    if url.path() != "/callback" || get("login").as_deref() != Some(login_id) {
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

/// The request target as a URL on the loopback port; `None` unless it is a path (the origin
/// form a browser sends, `/path?query`), so the host can never come from the request.
fn request_url(target: &str) -> Option<url::Url> {
    if !target.starts_with('/') {
        return None;
    }
    url::Url::parse(&format!("http://127.0.0.1{target}")).ok()
}

/// The fuzz entry point: the input is a request head, and any request head is an answer,
/// never a panic. Then the input, as the text of an error and of a code the controller sends
/// (encoded with the URL standard's `application/x-www-form-urlencoded`), must come back
/// unchanged.
#[cfg(any(test, fuzzing))]
pub(super) fn fuzz_loopback(data: &[u8]) {
    let _ = parse_callback(data, "lg_fuzz");
    let message = String::from_utf8_lossy(data);
    let encoded: String = url::form_urlencoded::byte_serialize(message.as_bytes()).collect();
    let redirect = |name: &str| {
        let head = format!("GET /callback?login=lg_fuzz&{name}={encoded} HTTP/1.1\r\n\r\n");
        parse_callback(head.as_bytes(), "lg_fuzz")
    };
    let (failed, code) = if message.is_empty() {
        (Callback::NoCode, Callback::NoCode)
    } else {
        (
            Callback::Failed(message.clone().into_owned()),
            Callback::Code(message.into_owned()),
        )
    };
    assert_eq!(
        redirect("error"),
        failed,
        "an error the controller sends arrives changed"
    );
    assert_eq!(
        redirect("code"),
        code,
        "a code the controller sends arrives changed"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(target: &str) -> Callback {
        parse_callback(
            format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
            "lg_1",
        )
    }

    #[test]
    fn the_query_is_form_decoded() {
        assert_eq!(
            parse("/callback?login=lg_1&error=the%20provider+said%3A%20no"),
            Callback::Failed("the provider said: no".into())
        );
        assert_eq!(
            parse("/callback?login=lg_1&code=%zz%4"),
            Callback::Code("%zz%4".into())
        );
    }

    #[test]
    fn only_two_hex_digits_make_an_escape() {
        // `u8::from_str_radix` takes a sign: "%+6" once decoded to the byte 0x06.
        assert_eq!(
            parse("/callback?login=lg_1&code=%+6%-1%2B"),
            Callback::Code("% 6%-1+".into())
        );
    }

    #[test]
    fn callback_is_this_logins_code_or_error() {
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
    fn only_the_callback_path_with_a_value_counts() {
        // Another path that merely starts like the callback's is not the redirect.
        assert_eq!(parse("/callbacks?login=lg_1&code=c"), Callback::Foreign);
        assert_eq!(parse("/callback/x?login=lg_1&code=c"), Callback::Foreign);
        // The host never comes from the request.
        assert_eq!(
            parse("http://evil/callback?login=lg_1&code=c"),
            Callback::Foreign
        );
        assert_eq!(
            parse("//evil/callback?login=lg_1&code=c"),
            Callback::Foreign
        );
        // An empty value is no value.
        assert_eq!(parse("/callback?login=lg_1&code="), Callback::NoCode);
        assert_eq!(parse("/callback?login=lg_1&code"), Callback::NoCode);
        assert_eq!(
            parse("/callback?login=lg_1&error=&code=c"),
            Callback::Code("c".into())
        );
    }

    include!("../../../fuzz/replay.rs");

    #[test]
    fn login_loopback_corpus_replays() {
        let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        replay_corpus(&fuzz, "login_loopback", fuzz_loopback);
    }
}
