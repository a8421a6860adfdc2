//! A header frame from the tunnel peer: decode it, walk its header fields, and encode it again
//! with the matching encoder. Encoding is canonical, so a frame whose text fields fit
//! [`MAX_TEXT_LEN`] must come back byte for byte; longer text is cut by the encoders, and the
//! frame must then decode to the same fields with that text cut.

#![no_main]

use adit::tunnel::frame::{
    decode, encode_error, encode_refused, encode_register, encode_registered, encode_request,
    encode_response, encode_unregister, Frame, FrameError, Headers, FRAME_HEADER_LEN,
    MAX_FRAME_LEN, MAX_TEXT_LEN,
};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (frame, used) = match decode(data) {
        Ok(Some(decoded)) => decoded,
        Ok(None) => {
            if let Some(&[_, l0, l1, l2, l3]) = data.first_chunk::<FRAME_HEADER_LEN>() {
                let len = u32::from_be_bytes([l0, l1, l2, l3]) as usize;
                assert!(
                    data.len() < FRAME_HEADER_LEN + len,
                    "complete frame not decoded"
                );
            }
            return;
        }
        Err(FrameError::TooLarge(len)) => {
            assert!(len > MAX_FRAME_LEN);
            return;
        }
        Err(_) => return,
    };
    assert!(
        used >= FRAME_HEADER_LEN && used <= data.len() && used <= FRAME_HEADER_LEN + MAX_FRAME_LEN
    );
    let original = &data[..used];

    // The codec reads a frame only once all of it is there.
    let short = decode(&original[..used - 1]);
    assert!(
        matches!(short, Ok(None)),
        "prefix of a frame gave {short:?}"
    );

    let mut out = BytesMut::new();
    let mut capped = false;
    match frame {
        Frame::Request(request) => {
            check_headers(request.headers);
            encode_request(&mut out, &request.line, request.headers.iter())
                .expect("a decoded request encodes");
        }
        Frame::Response(response) => {
            check_headers(response.headers);
            encode_response(
                &mut out,
                response.status,
                response.body,
                response.headers.iter(),
            )
            .expect("a decoded response encodes");
        }
        Frame::Error(error) => {
            capped = error.message.len() > MAX_TEXT_LEN;
            encode_error(&mut out, error.code, error.message);
        }
        Frame::Register(register) => {
            capped =
                register.version.len() > MAX_TEXT_LEN || register.platform.len() > MAX_TEXT_LEN;
            encode_register(&mut out, &register);
        }
        Frame::Registered(registered) => {
            capped = registered.edge_version.len() > MAX_TEXT_LEN;
            encode_registered(&mut out, &registered);
        }
        Frame::Refused(refused) => {
            capped = refused.message.len() > MAX_TEXT_LEN;
            encode_refused(&mut out, &refused);
        }
        Frame::Unregister => encode_unregister(&mut out),
        _ => unreachable!("a frame kind this target does not know"),
    }
    if !capped {
        assert_eq!(&out[..], original, "re-encoding changed the bytes");
    }

    let (again, again_used) = decode(&out)
        .expect("re-encoded frame decodes")
        .expect("complete");
    assert_eq!(again_used, out.len());
    same_fields(&frame, &again);
});

/// Walking the fields yields exactly the count the frame declares.
fn check_headers(headers: Headers<'_>) {
    assert_eq!(headers.iter().count(), headers.len());
    assert_eq!(headers.is_empty(), headers.iter().next().is_none());
}

/// `text` as the encoders write it: at most [`MAX_TEXT_LEN`] bytes, cut at a char boundary.
fn cut(text: &str) -> &str {
    let mut end = text.len().min(MAX_TEXT_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn fields(headers: Headers<'_>) -> Vec<(&[u8], &[u8])> {
    headers.iter().collect()
}

/// Every field of the decoded frame equals the re-decoded one, text compared as cut.
fn same_fields(first: &Frame<'_>, second: &Frame<'_>) {
    match (first, second) {
        (Frame::Request(a), Frame::Request(b)) => {
            let (a_line, b_line) = (&a.line, &b.line);
            assert_eq!(a_line.kind, b_line.kind);
            assert_eq!(a_line.body, b_line.body);
            assert_eq!(a_line.client_addr, b_line.client_addr);
            assert_eq!(a_line.method, b_line.method);
            assert_eq!(a_line.authority, b_line.authority);
            assert_eq!(a_line.path, b_line.path);
            assert_eq!(fields(a.headers), fields(b.headers));
        }
        (Frame::Response(a), Frame::Response(b)) => {
            assert_eq!((a.status, a.body), (b.status, b.body));
            assert_eq!(fields(a.headers), fields(b.headers));
        }
        (Frame::Error(a), Frame::Error(b)) => {
            assert_eq!((a.code, cut(a.message)), (b.code, b.message));
        }
        (Frame::Register(a), Frame::Register(b)) => {
            assert_eq!(a.protocol_version, b.protocol_version);
            assert_eq!(a.tunnel_id, b.tunnel_id);
            assert_eq!(a.secret, b.secret);
            assert_eq!(a.connector_id, b.connector_id);
            assert_eq!(a.conn_index, b.conn_index);
            assert_eq!(a.ha_connections, b.ha_connections);
            assert_eq!(cut(a.version), b.version);
            assert_eq!(cut(a.platform), b.platform);
        }
        (Frame::Registered(a), Frame::Registered(b)) => {
            assert_eq!(a.connection_id, b.connection_id);
            assert_eq!(a.edge_worker, b.edge_worker);
            assert_eq!(a.edge_workers, b.edge_workers);
            assert_eq!(cut(a.edge_version), b.edge_version);
        }
        (Frame::Refused(a), Frame::Refused(b)) => {
            assert_eq!((a.code, cut(a.message)), (b.code, b.message));
        }
        (Frame::Unregister, Frame::Unregister) => {}
        (a, b) => panic!("frame kind changed: {a:?} became {b:?}"),
    }
}
