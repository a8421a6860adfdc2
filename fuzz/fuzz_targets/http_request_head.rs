//! A request head from a client: parse it, decide its framing and connection handling, then
//! decode what follows the head as its body.

#![no_main]

use adit::http::head::{is_hop_by_hop, keep_alive, serve_as_http11};
use adit::http::{
    parse_request, request_framing, BodyDecoder, BodyFraming, HeadError, Version, MAX_HEADERS,
    MAX_HEAD_LEN,
};
use adit_fuzz::drain;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let head = match parse_request(data, &mut headers) {
        Ok(Some(head)) => head,
        Ok(None) => {
            assert!(
                data.len() < MAX_HEAD_LEN,
                "incomplete at {} bytes",
                data.len()
            );
            return;
        }
        Err(HeadError::HigherMinorVersion { minor }) => {
            // Served as HTTP/1.1 once the caller rewrites the version where it was found:
            // the rewritten line must get past its version, or the caller would loop.
            let mut fixed = data.to_vec();
            serve_as_http11(&mut fixed, minor);
            let mut again = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let reparsed = parse_request(&fixed, &mut again);
            assert!(
                !matches!(reparsed, Err(HeadError::HigherMinorVersion { .. })),
                "{reparsed:?}"
            );
            return;
        }
        Err(e) => {
            assert!(matches!(e.status(), 400 | 414 | 431 | 505), "{e:?}");
            return;
        }
    };
    assert!(
        head.len <= data.len() && head.len <= MAX_HEAD_LEN,
        "head len {}",
        head.len
    );
    assert!(!head.method.is_empty() && !head.target.is_empty());
    assert!(head.headers.len() <= MAX_HEADERS);

    // The edge parses again after every read, so one byte short must still be incomplete.
    let mut again = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let short = parse_request(&data[..head.len - 1], &mut again);
    assert!(
        matches!(short, Ok(None)),
        "prefix of a complete head gave {short:?}"
    );

    let named = |name: &str| {
        head.headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case(name))
    };
    let keep = keep_alive(head.version, head.headers);
    if !named("connection") {
        assert_eq!(keep, head.version == Version::Http11);
    }
    for field in head.headers.iter() {
        assert!(!field.name.is_empty());
        let hop = is_hop_by_hop(field.name, head.headers);
        let fixed = [
            "connection",
            "transfer-encoding",
            "upgrade",
            "te",
            "trailer",
        ];
        let proxy = field
            .name
            .as_bytes()
            .get(..6)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"proxy-"));
        if proxy || fixed.iter().any(|f| field.name.eq_ignore_ascii_case(f)) {
            assert!(hop, "{} not hop-by-hop", field.name);
        }
    }

    let framing = match request_framing(head.headers) {
        Ok(framing) => framing,
        Err(e) => {
            assert!(matches!(e, HeadError::Framing(_)), "{e:?}");
            return;
        }
    };
    let (te, cl) = (named("transfer-encoding"), named("content-length"));
    match framing {
        BodyFraming::None => assert!(!te && !cl),
        BodyFraming::Length(_) => assert!(!te && cl),
        BodyFraming::Chunked => assert!(te && !cl),
        BodyFraming::UntilClose => panic!("a request body read until close"),
    }

    let rest = &data[head.len..];
    let mut decoder = BodyDecoder::new(framing);
    let Ok(drained) = drain(&mut decoder, &[rest]) else {
        assert_eq!(
            framing,
            BodyFraming::Chunked,
            "only chunked bodies can be malformed"
        );
        return;
    };
    match framing {
        BodyFraming::None => {
            assert!(drained.done && drained.body.is_empty());
            assert_eq!(drained.rest, rest);
        }
        BodyFraming::Length(n) => {
            let taken = usize::try_from(n).map_or(rest.len(), |n| n.min(rest.len()));
            assert_eq!(drained.body, &rest[..taken]);
            assert_eq!(drained.rest, &rest[taken..]);
            assert_eq!(drained.done, n <= rest.len() as u64);
        }
        _ => assert!(drained.body.len() <= rest.len()),
    }
});
