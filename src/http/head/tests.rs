//! Unit tests of `head`.

use super::*;

fn fields<'a>(pairs: &[(&'a str, &'a str)]) -> Vec<httparse::Header<'a>> {
    pairs
        .iter()
        .map(|&(name, value)| httparse::Header {
            name,
            value: value.as_bytes(),
        })
        .collect()
}

fn empty() -> [httparse::Header<'static>; MAX_HEADERS] {
    [httparse::EMPTY_HEADER; MAX_HEADERS]
}

#[test]
fn parses_a_request() {
    let buf = b"POST /a?b=c HTTP/1.1\r\nHost: example.com\r\nX-A:  1 \r\n\r\nbody";
    let mut headers = empty();
    let head = parse_request(buf, &mut headers).unwrap().unwrap();
    assert_eq!(head.method, "POST");
    assert_eq!(head.target, "/a?b=c");
    assert_eq!(head.version, Version::Http11);
    assert_eq!(head.len, buf.len() - 4);
    assert_eq!(head.headers.len(), 2);
    assert_eq!(head.headers[0].name, "Host");
    assert_eq!(head.headers[0].value, b"example.com");
    assert_eq!(head.headers[1].name, "X-A");
    assert_eq!(head.headers[1].value, b"1");
}

#[test]
fn parses_a_response() {
    let buf = b"HTTP/1.0 404 Not Found\r\nContent-Length: 3\r\n\r\nabc";
    let mut headers = empty();
    let head = parse_response(buf, &mut headers).unwrap().unwrap();
    assert_eq!(head.status, 404);
    assert_eq!(head.reason, "Not Found");
    assert_eq!(head.version, Version::Http10);
    assert_eq!(head.len, buf.len() - 3);
    assert_eq!(head.headers.len(), 1);

    let mut headers = empty();
    let head = parse_response(b"HTTP/1.1 100 Continue\r\n\r\n", &mut headers).unwrap();
    assert_eq!(head.map(|h| h.status), Some(100));
}

#[test]
fn incomplete_and_too_large() {
    let mut headers = empty();
    assert!(
        parse_request(b"GET / HTTP/1.1\r\nHost: a\r\n", &mut headers)
            .unwrap()
            .is_none()
    );

    let mut long = b"GET / HTTP/1.1\r\nX-Long: ".to_vec();
    long.resize(MAX_HEAD_LEN, b'a');
    let mut headers = empty();
    assert_eq!(
        parse_request(&long, &mut headers).err(),
        Some(HeadError::TooLarge)
    );

    // Complete, but one byte over the limit.
    long.truncate(MAX_HEAD_LEN - 3);
    long.extend_from_slice(b"\r\n\r\n");
    let mut headers = empty();
    assert_eq!(
        parse_request(&long, &mut headers).err(),
        Some(HeadError::TooLarge)
    );

    // Exactly at the limit is fine.
    long.truncate(MAX_HEAD_LEN - 4);
    long.extend_from_slice(b"\r\n\r\n");
    let mut headers = empty();
    assert_eq!(
        parse_request(&long, &mut headers).unwrap().map(|h| h.len),
        Some(MAX_HEAD_LEN)
    );

    // A request line that does not end within the limit is a target too long (414), sent
    // whole or not.
    let mut target = b"\r\nGET /".to_vec();
    target.resize(MAX_HEAD_LEN, b'a');
    let mut headers = empty();
    assert_eq!(
        parse_request(&target, &mut headers).err(),
        Some(HeadError::TargetTooLong)
    );
    target.extend_from_slice(b"aaaa HTTP/1.1\r\n\r\n");
    let mut headers = empty();
    assert_eq!(
        parse_request(&target, &mut headers).err(),
        Some(HeadError::TargetTooLong)
    );
    assert_eq!(HeadError::TargetTooLong.status(), 414);

    // A line whose end falls just past the limit is 414 however it was split: whole, cut
    // after its CR, or cut before its CR and complete in the next read.
    let mut line = b"GET /".to_vec();
    line.resize(MAX_HEAD_LEN - 1 - b" HTTP/1.1".len(), b'a');
    line.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
    for cut in [line.len(), MAX_HEAD_LEN, MAX_HEAD_LEN - 1] {
        let mut headers = empty();
        let parsed = parse_request(&line[..cut], &mut headers);
        let expected = match cut {
            c if c < MAX_HEAD_LEN => None,
            _ => Some(HeadError::TargetTooLong),
        };
        assert_eq!(parsed.err(), expected, "cut at {cut}");
    }
    // One whose end falls exactly at the limit leaves no room for fields: 431.
    line.truncate(MAX_HEAD_LEN - 2 - b" HTTP/1.1".len());
    line.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
    let mut headers = empty();
    assert_eq!(
        parse_request(&line, &mut headers).err(),
        Some(HeadError::TooLarge)
    );

    let mut partial = b"HTTP/1.1 200 OK\r\nA: ".to_vec();
    partial.resize(MAX_HEAD_LEN + 10, b'a');
    let mut headers = empty();
    assert_eq!(
        parse_response(&partial, &mut headers).err(),
        Some(HeadError::TooLarge)
    );
}

