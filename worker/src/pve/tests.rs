//! Every rule of [`vet`] and [`record_line`], with heads in the shapes real clients send
//! (the bpg Terraform provider, proxmoxer, curl) and smuggling-shaped ones.

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Method, StatusCode, Version};
use proptest::prelude::*;
use secrecy::SecretString;

use super::fuzz::{assert_clean, parse_head, rules, SECRET, SECRET_HEADER, TOKEN};
use super::*;

/// A head from a method, a target and headers (the builder appends repeated names).
fn head(method: &str, target: &str, headers: &[(&str, &str)]) -> Parts {
    let mut builder = http::Request::builder().method(method).uri(target);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap().into_parts().0
}

fn default_rules() -> Rules {
    rules(false, false)
}

fn refused(head: &Parts, rules: &Rules) -> (RefusalCode, StatusCode) {
    let refusal = vet(head, rules).expect_err("vet let a request through that it must refuse");
    assert!(!refusal.message.contains(SECRET));
    (refusal.code, refusal.status)
}

fn passed(head: &Parts, rules: &Rules) -> Vetted {
    let vetted = vet(head, rules).unwrap_or_else(|r| panic!("refused: {r}"));
    assert_clean(&vetted, rules);
    vetted
}

fn raw(bytes: &str) -> Parts {
    parse_head(bytes.as_bytes()).unwrap_or_else(|| panic!("httparse refused {bytes:?}"))
}

const INJECTED: &str = "PVEAPIToken=svc@pve!s_0123=9a1b2c3d-0000-4000-8000-00000000beef";
const CLIENT_TOKEN: &str = "PVEAPIToken=root@pam!mine=11111111-2222-3333-4444-555555555555";

// Real clients.

/// The bpg/proxmox provider's sequence (Go net/http): version, nodes, VM create, task
/// polling with a percent-encoded UPID, config, status, delete.
#[test]
fn the_terraform_provider_sequence_goes_through_with_the_session_token() {
    let go = [
        ("Host", "localhost:8006"),
        ("User-Agent", "Go-http-client/1.1"),
        ("Accept", "application/json"),
        ("Authorization", CLIENT_TOKEN),
        ("Accept-Encoding", "gzip"),
    ];
    let rules = default_rules();
    let upid =
        "UPID%3Apve1%3A000F1A2B%3A0A1B2C3D%3A6750B3E1%3Aqmcreate%3A100%3Asvc%40pve%21s_0123%3A";
    for (method, target, body) in [
        ("GET", "/api2/json/version".to_owned(), None),
        ("GET", "/api2/json/nodes".to_owned(), None),
        ("GET", "/api2/json/cluster/nextid".to_owned(), None),
        ("POST", "/api2/json/nodes/pve1/qemu".to_owned(), Some("412")),
        (
            "GET",
            format!("/api2/json/nodes/pve1/tasks/{upid}/status"),
            None,
        ),
        (
            "GET",
            "/api2/json/nodes/pve1/qemu/100/config".to_owned(),
            None,
        ),
        (
            "PUT",
            "/api2/json/nodes/pve1/qemu/100/config".to_owned(),
            Some("88"),
        ),
        (
            "POST",
            "/api2/json/nodes/pve1/qemu/100/status/start".to_owned(),
            Some("0"),
        ),
        (
            "GET",
            "/api2/json/nodes/pve1/qemu/100/status/current".to_owned(),
            None,
        ),
        (
            "DELETE",
            "/api2/json/nodes/pve1/qemu/100?destroy-unreferenced-disks=1&purge=1".to_owned(),
            None,
        ),
    ] {
        let mut headers = go.to_vec();
        if let Some(length) = body {
            headers.push(("Content-Type", "application/json"));
            headers.push(("Content-Length", length));
        }
        let vetted = passed(&head(method, &target, &headers), &rules);
        assert_eq!(vetted.headers[header::AUTHORIZATION], INJECTED);
        assert_eq!(vetted.headers[header::HOST], "pve1.lab.example:8006");
        assert_eq!(vetted.headers[header::USER_AGENT], "Go-http-client/1.1");
        assert_eq!(vetted.headers[header::ACCEPT_ENCODING], "gzip");
        assert_eq!(vetted.path_and_query.as_str(), target);
        let framing = body.map_or(Framing::Empty, |l| Framing::Length(l.parse().unwrap()));
        assert_eq!(vetted.framing, framing, "{method} {target}");
    }
}

