//! A response head from an origin, answering a request whose method the first byte picks:
//! parse it, decide its framing, then decode what follows the head as its body.

#![no_main]

use adit::http::{
    parse_response, response_framing, BodyDecoder, BodyFraming, HeadError, MAX_HEADERS,
    MAX_HEAD_LEN,
};
use adit_fuzz::drain;
use libfuzzer_sys::fuzz_target;

/// Methods whose responses are framed differently (HEAD, CONNECT) and two that are not.
const METHODS: [&str; 4] = ["GET", "HEAD", "CONNECT", "POST"];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, data)) = data.split_first() else {
        return;
    };
    let method = METHODS[usize::from(pick) % METHODS.len()];

    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let head = match parse_response(data, &mut headers) {
        Ok(Some(head)) => head,
        Ok(None) => {
            assert!(
                data.len() < MAX_HEAD_LEN,
                "incomplete at {} bytes",
                data.len()
            );
            return;
        }
        Err(e) => {
            assert!(matches!(e.status(), 400 | 431), "{e:?}");
            return;
        }
    };
    assert!(
        head.len <= data.len() && head.len <= MAX_HEAD_LEN,
        "head len {}",
        head.len
    );
    assert!(head.headers.len() <= MAX_HEADERS);

    // The connector parses again after every read, so one byte short must still be incomplete.
    let mut again = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let short = parse_response(&data[..head.len - 1], &mut again);
    assert!(
        matches!(short, Ok(None)),
        "prefix of a complete head gave {short:?}"
    );

    let framing = match response_framing(method, head.status, head.headers) {
        Ok(framing) => framing,
        Err(e) => {
            assert!(matches!(e, HeadError::Framing(_)), "{e:?}");
            return;
        }
    };
    let status = head.status;
    let bodiless = method == "HEAD"
        || (100..200).contains(&status)
        || status == 204
        || status == 304
        || (method == "CONNECT" && (200..300).contains(&status));
    if bodiless {
        assert_eq!(framing, BodyFraming::None);
    }
    let named = |name: &str| {
        head.headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case(name))
    };
    match framing {
        BodyFraming::None => assert!(bodiless),
        BodyFraming::Length(_) => assert!(named("content-length") && !named("transfer-encoding")),
        BodyFraming::Chunked => assert!(named("transfer-encoding")),
        BodyFraming::UntilClose => {}
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
            assert_eq!(drained.done, n <= rest.len() as u64);
        }
        BodyFraming::UntilClose => {
            assert_eq!((drained.body.as_slice(), drained.done), (rest, false));
            assert_eq!(decoder.eof(), Ok(()));
            assert!(decoder.is_done());
        }
        BodyFraming::Chunked => assert!(drained.body.len() <= rest.len()),
    }
});
