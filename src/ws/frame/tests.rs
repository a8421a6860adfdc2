//! Unit tests of `ws::frame`, with the examples of RFC 6455 §5.7 byte for byte.

use super::*;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
/// §5.7: "Hello" masked with `KEY`.
const MASKED_HELLO: [u8; 5] = [0x7f, 0x9f, 0x4d, 0x51, 0x58];

fn header(buf: &[u8]) -> (FrameHeader, usize) {
    decode_header(buf).unwrap().unwrap()
}

fn encode(header: &FrameHeader) -> Vec<u8> {
    let mut out = [0u8; MAX_HEADER_LEN];
    let len = encode_header(header, &mut out);
    out[..len].to_vec()
}

fn data(fin: bool, opcode: Opcode, mask: Option<[u8; 4]>, len: u64) -> FrameHeader {
    FrameHeader {
        fin,
        opcode,
        mask,
        len,
    }
}

#[test]
fn rfc_examples_decode_and_encode() {
    // A single-frame unmasked text message.
    let unmasked = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    let expected = data(true, Opcode::Text, None, 5);
    assert_eq!(header(&unmasked), (expected, 2));
    assert_eq!(encode(&expected), [0x81, 0x05]);

    // A single-frame masked text message.
    let mut masked = vec![0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d];
    masked.extend_from_slice(&MASKED_HELLO);
    let expected = data(true, Opcode::Text, Some(KEY), 5);
    assert_eq!(header(&masked), (expected, 6));
    assert_eq!(encode(&expected), masked[..6]);

    // A fragmented unmasked text message.
    assert_eq!(
        header(&[0x01, 0x03, 0x48, 0x65, 0x6c]),
        (data(false, Opcode::Text, None, 3), 2)
    );
    assert_eq!(
        header(&[0x80, 0x02, 0x6c, 0x6f]),
        (data(true, Opcode::Continuation, None, 2), 2)
    );

    // Unmasked ping, masked pong.
    assert_eq!(
        header(&[0x89, 0x05]),
        (data(true, Opcode::Ping, None, 5), 2)
    );
    let pong = [0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d];
    assert_eq!(header(&pong), (data(true, Opcode::Pong, Some(KEY), 5), 6));

    // 256 bytes and 64 KiB in one unmasked binary frame.
    let expected = data(true, Opcode::Binary, None, 256);
    assert_eq!(header(&[0x82, 0x7E, 0x01, 0x00]), (expected, 4));
    assert_eq!(encode(&expected), [0x82, 0x7E, 0x01, 0x00]);
    let long = [0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00];
    let expected = data(true, Opcode::Binary, None, 65536);
    assert_eq!(header(&long), (expected, 10));
    assert_eq!(encode(&expected), long);
}

#[test]
fn partial_headers_ask_for_more() {
    let long = [0x82, 0xFF, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00, 1, 2, 3, 4];
    for end in 0..long.len() {
        assert_eq!(decode_header(&long[..end]), Ok(None), "prefix of {end}");
    }
    assert_eq!(
        header(&long),
        (data(true, Opcode::Binary, Some([1, 2, 3, 4]), 65536), 14)
    );
}

#[test]
fn invalid_headers_are_refused() {
    let error = |buf: &[u8]| decode_header(buf).unwrap_err();
    assert_eq!(error(&[0xC2, 0x00]), WsError::ReservedBits);
    assert_eq!(error(&[0x92, 0x00]), WsError::ReservedBits);
    assert_eq!(error(&[0x83, 0x00]), WsError::UnknownOpcode(3));
    assert_eq!(error(&[0x8B, 0x00]), WsError::UnknownOpcode(0xB));
    assert_eq!(error(&[0x09, 0x00]), WsError::FragmentedControl);
    assert_eq!(error(&[0x89, 0x7E]), WsError::ControlTooLong);
    assert_eq!(error(&[0x88, 0x7F]), WsError::ControlTooLong);
    assert_eq!(error(&[0x82, 0x7E, 0x00, 0x7D]), WsError::NonMinimalLength);
    assert_eq!(
        error(&[0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF]),
        WsError::NonMinimalLength
    );
    assert_eq!(
        error(&[0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0]),
        WsError::TooLarge(1 << 63)
    );
    assert_eq!(
        error(&[0x82, 0x7F, 0, 0, 0, 0, 0x01, 0, 0, 0x01]),
        WsError::TooLarge(MAX_FRAME_PAYLOAD + 1)
    );
    assert_eq!(WsError::TooLarge(0).close_code(), 1009);
    assert_eq!(WsError::Text.close_code(), 1003);
    assert_eq!(WsError::ReservedBits.close_code(), 1002);
}

#[test]
fn masking_is_its_own_inverse_at_any_offset() {
    let mut hello = MASKED_HELLO;
    apply_mask(&mut hello, KEY, 0);
    assert_eq!(&hello, b"Hello");

    // Unmasking in pieces that start mid-key gives the same bytes as in one go.
    let plain: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    let mut whole = plain.clone();
    apply_mask(&mut whole, KEY, 0);
    assert_eq!(whole[..4], [0x37, 0xfb, 0x23, 0x3e]);
    let mut pieces = whole.clone();
    let mut offset = 0;
    for len in [1, 2, 3, 9, 17, 100, 868] {
        let end = offset + len;
        apply_mask(&mut pieces[offset..end], KEY, offset as u64);
        offset = end;
    }
    assert_eq!(offset, 1000);
    assert_eq!(pieces, plain);
}

