//! Unit tests of `frame`.

use super::*;

const TUNNEL: Uuid = Uuid::from_bytes([7; 16]);
const CONNECTOR: Uuid = Uuid::from_bytes([9; 16]);

fn request_line() -> RequestLine<'static> {
    RequestLine {
        kind: StreamKind::WebSocket,
        body: BodyLen::Known(12),
        client_addr: "192.0.2.7:4431",
        method: "POST",
        authority: "app.example.com:8443",
        path: "/upload?x=1",
    }
}

fn sample_request() -> BytesMut {
    let mut out = BytesMut::new();
    let headers: [(&[u8], &[u8]); 2] = [(b"content-type", b"text/plain"), (b"x-empty", b"")];
    encode_request(&mut out, &request_line(), headers).unwrap();
    out
}

fn decode_all(buf: &[u8]) -> Frame<'_> {
    let (frame, used) = decode(buf).unwrap().unwrap();
    assert_eq!(used, buf.len());
    frame
}

/// A frame header with the given type and a payload, built by hand.
fn raw(ty: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![ty];
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

#[test]
fn request_round_trip() {
    let out = sample_request();
    let Frame::Request(req) = decode_all(&out) else {
        panic!("not a request")
    };
    assert_eq!(req.line.kind, StreamKind::WebSocket);
    assert_eq!(req.line.body, BodyLen::Known(12));
    assert_eq!(req.line.client_addr, "192.0.2.7:4431");
    assert_eq!(req.line.method, "POST");
    assert_eq!(req.line.authority, "app.example.com:8443");
    assert_eq!(req.line.path, "/upload?x=1");
    assert_eq!(req.headers.len(), 2);
    let fields: Vec<_> = req.headers.iter().collect();
    assert_eq!(
        fields,
        vec![
            (&b"content-type"[..], &b"text/plain"[..]),
            (&b"x-empty"[..], &b""[..])
        ]
    );
}

#[test]
fn response_round_trip_and_trailing_body() {
    let mut out = BytesMut::new();
    for body in [BodyLen::Empty, BodyLen::Unknown, BodyLen::Known(u64::MAX)] {
        out.clear();
        encode_response(&mut out, 204, body, [(&b"server"[..], &b"o"[..])]).unwrap();
        let frame_len = out.len();
        out.extend_from_slice(b"body");
        let (frame, used) = decode(&out).unwrap().unwrap();
        assert_eq!(used, frame_len);
        let Frame::Response(resp) = frame else {
            panic!("not a response")
        };
        assert_eq!(resp.status, 204);
        assert_eq!(resp.body, body);
        assert_eq!(
            resp.headers.iter().collect::<Vec<_>>(),
            vec![(&b"server"[..], &b"o"[..])]
        );
    }

    out.clear();
    encode_response(&mut out, 200, BodyLen::Empty, []).unwrap();
    assert_eq!(&out[..], &[TYPE_RESPONSE, 0, 0, 0, 5, 0, 200, 0, 0, 0][..]);
    let Frame::Response(resp) = decode_all(&out) else {
        panic!("not a response")
    };
    assert!(resp.headers.is_empty());
    assert_eq!(resp.headers.iter().count(), 0);
}

#[test]
fn control_frames_round_trip() {
    let mut out = BytesMut::new();
    encode_error(&mut out, ErrorCode::OriginTimeout, "origin took too long");
    let Frame::Error(e) = decode_all(&out) else {
        panic!("not an error")
    };
    assert_eq!(e.code, ErrorCode::OriginTimeout);
    assert_eq!(e.message, "origin took too long");

    out.clear();
    let register = Register {
        protocol_version: PROTOCOL_VERSION,
        tunnel_id: TUNNEL,
        secret: [0xab; SECRET_LEN],
        connector_id: CONNECTOR,
        conn_index: 3,
        ha_connections: 4,
        version: "0.1.0",
        platform: "linux-x86_64",
    };
    encode_register(&mut out, &register);
    let Frame::Register(r) = decode_all(&out) else {
        panic!("not a register")
    };
    assert_eq!(r.protocol_version, 2);
    assert_eq!(r.tunnel_id, TUNNEL);
    assert_eq!(r.secret, [0xab; SECRET_LEN]);
    assert_eq!(r.connector_id, CONNECTOR);
    assert_eq!(r.conn_index, 3);
    assert_eq!(r.ha_connections, 4);
    assert_eq!(r.version, "0.1.0");
    assert_eq!(r.platform, "linux-x86_64");

    out.clear();
    let registered = Registered {
        connection_id: TUNNEL,
        edge_worker: 513,
        edge_workers: 1027,
        edge_version: "e",
    };
    encode_registered(&mut out, &registered);
    let Frame::Registered(r) = decode_all(&out) else {
        panic!("not registered")
    };
    assert_eq!(r.connection_id, TUNNEL);
    assert_eq!(r.edge_worker, 513);
    assert_eq!(r.edge_workers, 1027);
    assert_eq!(
        &out[..],
        &[
            TYPE_REGISTERED,
            0,
            0,
            0,
            23,
            7,
            7,
            7,
            7,
            7,
            7,
            7,
            7,
            7,
            7,
            7,
            7,
            7,
            7,
            7,
            7,
            2,
            1,
            4,
            3,
            0,
            1,
            b'e',
        ][..]
    );
    assert_eq!(r.edge_version, "e");

    out.clear();
    let refused = Refused {
        code: RefuseCode::BadSecret,
        message: "wrong secret",
    };
    encode_refused(&mut out, &refused);
    let Frame::Refused(r) = decode_all(&out) else {
        panic!("not refused")
    };
    assert_eq!(r.code, RefuseCode::BadSecret);
    assert_eq!(r.message, "wrong secret");
    assert!(!r.code.retryable());
    assert!(RefuseCode::Unavailable.retryable());

    out.clear();
    encode_unregister(&mut out);
    assert_eq!(&out[..], &[TYPE_UNREGISTER, 0, 0, 0, 0][..]);
    assert!(matches!(decode_all(&out), Frame::Unregister));
}

#[test]
fn every_prefix_is_incomplete() {
    let out = sample_request();
    for end in 0..out.len() {
        assert_eq!(
            decode(&out[..end]).map(|f| f.is_none()),
            Ok(true),
            "prefix {end}"
        );
    }
}

#[test]
fn too_large_seen_from_the_header() {
    let len = (MAX_FRAME_LEN as u32 + 1).to_be_bytes();
    let header = [TYPE_REQUEST, len[0], len[1], len[2], len[3]];
    assert_eq!(
        decode(&header).err(),
        Some(FrameError::TooLarge(MAX_FRAME_LEN + 1))
    );
    assert_eq!(decode(&header[..4]).map(|f| f.is_none()), Ok(true));
}

#[test]
fn encoding_too_large_leaves_out_untouched() {
    let mut out = BytesMut::from(&b"keep"[..]);
    let big = vec![b'a'; 30 * 1024];
    let headers: [(&[u8], &[u8]); 2] = [(b"a", &big), (b"b", &big)];
    let err = encode_response(&mut out, 200, BodyLen::Empty, headers);
    assert_eq!(
        err,
        Err(FrameError::TooLarge(
            3 + 2 + 2 + 1 + 2 + big.len() + 2 + 1 + 2 + big.len()
        ))
    );
    assert_eq!(&out[..], b"keep");

    let huge = vec![b'a'; u16::MAX as usize + 1];
    let err = encode_response(&mut out, 200, BodyLen::Empty, [(&b"a"[..], &huge[..])]);
    assert_eq!(err, Err(FrameError::TooLarge(u16::MAX as usize + 1)));
    assert_eq!(&out[..], b"keep");

    let bad = encode_response(&mut out, 200, BodyLen::Empty, [(&b"a b"[..], &b"v"[..])]);
    assert_eq!(bad, Err(FrameError::Malformed("response")));
    let bad = encode_response(&mut out, 200, BodyLen::Empty, [(&b"a"[..], &b"v\r\nx"[..])]);
    assert_eq!(bad, Err(FrameError::Malformed("response")));
    assert_eq!(&out[..], b"keep");
}

#[test]
fn long_text_is_cut_at_a_char_boundary() {
    let mut out = BytesMut::new();
    let message = "é".repeat(MAX_TEXT_LEN);
    encode_error(&mut out, ErrorCode::Internal, &message);
    let Frame::Error(e) = decode_all(&out) else {
        panic!("not an error")
    };
    assert_eq!(e.message.len(), MAX_TEXT_LEN);
    assert_eq!(e.message, "é".repeat(MAX_TEXT_LEN / 2));
}

#[test]
fn unknown_type() {
    assert_eq!(
        decode(&[0x7f, 0, 0, 0, 0]).err(),
        Some(FrameError::UnknownType(0x7f))
    );
    assert_eq!(
        decode(&[0x04, 0, 0, 0, 9, 1]).err(),
        Some(FrameError::UnknownType(0x04))
    );
}

#[test]
fn inner_lengths_are_checked() {
    // Refused, code 0, message length 5 with only 4 bytes present.
    let short = raw(TYPE_REFUSED, &[0, 0, 5, b'a', b'b', b'c', b'd']);
    assert_eq!(decode(&short).err(), Some(FrameError::Malformed("refused")));

    // The same with a byte left over after the message.
    let long = raw(TYPE_REFUSED, &[0, 0, 3, b'a', b'b', b'c', b'd']);
    assert_eq!(decode(&long).err(), Some(FrameError::Malformed("refused")));

    // A response claiming two header fields but carrying one.
    let one = raw(TYPE_RESPONSE, &[0, 200, 0, 0, 2, 0, 1, b'a', 0, 1, b'b']);
    assert_eq!(decode(&one).err(), Some(FrameError::Malformed("response")));

    // A header value length running past the payload.
    let past = raw(TYPE_RESPONSE, &[0, 200, 0, 0, 1, 0, 1, b'a', 0, 9, b'b']);
    assert_eq!(decode(&past).err(), Some(FrameError::Malformed("response")));

    // Unknown enum values.
    assert_eq!(
        decode(&raw(TYPE_REFUSED, &[4, 0, 0])).err(),
        Some(FrameError::Malformed("refused"))
    );
    assert_eq!(
        decode(&raw(TYPE_ERROR, &[6, 0, 0])).err(),
        Some(FrameError::Malformed("error"))
    );
    assert_eq!(
        decode(&raw(TYPE_RESPONSE, &[0, 200, 3, 0, 0])).err(),
        Some(FrameError::Malformed("response"))
    );
    assert_eq!(
        decode(&raw(TYPE_RESPONSE, &[0, 99, 0, 0, 0])).err(),
        Some(FrameError::Malformed("response"))
    );
    assert_eq!(
        decode(&raw(TYPE_UNREGISTER, &[0])).err(),
        Some(FrameError::Malformed("unregister"))
    );

    let mut req = sample_request().to_vec();
    req[5] = 3;
    assert_eq!(decode(&req).err(), Some(FrameError::Malformed("request")));
}

#[test]
fn invalid_utf8_is_malformed() {
    let bad = raw(TYPE_ERROR, &[0, 0, 2, 0xc3, 0x28]);
    assert_eq!(decode(&bad).err(), Some(FrameError::Malformed("error")));
}

#[test]
fn garbage_never_panics() {
    let seed = sample_request().to_vec();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut buf = Vec::with_capacity(128);
    for _ in 0..20_000 {
        buf.clear();
        let r = next();
        if r % 2 == 0 {
            // Mutate a few bytes of a valid frame, which reaches deeper than pure noise.
            buf.extend_from_slice(&seed);
            for _ in 0..(r >> 8) % 4 + 1 {
                let x = next();
                let at = (x as usize) % buf.len();
                buf[at] = (x >> 32) as u8;
            }
        } else {
            let len = (r >> 8) % 96;
            buf.extend((0..len).map(|_| next() as u8));
            if let Some(first) = buf.first_mut() {
                *first = [TYPE_REQUEST, TYPE_RESPONSE, TYPE_REGISTER, TYPE_REFUSED]
                    [(r >> 20) as usize % 4];
            }
            if buf.len() >= 5 {
                let payload = (buf.len() - 5) as u32;
                buf[1..5].copy_from_slice(&payload.to_be_bytes());
            }
        }
        if let Ok(Some((Frame::Request(req), _))) = decode(&buf) {
            assert_eq!(req.headers.iter().count(), req.headers.len());
        }
    }
}

#[test]
fn byte_classes_follow_their_definitions_for_every_byte() {
    let tokens = b"!#$%&'*+-.^_`|~0123456789\
        ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    for b in 0..=255u8 {
        let one = [b];
        assert_eq!(wire::is_token(&one), tokens.contains(&b), "token {b:#04x}");
        let field = b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80;
        assert_eq!(wire::is_field_value(&one), field, "field value {b:#04x}");
        if let Ok(text) = std::str::from_utf8(&one) {
            let visible = (0x21..0x7f).contains(&b);
            assert_eq!(wire::is_visible(text), visible, "visible {b:#04x}");
        }
    }
    assert!(!wire::is_token(b""));
    assert!(wire::is_field_value(b""));
    assert!(wire::is_token(b"X-Request-Id"));
    assert!(!wire::is_token(b"X Request"));
    assert!(!wire::is_field_value(b"a\r\nb"));
    assert!(wire::is_visible("/caf\u{e9}?q=1"));
    assert!(!wire::is_visible("/a b"));
}