/// proxmoxer (python-requests) with a ticket: the cookie and the CSRF token are stripped,
/// keep-alive too.
#[test]
fn proxmoxer_with_a_ticket_loses_its_cookie_and_csrf_token() {
    let vetted = passed(
        &head(
            "POST",
            "/api2/json/nodes/pve1/lxc",
            &[
                ("Host", "127.0.0.1:8006"),
                ("User-Agent", "python-requests/2.32.3"),
                ("Accept-Encoding", "gzip, deflate"),
                ("Accept", "*/*"),
                ("Connection", "keep-alive"),
                (
                    "Cookie",
                    "PVEAuthCookie=PVE:root@pam:6750B3E1::c2lnbmF0dXJl",
                ),
                ("CSRFPreventionToken", "6750B3E1:Y3NyZg"),
                ("Content-Length", "57"),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
        ),
        &default_rules(),
    );
    assert_eq!(vetted.headers[header::AUTHORIZATION], INJECTED);
    assert_eq!(
        vetted.headers[header::CONTENT_TYPE],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(vetted.framing, Framing::Length(57));
}

/// curl with a form body over 1 KiB: `Expect: 100-continue` is answered locally, not sent.
#[test]
fn curl_loses_expect_and_a_bogus_authorization() {
    let vetted = passed(
        &raw("POST /api2/json/nodes/pve1/qemu/100/config HTTP/1.1\r\nHost: localhost:8443\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\nAuthorization: PVEAPIToken=bogus\r\nContent-Length: 2048\r\nContent-Type: application/x-www-form-urlencoded\r\nExpect: 100-continue\r\n\r\n"),
        &default_rules(),
    );
    assert_eq!(vetted.headers[header::USER_AGENT], "curl/8.5.0");
    assert_eq!(vetted.framing, Framing::Length(2048));
}

// Stripping and injection.

#[test]
fn every_hop_by_hop_header_and_those_connection_names_are_stripped() {
    let vetted = passed(
        &head(
            "GET",
            "/api2/json/nodes",
            &[
                ("Connection", "keep-alive, X-Trace-Me"),
                ("Connection", "x-other"),
                ("Keep-Alive", "timeout=5"),
                ("Proxy-Connection", "keep-alive"),
                ("TE", "trailers"),
                ("Trailer", "x-checksum"),
                ("Proxy-Authorization", "Basic dTpw"),
                ("X-Trace-Me", "1"),
                ("X-Other", "2"),
                ("X-Kept", "3"),
            ],
        ),
        &default_rules(),
    );
    assert!(!vetted.headers.contains_key("x-trace-me"));
    assert!(!vetted.headers.contains_key("x-other"));
    assert_eq!(vetted.headers["x-kept"], "3");
}

#[test]
fn two_client_authorizations_become_the_one_session_token() {
    let vetted = passed(
        &head(
            "GET",
            "/api2/json/version",
            &[
                ("Authorization", CLIENT_TOKEN),
                ("authorization", "PVEAuthCookie=PVE:x"),
            ],
        ),
        &default_rules(),
    );
    let all: Vec<_> = vetted
        .headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .collect();
    assert_eq!(all, [INJECTED]);
}

#[test]
fn the_token_is_in_no_debug_output_or_refusal() {
    let secret = TOKEN.split_once('=').unwrap().1;
    let rules = rules(false, true);
    let vetted = passed(
        &head("GET", "/api2/json/version", &[(SECRET_HEADER, SECRET)]),
        &rules,
    );
    for text in [format!("{vetted:?}"), format!("{rules:?}")] {
        assert!(!text.contains(secret), "{text}");
        assert!(!text.contains(SECRET), "{text}");
    }
    let request = vetted.into_request(());
    assert!(!format!("{request:?}").contains(secret));
    assert_eq!(request.uri().to_string(), "/api2/json/version");
    assert_eq!(request.version(), Version::HTTP_11);
}

#[test]
fn an_upstream_refuses_a_malformed_token_or_user_information() {
    let authority = http::uri::Authority::from_static("pve1:8006");
    for token in [
        "",
        "no-equals",
        "svc@pve=secret",
        "svc@pve!id=",
        "svc@pve!id=se cret",
        "svc@pve!id=s\u{e9}",
    ] {
        let error = Upstream::new(&authority, &SecretString::from(token)).unwrap_err();
        assert_eq!(error, UpstreamError::Token, "{token:?}");
        if !token.is_empty() {
            assert!(!error.to_string().contains(token));
        }
    }
    let with_user = http::uri::Authority::from_static("root@pve1:8006");
    assert!(matches!(
        Upstream::new(&with_user, &SecretString::from(TOKEN)),
        Err(UpstreamError::UserInfo(_))
    ));
}

// The local listener's secret.

#[test]
fn the_local_secret_is_required_compared_and_stripped() {
    let rules = rules(false, true);
    let target = "/api2/json/version";
    let local_token = format!("PVEAPIToken=portcullis@local!session={SECRET}");
    // In its own header, or as the secret of a PVEAPIToken (what --exec hands Terraform and
    // Ansible); the session's token replaces it.
    for headers in [
        vec![(SECRET_HEADER, SECRET)],
        vec![("Authorization", local_token.as_str())],
        vec![(
            "authorization",
            &local_token.replace("PVEAPIToken", "pveapitoken"),
        )],
        // Its own header wins over a client's other Authorization, which is stripped.
        vec![(SECRET_HEADER, SECRET), ("Authorization", CLIENT_TOKEN)],
    ] {
        let vetted = passed(&head("GET", target, &headers), &rules);
        assert!(!vetted.headers.contains_key(SECRET_HEADER));
        assert_eq!(vetted.headers[header::AUTHORIZATION], INJECTED);
    }
    let wrong_token = format!("PVEAPIToken=portcullis@local!session={SECRET}x");
    let bare_token = format!("PVEAPIToken={SECRET}");
    for headers in [
        vec![],
        vec![(SECRET_HEADER, "local-5ecret-0f-the-5essioN")],
        vec![(SECRET_HEADER, "")],
        vec![(SECRET_HEADER, SECRET), (SECRET_HEADER, SECRET)],
        // A wrong dedicated header is not rescued by a right Authorization.
        vec![
            (SECRET_HEADER, "nope"),
            ("Authorization", local_token.as_str()),
        ],
        vec![("Authorization", SECRET)],
        vec![("Authorization", wrong_token.as_str())],
        vec![("Authorization", bare_token.as_str())],
        vec![("Authorization", "PVEAPIToken=portcullis@local!session=")],
        vec![
            ("Authorization", local_token.as_str()),
            ("Authorization", local_token.as_str()),
        ],
        vec![("Authorization", CLIENT_TOKEN)],
    ] {
        assert_eq!(
            refused(&head("GET", target, &headers), &rules),
            (RefusalCode::LocalSecret, StatusCode::UNAUTHORIZED),
            "{headers:?}"
        );
    }
    // Checked before anything else: a stranger learns nothing of the other rules.
    assert_eq!(
        refused(&head("GET", "http://evil/", &[]), &rules).0,
        RefusalCode::LocalSecret
    );
}

#[test]
fn the_local_secret_comes_from_the_grants_hex_sha256() {
    let lsh = portcullis_crypto::digest::sha256_hex(SECRET.as_bytes());
    let mut rules = rules(false, false);
    rules.local_secret = Some(LocalSecret::from_sha256_hex(&lsh).unwrap());
    passed(
        &head("GET", "/api2/json/version", &[(SECRET_HEADER, SECRET)]),
        &rules,
    );
    // The hash itself is not the secret.
    assert_eq!(
        refused(
            &head("GET", "/api2/json/version", &[(SECRET_HEADER, &lsh)]),
            &rules
        )
        .0,
        RefusalCode::LocalSecret
    );
    for bad in ["", "abc", &"g".repeat(64), &"a".repeat(66)] {
        assert!(LocalSecret::from_sha256_hex(bad).is_err(), "{bad}");
    }
    assert!(!format!("{:?}", rules.local_secret).contains(&lsh[..8]));
}

#[test]
fn the_local_secret_header_is_stripped_even_when_no_secret_is_required() {
    let vetted = passed(
        &head("GET", "/api2/json/version", &[(SECRET_HEADER, SECRET)]),
        &rules(false, false),
    );
    assert!(!vetted.headers.contains_key(SECRET_HEADER));
}

// Refusals.

#[test]
fn refusal_codes_are_named_as_serde_names_them() {
    for code in [
        RefusalCode::LocalSecret,
        RefusalCode::Version,
        RefusalCode::Method,
        RefusalCode::TargetForm,
        RefusalCode::OutsideApi,
        RefusalCode::AmbiguousPath,
        RefusalCode::AccessWrite,
        RefusalCode::HeaderValue,
        RefusalCode::Upgrade,
        RefusalCode::MethodOverride,
        RefusalCode::Framing,
        RefusalCode::BodyTooLarge,
    ] {
        assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
    }
}

#[test]
fn absolute_authority_and_asterisk_forms_are_refused() {
    let rules = default_rules();
    for target in [
        "http://evil/",
        "https://pve1:8006/api2/json/version",
        "pve1:8006",
        "*",
    ] {
        assert_eq!(
            refused(&head("GET", target, &[]), &rules),
            (RefusalCode::TargetForm, StatusCode::BAD_REQUEST),
            "{target}"
        );
    }
    let smuggled = raw("GET http://evil/ HTTP/1.1\r\nHost: pve1\r\n\r\n");
    assert_eq!(refused(&smuggled, &rules).0, RefusalCode::TargetForm);
}

#[test]
fn paths_outside_the_json_api_are_refused() {
    let rules = default_rules();
    for target in [
        "/",
        "/api2/json",
        "/api2/extjs/nodes",
        "/api2/html/nodes",
        "/API2/json/nodes",
        "/api2/JSON/nodes",
        "/pve2/js/pvemanagerlib.js",
        "/novnc/",
    ] {
        assert_eq!(
            refused(&head("GET", target, &[]), &rules),
            (RefusalCode::OutsideApi, StatusCode::FORBIDDEN),
            "{target}"
        );
    }
    passed(&head("GET", "/api2/json/", &[]), &rules);
}

#[test]
fn dot_segments_doubled_slashes_and_encoded_separators_are_refused() {
    let rules = rules(false, false);
    for target in [
        "/api2/json/../json/access/acl",
        "/api2/json/nodes/../access/acl",
        "/api2/json/./access/acl",
        "/api2/json/nodes/..",
        "/api2/json/%2e%2e/json/access/acl",
        "/api2/json/%2E%2E/json/access/acl",
        "/api2/json/nodes%2f..%2faccess/acl",
        "/api2/json/nodes%2F..%2Faccess/acl",
        "/api2/json/nodes%5c..%5caccess",
        "/api2/json/nodes/%252e%252e/access",
        "/api2/json//access/acl",
        "/api2//json/access/acl",
        "//api2/json/access/acl",
        "/api2/json/access;x/acl",
        "/api2/json/access%3b/acl",
        "/api2/json/nodes/%zz",
        "/api2/json/nodes/%+f",
        "/api2/json/nodes/%2",
        "/api2/json/nodes/%00",
        "/api2/json/nodes/%7f",
    ] {
        let mut parts = head("PUT", "/", &[]);
        parts.uri = target.parse().unwrap();
        assert_eq!(
            refused(&parts, &rules),
            (RefusalCode::AmbiguousPath, StatusCode::BAD_REQUEST),
            "{target}"
        );
    }
}

#[test]
fn writes_under_access_are_refused_unless_the_policy_allows_them() {
    let (strict, lenient) = (rules(false, false), rules(true, false));
    for (method, target) in [
        ("POST", "/api2/json/access/users/svc@pve/token/mine"),
        ("PUT", "/api2/json/access/acl"),
        ("DELETE", "/api2/json/access/users/svc@pve/token/s_0123"),
        ("POST", "/api2/json/access/ticket"),
        ("PUT", "/api2/json/access/password"),
        ("POST", "/api2/json/access/tfa/svc@pve"),
        ("POST", "/api2/json/ACCESS/acl"),
        ("PUT", "/api2/json/%61ccess/acl"),
        ("PUT", "/api2/json/access"),
        ("PUT", "/api2/json/access/"),
    ] {
        let parts = head(method, target, &[("Content-Length", "0")]);
        assert_eq!(
            refused(&parts, &strict),
            (RefusalCode::AccessWrite, StatusCode::FORBIDDEN),
            "{method} {target}"
        );
        passed(&parts, &lenient);
    }
    for method in ["GET", "HEAD"] {
        passed(&head(method, "/api2/json/access/permissions", &[]), &strict);
    }
    passed(&head("POST", "/api2/json/accessories", &[]), &strict);
}

#[test]
fn methods_other_than_the_api_s_five_are_refused() {
    let rules = default_rules();
    for method in ["CONNECT", "OPTIONS", "TRACE", "PATCH", "PROPFIND", "BREW"] {
        let target = if method == "CONNECT" {
            "pve1:8006"
        } else {
            "/api2/json/version"
        };
        assert_eq!(
            refused(&head(method, target, &[]), &rules),
            (RefusalCode::Method, StatusCode::METHOD_NOT_ALLOWED),
            "{method}"
        );
    }
    passed(&head("HEAD", "/api2/json/version", &[]), &rules);
}

#[test]
fn versions_other_than_http_1_are_refused() {
    let rules = default_rules();
    for version in [Version::HTTP_09, Version::HTTP_2, Version::HTTP_3] {
        let mut parts = head("GET", "/api2/json/version", &[]);
        parts.version = version;
        assert_eq!(
            refused(&parts, &rules).0,
            RefusalCode::Version,
            "{version:?}"
        );
    }
    passed(&raw("GET /api2/json/version HTTP/1.0\r\n\r\n"), &rules);
}

#[test]
fn upgrades_and_method_overrides_are_refused() {
    let rules = default_rules();
    for headers in [
        [("Connection", "Upgrade"), ("Upgrade", "websocket")],
        [
            ("Connection", "Upgrade, HTTP2-Settings"),
            ("Upgrade", "h2c"),
        ],
    ] {
        assert_eq!(
            refused(
                &head(
                    "GET",
                    "/api2/json/nodes/pve1/qemu/100/vncwebsocket",
                    &headers
                ),
                &rules
            ),
            (RefusalCode::Upgrade, StatusCode::BAD_REQUEST)
        );
    }
    for name in [
        "X-HTTP-Method-Override",
        "X-HTTP-Method",
        "X-Method-Override",
    ] {
        let parts = head("GET", "/api2/json/access/acl", &[(name, "PUT")]);
        assert_eq!(
            refused(&parts, &rules).0,
            RefusalCode::MethodOverride,
            "{name}"
        );
    }
}

#[test]
fn header_values_with_control_or_non_ascii_bytes_are_refused() {
    let rules = default_rules();
    for value in [&b"a\tb"[..], b"caf\xc3\xa9", b"\x80", b"\xff"] {
        let mut parts = head("GET", "/api2/json/version", &[]);
        parts
            .headers
            .insert("x-note", HeaderValue::from_bytes(value).unwrap());
        assert_eq!(
            refused(&parts, &rules),
            (RefusalCode::HeaderValue, StatusCode::BAD_REQUEST)
        );
    }
}

#[test]
fn obsolete_line_folding_never_parses() {
    for folded in [
        "GET /api2/json/version HTTP/1.1\r\nHost: pve1\r\nX-Folded: a\r\n b\r\n\r\n",
        "POST /api2/json/nodes HTTP/1.1\r\nContent-Length: 5\r\n\tTransfer-Encoding: chunked\r\n\r\n",
    ] {
        assert!(parse_head(folded.as_bytes()).is_none(), "{folded:?}");
    }
}

#[test]
fn ambiguous_framing_is_refused() {
    let rules = default_rules();
    let target = "/api2/json/nodes/pve1/qemu";
    for headers in [
        vec![("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
        vec![("Transfer-Encoding", "chunked"), ("Content-Length", "0")],
        vec![("Transfer-Encoding", "chunked, identity")],
        vec![("Transfer-Encoding", "identity")],
        vec![("Transfer-Encoding", "gzip, chunked")],
        vec![("Transfer-Encoding", " chunked")],
        vec![
            ("Transfer-Encoding", "chunked"),
            ("Transfer-Encoding", "chunked"),
        ],
        vec![("Content-Length", "5"), ("Content-Length", "5")],
        vec![("Content-Length", "5"), ("Content-Length", "6")],
        vec![("Content-Length", "5, 5")],
        vec![("Content-Length", "+5")],
        vec![("Content-Length", "-1")],
        vec![("Content-Length", "0x10")],
        vec![("Content-Length", "5 ")],
        vec![("Content-Length", "")],
        vec![("Content-Length", "99999999999999999999999")],
        vec![("Content-Length", "5"), ("Connection", "content-length")],
        vec![
            ("Transfer-Encoding", "chunked"),
            ("Connection", "Transfer-Encoding"),
        ],
        vec![("Connection", "not a name")],
    ] {
        assert_eq!(
            refused(&head("POST", target, &headers), &rules),
            (RefusalCode::Framing, StatusCode::BAD_REQUEST),
            "{headers:?}"
        );
    }
    let chunked_1_0 = raw("POST /api2/json/nodes HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(refused(&chunked_1_0, &rules).0, RefusalCode::Framing);
    let cl_te = raw("POST /api2/json/nodes HTTP/1.1\r\nHost: pve1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(refused(&cl_te, &rules).0, RefusalCode::Framing);
    let vetted = passed(
        &head("POST", target, &[("Transfer-Encoding", "Chunked")]),
        &rules,
    );
    assert_eq!(vetted.framing, Framing::Chunked);
    assert_eq!(vetted.headers[header::TRANSFER_ENCODING], "Chunked");
}

#[test]
fn a_declared_body_over_the_maximum_is_refused() {
    let rules = default_rules();
    let target = "/api2/json/nodes/pve1/qemu";
    let at = passed(
        &head("POST", target, &[("Content-Length", "524288")]),
        &rules,
    );
    assert_eq!(at.framing, Framing::Length(MAX_BODY));
    assert_eq!(
        refused(
            &head("POST", target, &[("Content-Length", "524289")]),
            &rules
        ),
        (RefusalCode::BodyTooLarge, StatusCode::PAYLOAD_TOO_LARGE)
    );
}

// The record.

#[test]
fn the_record_redacts_every_query_value() {
    let line = |target: &str| record_line(&Method::GET, target, StatusCode::OK, 0, 0).path;
    assert_eq!(
        line("/api2/json/cluster/resources?full=1&secret=x"),
        "/api2/json/cluster/resources?full=<redacted>&secret=<redacted>"
    );
    assert_eq!(line("/api2/json/nodes"), "/api2/json/nodes");
    assert_eq!(
        line("/api2/json/x?type=vm&&flag"),
        "/api2/json/x?type=<redacted>&flag=<redacted>"
    );
    assert_eq!(
        line("/api2/json/x?a%3D1=2&p@ss=3"),
        "/api2/json/x?<redacted>=<redacted>&<redacted>=<redacted>"
    );
    assert_eq!(line("/api2/json/x?=v"), "/api2/json/x?=<redacted>");
    assert_eq!(line("/a\u{e9}\n"), "/a%C3%A9%0A");
    let long = line(&format!("/api2/json/{}", "n".repeat(3000)));
    assert!(long.len() <= 2051 && long.ends_with("..."));
    let many = line(&format!("/api2/json/x?{}", "key=value&".repeat(500)));
    assert!(many.len() <= 2051 && many.ends_with("&..."), "{many}");
    assert!(!many.contains("value"));
}

#[test]
fn the_record_serialises_method_path_status_and_bytes() {
    let record = record_line(
        &Method::POST,
        "/api2/json/nodes/pve1/qemu?start=1",
        StatusCode::OK,
        412,
        77,
    );
    let json = serde_json::to_value(&record).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"method": "POST", "path": "/api2/json/nodes/pve1/qemu?start=<redacted>", "status": 200, "bytes_in": 412, "bytes_out": 77})
    );
    assert_eq!(
        serde_json::from_value::<RequestRecord>(json).unwrap(),
        record
    );
}

// Properties.

fn header_strategy() -> impl Strategy<Value = (String, String)> {
    let names = prop::sample::select(vec![
        "Authorization",
        "authorization",
        "AUTHORIZATION",
        "Cookie",
        "Proxy-Authorization",
        "CSRFPreventionToken",
        "csrfpreventiontoken",
        "Connection",
        "Keep-Alive",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Upgrade",
        "Host",
        "Expect",
        "Content-Length",
        "Transfer-Encoding",
        SECRET_HEADER,
        "X-Custom",
        "Accept",
        "X-HTTP-Method-Override",
    ]);
    let values = prop::sample::select(vec![
        "PVEAPIToken=root@pam!x=y",
        "chunked",
        "identity",
        "0",
        "5",
        "524289",
        "keep-alive",
        "close, x-custom",
        "cookie",
        "authorization",
        "content-length",
        "websocket",
        SECRET,
        "",
        "a\tb",
        "PVEAuthCookie=PVE:root@pam::sig",
    ]);
    (names, values).prop_map(|(n, v)| (n.to_owned(), v.to_owned()))
}

/// Mostly under `/api2/json/` (so that most heads pass and their output is checked), with
/// hostile pieces after it.
fn target_strategy() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "api2", "json", "extjs", "access", "ACCESS", "%61ccess", "nodes", "..", ".", "%2e%2e",
        "%2f", "%2F", "", "acl", "users", "%25", ";", "?a=1", "%zz", "http:", "qemu", "100",
    ]);
    let prefix = prop::sample::select(vec!["/api2/json/", "/api2/json/", "/api2/json/", "/", ""]);
    (prefix, prop::collection::vec(pieces, 0..5))
        .prop_map(|(prefix, pieces)| format!("{prefix}{}", pieces.join("/")))
}