#[test]
fn frames_built_in_place() {
    let mut buf = BytesMut::with_capacity(64);
    buf.resize(HEADER_ROOM, 0);
    buf.extend_from_slice(b"Hello");
    let frame = frame_in_place(&mut buf, Opcode::Binary, None);
    assert_eq!(&frame[..], b"\x82\x05Hello");
    assert!(buf.is_empty());

    buf.resize(HEADER_ROOM, 0);
    buf.extend_from_slice(b"Hello");
    let frame = frame_in_place(&mut buf, Opcode::Binary, Some(KEY));
    let mut expected = vec![0x82, 0x85, 0x37, 0xfa, 0x21, 0x3d];
    expected.extend_from_slice(&MASKED_HELLO);
    assert_eq!(&frame[..], expected);

    let mut buf = BytesMut::new();
    buf.resize(HEADER_ROOM + 256, 7);
    let frame = frame_in_place(&mut buf, Opcode::Binary, None);
    assert_eq!(frame.len(), 260);
    assert_eq!(frame[..5], [0x82, 0x7E, 0x01, 0x00, 7]);

    // §5.7's masked pong, and the Close frames adit sends.
    let mut pong = vec![0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d];
    pong.extend_from_slice(&MASKED_HELLO);
    assert_eq!(&control_frame(Opcode::Pong, b"Hello", Some(KEY))[..], pong);
    assert_eq!(&close_frame(1000, None)[..], [0x88, 0x02, 0x03, 0xE8]);
    assert_eq!(control_frame(Opcode::Ping, &[1; 200], None).len(), 127);
}

fn decode_all(decoder: &mut Decoder, buf: &mut BytesMut) -> Result<Vec<Message>, WsError> {
    let mut out = Vec::new();
    while let Some(message) = decoder.decode(buf)? {
        out.push(message);
    }
    Ok(out)
}

fn bytes(data: &[u8]) -> BytesMut {
    BytesMut::from(data)
}

#[test]
fn server_unmasks_client_data_byte_by_byte() {
    let mut frame = vec![0x82, 0x85, 0x37, 0xfa, 0x21, 0x3d];
    frame.extend_from_slice(&MASKED_HELLO);
    let mut decoder = Decoder::new(Role::Server);
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for byte in frame {
        buf.extend_from_slice(&[byte]);
        for message in decode_all(&mut decoder, &mut buf).unwrap() {
            match message {
                Message::Data(run) => got.extend_from_slice(&run),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(got, b"Hello");
    assert!(buf.is_empty());
    assert!(decoder.between_frames());

    let mut decoder = Decoder::new(Role::Server);
    assert_eq!(
        decoder.decode(&mut bytes(b"\x82\x05Hello")),
        Err(WsError::Unmasked)
    );
    let mut decoder = Decoder::new(Role::Client);
    assert_eq!(
        decoder.decode(&mut bytes(b"\x82\x85\x37\xfa\x21\x3d")),
        Err(WsError::Masked)
    );
}

#[test]
fn client_gets_fragments_and_interleaved_control_frames() {
    let mut decoder = Decoder::new(Role::Client);
    let mut buf = bytes(b"\x02\x03Hel\x89\x05Hello\x80\x02lo\x8a\x00\x82\x00\x88\x02\x03\xE8");
    let messages = decode_all(&mut decoder, &mut buf).unwrap();
    assert_eq!(
        messages,
        [
            Message::Data(Bytes::from_static(b"Hel")),
            Message::Ping(Bytes::from_static(b"Hello")),
            Message::Data(Bytes::from_static(b"lo")),
            Message::Pong(Bytes::new()),
            Message::Close(Some(1000)),
        ]
    );
    assert!(buf.is_empty());

    // A control frame is handed out only once whole.
    let mut buf = bytes(b"\x89\x05Hel");
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert_eq!(buf.len(), 5);
    buf.extend_from_slice(b"lo");
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Some(Message::Ping(Bytes::from_static(b"Hello"))))
    );
}

#[test]
fn a_long_frame_streams_in_runs() {
    let mut decoder = Decoder::new(Role::Client);
    let mut buf = bytes(&[0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    let mut total = 0;
    for _ in 0..16 {
        buf.extend_from_slice(&[9; 4096]);
        match decoder.decode(&mut buf) {
            Ok(Some(Message::Data(run))) => total += run.len(),
            other => panic!("unexpected {other:?}"),
        }
        assert!(buf.is_empty());
    }
    assert_eq!(total, 65536);
    buf.extend_from_slice(b"\x88\x00");
    assert_eq!(decoder.decode(&mut buf), Ok(Some(Message::Close(None))));
}

#[test]
fn message_order_and_close_payloads_are_checked() {
    let error = |role, data: &[u8]| {
        let mut buf = bytes(data);
        decode_all(&mut Decoder::new(role), &mut buf).unwrap_err()
    };
    assert_eq!(
        error(Role::Client, b"\x80\x01x"),
        WsError::UnexpectedContinuation
    );
    assert_eq!(
        error(Role::Client, b"\x02\x01x\x82\x01y"),
        WsError::ExpectedContinuation
    );
    assert_eq!(error(Role::Client, b"\x81\x05Hello"), WsError::Text);
    assert_eq!(error(Role::Client, b"\x88\x01\x03"), WsError::BadClose);
    assert_eq!(error(Role::Client, b"\x88\x02\x03\xED"), WsError::BadClose);
    assert_eq!(
        error(Role::Client, b"\x88\x03\x03\xE8\xFF"),
        WsError::BadClose
    );

    let mut buf = bytes(b"\x88\x04\x0F\xA0ok");
    assert_eq!(
        Decoder::new(Role::Client).decode(&mut buf),
        Ok(Some(Message::Close(Some(4000))))
    );
}