#[test]
fn too_many_headers_and_malformed() {
    let mut buf = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        buf.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    buf.extend_from_slice(b"\r\n");
    let mut headers = empty();
    let err = parse_request(&buf, &mut headers).unwrap_err();
    assert_eq!(err, HeadError::TooManyHeaders);
    assert_eq!(err.status(), 431);
    assert_eq!(HeadError::TooLarge.status(), 431);

    let versions = [
        (
            &b"GET / HTTP/2.0\r\n\r\n"[..],
            HeadError::UnsupportedVersion,
        ),
        (b"\r\nGET / HTTP/0.9\r\n\r\n", HeadError::UnsupportedVersion),
        (
            b"GET /a b HTTP/1.1\r\n\r\n",
            HeadError::Malformed("whitespace in the request target"),
        ),
        (
            b"GET / HTTP/11\r\n\r\n",
            HeadError::Malformed("invalid HTTP version"),
        ),
        (
            b"GET / HTTX/1.1\r\n\r\n",
            HeadError::Malformed("invalid HTTP version"),
        ),
    ];
    for (head, want) in versions {
        let mut headers = empty();
        let err = parse_request(head, &mut headers).unwrap_err();
        assert_eq!(err, want, "{}", head.escape_ascii());
        // Until its line is complete the head is only incomplete: the parser judges the
        // version from its first bytes, the rest of the line tells which error it is.
        let start = head.iter().position(|&b| b != b'\r' && b != b'\n').unwrap();
        let end = start + head[start..].iter().position(|&b| b == b'\r').unwrap();
        let mut headers = empty();
        let partial = parse_request(&head[..end], &mut headers);
        assert!(matches!(partial, Ok(None)), "{}", head.escape_ascii());
    }

    // HTTP/1.x above 1.1 is served as HTTP/1.1 (RFC 9110 2.5): the error says where the
    // minor version is, and the rewritten head parses.
    let mut head = b"\r\nGET /x HTTP/1.7\r\nHost: a\r\n\r\n".to_vec();
    let mut headers = empty();
    let err = parse_request(&head, &mut headers).unwrap_err();
    assert_eq!(err, HeadError::HigherMinorVersion { minor: 16 });
    let mut headers = empty();
    assert!(matches!(
        parse_request(b"GET / HTTP/1.9", &mut headers),
        Ok(None)
    ));
    serve_as_http11(&mut head, 16);
    let mut headers = empty();
    let parsed = parse_request(&head, &mut headers).unwrap().unwrap();
    assert_eq!((parsed.target, parsed.version), ("/x", Version::Http11));
    assert_eq!(HeadError::UnsupportedVersion.status(), 505);
    assert_eq!(
        HeadError::UnsupportedVersion.title(),
        "HTTP version not supported"
    );
    assert_eq!(HeadError::Malformed("x").status(), 400);

    let bad_line = HeadError::Malformed("invalid byte in the method or target");
    for line in [
        &b"GET /caf\xe9 HTTP/1.1"[..],
        b"GET /\x7f HTTP/1.1",
        b"G(T / HTTP/1.1",
    ] {
        let mut head = line.to_vec();
        head.extend_from_slice(b"\r\nHost: a\r\n\r\n");
        let mut headers = empty();
        assert_eq!(parse_request(&head, &mut headers).unwrap_err(), bad_line);
    }
    let mut headers = empty();
    let utf8 = parse_request(
        "GET /caf\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n".as_bytes(),
        &mut headers,
    );
    assert!(matches!(utf8, Ok(Some(_))), "{utf8:?}");

    let mut headers = empty();
    let err = parse_request(b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", &mut headers);
    assert_eq!(
        err.unwrap_err(),
        HeadError::Malformed("invalid header name")
    );

    let mut headers = empty();
    let err = parse_response(b"HTTP/1.1 2x0 OK\r\n\r\n", &mut headers);
    assert_eq!(err.unwrap_err(), HeadError::Malformed("invalid status"));
    assert_eq!(HeadError::Framing("x").status(), 400);
}

#[test]
fn request_framing_cases() {
    let framing = |pairs: &[(&str, &str)]| request_framing(&fields(pairs));
    assert_eq!(framing(&[]), Ok(BodyFraming::None));
    assert_eq!(
        framing(&[("Content-Length", "0")]),
        Ok(BodyFraming::Length(0))
    );
    assert_eq!(
        framing(&[("content-length", "42")]),
        Ok(BodyFraming::Length(42))
    );
    assert_eq!(
        framing(&[("Content-Length", "7, 7"), ("content-length", "7")]),
        Ok(BodyFraming::Length(7))
    );
    assert_eq!(
        framing(&[("Content-Length", "18446744073709551615")]),
        Ok(BodyFraming::Length(u64::MAX))
    );
    assert_eq!(
        framing(&[("Transfer-Encoding", "chunked")]),
        Ok(BodyFraming::Chunked)
    );
    assert_eq!(
        framing(&[("transfer-encoding", " CHUNKED\t")]),
        Ok(BodyFraming::Chunked)
    );
    // Empty list elements are no codings (RFC 9110 §5.6.1).
    assert_eq!(
        framing(&[
            ("Transfer-Encoding", ", chunked ,"),
            ("Transfer-Encoding", "")
        ]),
        Ok(BodyFraming::Chunked)
    );

    let bad_length = Err(HeadError::Framing("invalid content-length"));
    for value in [
        "",
        "-1",
        "+1",
        "1 2",
        "0x10",
        "18446744073709551616",
        "5,",
        " ",
        "1.0",
    ] {
        assert_eq!(
            framing(&[("Content-Length", value)]),
            bad_length,
            "{value:?}"
        );
    }
    let conflict = Err(HeadError::Framing("conflicting content-length"));
    assert_eq!(framing(&[("Content-Length", "1, 2")]), conflict);
    assert_eq!(
        framing(&[("Content-Length", "1"), ("Content-Length", "2")]),
        conflict
    );

    let both = Err(HeadError::Framing(
        "both transfer-encoding and content-length",
    ));
    assert_eq!(
        framing(&[("Transfer-Encoding", "chunked"), ("Content-Length", "3")]),
        both
    );
    assert_eq!(
        framing(&[("Content-Length", "3"), ("Transfer-Encoding", "gzip")]),
        both
    );

    // Valid HTTP, but anything other than a single `chunked` is refused on a request.
    let not_chunked = Err(HeadError::Framing("transfer coding other than chunked"));
    for pairs in [
        &[("Transfer-Encoding", "gzip")][..],
        &[("Transfer-Encoding", "gzip, CHUNKED")],
        &[
            ("Transfer-Encoding", "gzip"),
            ("transfer-encoding", "chunked"),
        ],
        &[("Transfer-Encoding", "chunked, gzip")],
        &[
            ("Transfer-Encoding", "chunked"),
            ("Transfer-Encoding", "gzip"),
        ],
        &[("Transfer-Encoding", "identity")],
        &[("Transfer-Encoding", "chunkedx")],
        &[("Transfer-Encoding", "chunked x")],
    ] {
        assert_eq!(framing(pairs), not_chunked, "{pairs:?}");
    }

    let twice = Err(HeadError::Framing("chunked applied more than once"));
    assert_eq!(framing(&[("Transfer-Encoding", "chunked, chunked")]), twice);
    assert_eq!(
        framing(&[
            ("Transfer-Encoding", "chunked"),
            ("Transfer-Encoding", "chunked")
        ]),
        twice
    );
    assert_eq!(
        framing(&[("Transfer-Encoding", " , ")]),
        Err(HeadError::Framing("empty transfer-encoding"))
    );
    assert_eq!(
        framing(&[("Transfer-Encoding", "chunked;a=b")]),
        Err(HeadError::Framing("chunked with parameters"))
    );
}

#[test]
fn request_framing_by_version() {
    let chunked = fields(&[("Transfer-Encoding", "chunked")]);
    let length = fields(&[("Content-Length", "4")]);
    assert_eq!(
        request_framing_for(Version::Http11, &chunked),
        Ok(BodyFraming::Chunked)
    );
    assert_eq!(
        request_framing_for(Version::Http10, &length),
        Ok(BodyFraming::Length(4))
    );
    assert_eq!(
        request_framing_for(Version::Http10, &[]),
        Ok(BodyFraming::None)
    );

    let faulty = Err(HeadError::Framing(
        "transfer-encoding in an http/1.0 request",
    ));
    assert_eq!(request_framing_for(Version::Http10, &chunked), faulty);
    let gzip = fields(&[("Transfer-Encoding", "gzip")]);
    assert_eq!(request_framing_for(Version::Http10, &gzip), faulty);
    let with_length = fields(&[("Transfer-Encoding", "chunked"), ("Content-Length", "4")]);
    assert_eq!(request_framing_for(Version::Http10, &with_length), faulty);

    // A malformed field is reported as such whatever the version.
    let twice = fields(&[("Transfer-Encoding", "chunked, chunked")]);
    assert_eq!(
        request_framing_for(Version::Http10, &twice),
        Err(HeadError::Framing("chunked applied more than once"))
    );
}

#[test]
fn response_framing_cases() {
    let framing =
        |method, status, pairs: &[(&str, &str)]| response_framing(method, status, &fields(pairs));
    let length = [("Content-Length", "5")];
    assert_eq!(framing("HEAD", 200, &length), Ok(BodyFraming::None));
    assert_eq!(framing("GET", 101, &length), Ok(BodyFraming::None));
    assert_eq!(framing("GET", 204, &length), Ok(BodyFraming::None));
    assert_eq!(framing("GET", 304, &length), Ok(BodyFraming::None));
    assert_eq!(framing("CONNECT", 200, &length), Ok(BodyFraming::None));
    assert_eq!(framing("CONNECT", 407, &length), Ok(BodyFraming::Length(5)));
    assert_eq!(framing("GET", 200, &length), Ok(BodyFraming::Length(5)));
    assert_eq!(framing("GET", 200, &[]), Ok(BodyFraming::UntilClose));
    assert_eq!(
        framing("GET", 200, &[("Transfer-Encoding", "chunked")]),
        Ok(BodyFraming::Chunked)
    );
    assert_eq!(
        framing(
            "GET",
            200,
            &[("Transfer-Encoding", "chunked"), ("Content-Length", "5")]
        ),
        Ok(BodyFraming::Chunked)
    );
    assert_eq!(
        framing("GET", 200, &[("Transfer-Encoding", "gzip")]),
        Ok(BodyFraming::UntilClose)
    );
    // A response may still stack codings before the final chunked.
    assert_eq!(
        framing("GET", 200, &[("Transfer-Encoding", "gzip, chunked")]),
        Ok(BodyFraming::Chunked)
    );
    assert_eq!(
        framing("GET", 200, &[("Transfer-Encoding", "chunked, gzip")]),
        Ok(BodyFraming::UntilClose)
    );
    assert_eq!(
        framing("GET", 200, &[("Content-Length", "5, 6")]),
        Err(HeadError::Framing("conflicting content-length"))
    );
    assert_eq!(
        framing("GET", 200, &[("Content-Length", "x")]),
        Err(HeadError::Framing("invalid content-length"))
    );
}

#[test]
fn keep_alive_cases() {
    let none = fields(&[]);
    assert!(keep_alive(Version::Http11, &none));
    assert!(!keep_alive(Version::Http10, &none));
    assert!(!keep_alive(
        Version::Http11,
        &fields(&[("Connection", "Upgrade, Close")])
    ));
    assert!(!keep_alive(
        Version::Http11,
        &fields(&[("Connection", "upgrade"), ("connection", " close ")])
    ));
    assert!(keep_alive(
        Version::Http11,
        &fields(&[("Connection", "closed")])
    ));
    assert!(keep_alive(
        Version::Http10,
        &fields(&[("Connection", "Keep-Alive")])
    ));
    assert!(!keep_alive(
        Version::Http10,
        &fields(&[("Connection", "keep-alive, close")])
    ));
    assert!(!keep_alive(
        Version::Http10,
        &fields(&[("Keep-Alive", "timeout=5")])
    ));
}

#[test]
fn hop_by_hop_cases() {
    let listed = fields(&[
        ("Connection", "X-Trace, keep-alive"),
        ("connection", "x-other"),
    ]);
    for name in [
        "Connection",
        "KEEP-ALIVE",
        "Proxy-Connection",
        "proxy-authorization",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "x-trace",
        "X-Other",
    ] {
        assert!(is_hop_by_hop(name, &listed), "{name}");
    }
    for name in [
        "Host",
        "Content-Length",
        "proxy",
        "Trailers",
        "X-Traced",
        "t",
    ] {
        assert!(!is_hop_by_hop(name, &listed), "{name}");
    }
}

#[test]
fn reason_phrases() {
    assert_eq!(reason(200), "OK");
    assert_eq!(reason(308), "Permanent Redirect");
    assert_eq!(reason(431), "Request Header Fields Too Large");
    assert_eq!(reason(502), "Bad Gateway");
    assert_eq!(reason(599), "");
}

#[test]
fn garbage_requests_never_panic() {
    let seed = b"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\
                 Transfer-Encoding: chunked\r\n\r\n";
    let alphabet = b"GET HTTP/1.0\r\n:,; chunked0123456789abcxyz\t\x00\xff";
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut buf = Vec::with_capacity(seed.len());
    for _ in 0..20_000 {
        buf.clear();
        buf.extend_from_slice(seed);
        for _ in 0..next() % 6 + 1 {
            let x = next();
            let at = x as usize % buf.len();
            buf[at] = alphabet[(x >> 32) as usize % alphabet.len()];
        }
        let cut = next() as usize % (buf.len() + 1);
        let mut headers = empty();
        if let Ok(Some(head)) = parse_request(&buf[..cut], &mut headers) {
            assert!(head.len <= cut);
            let _ = request_framing_for(head.version, head.headers);
            if let Ok(Some(host)) = single_host(head.headers) {
                let _ = validate_authority(host);
            }
            let _ = keep_alive(head.version, head.headers);
            let _ = is_hop_by_hop("x", head.headers);
        }
    }
}

#[test]
fn valid_authorities() {
    for authority in [
        "a.test",
        "a.test:8080",
        "127.0.0.1:80",
        "[::1]:8443",
        "[::1]",
        "[2001:db8::1]:1",
        "A-b_c~d.TEST.",
        "localhost:65535",
        "a.test:0",
        "a.test:00080",
        "x!$&'()*+,;=",
    ] {
        assert_eq!(validate_authority(authority), Ok(()), "{authority:?}");
    }
    let longest = format!("{}:443", "a".repeat(MAX_AUTHORITY_LEN - 4));
    assert_eq!(validate_authority(&longest), Ok(()));
}

#[test]
fn invalid_authorities() {
    let long = "a".repeat(MAX_AUTHORITY_LEN + 1);
    for authority in [
        "x@a.test",
        "a.test:abc",
        "a.test:99999",
        "a.test:65536",
        "a.test:",
        "a.test:123456",
        "a.test:-1",
        "a.test:+80",
        "a.test:80:80",
        "a b",
        " a.test",
        "a.test/x",
        "a.test\\x",
        "a.test?x",
        "a.test#x",
        "a%2etest",
        "a\ttest",
        "a\u{7f}test",
        "\u{e9}.test",
        "[zz]",
        "[::1",
        "[::1]x",
        "[::1]:",
        "[v1.x]",
        "[127.0.0.1]",
        "::1",
        ":80",
        "",
        long.as_str(),
    ] {
        assert_eq!(
            validate_authority(authority),
            Err(HeadError::Malformed("invalid Host")),
            "{authority:?}"
        );
    }
    assert_eq!(HeadError::Malformed("invalid Host").status(), 400);
}

#[test]
fn single_host_cases() {
    assert_eq!(single_host(&fields(&[])), Ok(None));
    assert_eq!(
        single_host(&fields(&[("X-A", "1"), ("host", " a.test:80\t")])),
        Ok(Some("a.test:80"))
    );
    assert_eq!(single_host(&fields(&[("Host", "")])), Ok(Some("")));
    assert_eq!(
        single_host(&fields(&[("Host", "a.test"), ("HOST", "a.test")])),
        Err(HeadError::Malformed("more than one Host"))
    );
    let not_utf8 = [httparse::Header {
        name: "Host",
        value: b"a\xff.test",
    }];
    assert_eq!(
        single_host(&not_utf8),
        Err(HeadError::Malformed("invalid Host"))
    );
}

#[test]
fn target_forms() {
    for target in ["/", "/a/b?c=d", "//x", "/*"] {
        assert!(is_origin_form(target), "{target:?}");
    }
    for target in ["", "*", "a/b", "http://a.test/", "/a b", "/a\tb", "/a\x7f"] {
        assert!(!is_origin_form(target), "{target:?}");
    }
    assert!(is_asterisk_form("*"));
    for target in ["", "**", "/*", "* ", "/"] {
        assert!(!is_asterisk_form(target), "{target:?}");
    }
}

#[test]
fn a_relaying_proxy_takes_only_chunked_codings() {
    let relayed = |pairs: &[(&str, &str)]| relayable_response_framing("GET", 200, &fields(pairs));
    assert_eq!(relayed(&[("Host", "a")]), Ok(BodyFraming::UntilClose));
    assert_eq!(
        relayed(&[("Transfer-Encoding", "Chunked")]),
        Ok(BodyFraming::Chunked)
    );
    assert_eq!(
        relayed(&[("Content-Length", "3")]),
        Ok(BodyFraming::Length(3))
    );
    for codings in ["gzip", "gzip, chunked", "chunked, gzip", "chunked;x=1", ""] {
        let listed = [("Transfer-Encoding", codings)];
        assert!(relayed(&listed).is_err(), "{codings}");
        // A plain parse still frames what it can.
        let plain = response_framing("GET", 200, &fields(&listed));
        assert_eq!(plain.is_ok(), codings.contains("gzip"), "{codings}");
    }
    let split = [
        ("Transfer-Encoding", "gzip"),
        ("Transfer-Encoding", "chunked"),
    ];
    assert!(relayed(&split).is_err());
    // No body, nothing to decode: HEAD and 204 answers pass whatever their coding says.
    let gzip = fields(&[("Transfer-Encoding", "gzip")]);
    assert_eq!(
        relayable_response_framing("HEAD", 200, &gzip),
        Ok(BodyFraming::None)
    );
    assert_eq!(
        relayable_response_framing("GET", 204, &gzip),
        Ok(BodyFraming::None)
    );
}