proptest! {
    #[test]
    fn vet_never_panics_nor_forwards_a_client_credential(
        method in prop::sample::select(vec!["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "CONNECT", "PATCH"]),
        target in target_strategy(),
        headers in prop::collection::vec(header_strategy(), 0..5),
        allow in prop::bool::ANY,
        local in prop::bool::ANY,
        with_secret in prop::bool::weighted(0.9),
    ) {
        let Ok(uri) = target.parse::<http::Uri>() else {
            return Ok(());
        };
        let mut parts = head(method, "/", &[]);
        parts.uri = uri;
        for (name, value) in &headers {
            if let Ok(value) = HeaderValue::from_str(value) {
                parts.headers.append(header::HeaderName::from_bytes(name.as_bytes()).unwrap(), value);
            }
        }
        let rules = rules(allow, local);
        if local && with_secret {
            parts.headers.append(SECRET_HEADER, HeaderValue::from_static(SECRET));
        }
        match vet(&parts, &rules) {
            Ok(vetted) => {
                assert_clean(&vetted, &rules);
                prop_assert!(!vetted.headers.contains_key("x-http-method-override"));
            }
            Err(refusal) => prop_assert!(!refusal.message.contains(SECRET)),
        }
    }

    #[test]
    fn raw_heads_never_panic_the_fuzz_entry(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        super::fuzz::request(&bytes);
    }
}
