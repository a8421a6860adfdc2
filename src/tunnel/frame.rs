//! The tunnel's header frames: a sans-IO codec with no sockets and no clock.
//!
//! Every stream starts with exactly one header frame; what follows on the stream is raw body
//! bytes and the end of the stream is the end of the body. Data-plane streams are opened by
//! the edge and start with [`Frame::Request`]; the connector answers with
//! [`Frame::Response`] (or [`Frame::Error`] when the origin could not be reached). The
//! control stream is opened by the connector and carries [`Frame::Register`], then
//! [`Frame::Registered`] or [`Frame::Refused`], and later [`Frame::Unregister`].
//!
//! Wire format of a frame: one type byte, a big-endian `u32` payload length (at most
//! [`MAX_FRAME_LEN`]), then the payload. Strings and header fields are `u16`
//! length-prefixed; ids are 16 raw bytes. Decoding borrows from the input and never
//! allocates; encoding appends to a caller's `BytesMut`.

use bytes::{BufMut, BytesMut};
use uuid::Uuid;

use super::credentials::SECRET_LEN;
use wire::{is_token, is_visible, Encoder, Reader};

mod wire;

/// Largest payload a frame may declare: room for a 32 KiB head plus framing overhead.
pub const MAX_FRAME_LEN: usize = 40 * 1024;

/// Bytes before the payload: type and length.
pub const FRAME_HEADER_LEN: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamKind {
    Http,
    WebSocket,
    Tcp,
}

/// What the header frame says about the body that follows it on the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLen {
    /// No body follows; the sender finishes the stream right after the frame.
    Empty,
    /// Exactly this many bytes follow.
    Known(u64),
    /// Bytes follow until the stream ends.
    Unknown,
}

/// Why a connector could not produce a response from the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The origin refused the connection or could not be reached.
    OriginUnreachable,
    /// The origin accepted but did not answer in time.
    OriginTimeout,
    /// TLS to the origin failed.
    OriginTls,
    /// The origin sent something that is not valid HTTP.
    OriginProtocol,
    /// The request frame itself was not acceptable to the connector.
    BadRequest,
    /// Anything else inside the connector.
    Internal,
}

/// Why the edge refused a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefuseCode {
    UnknownTunnel,
    BadSecret,
    /// A transient failure on the edge; retrying later may succeed.
    Unavailable,
    /// The connector speaks a protocol version the edge does not.
    Version,
}

impl RefuseCode {
    /// Whether a connector should retry after this refusal.
    pub fn retryable(self) -> bool {
        matches!(self, RefuseCode::Unavailable)
    }
}

/// Header fields stored in a frame, iterated without allocation.
///
/// `buf` holds exactly `count` encoded fields; [`decode`] checked every length before it built
/// this value, so iteration never meets a length that runs past the end.
#[derive(Debug, Clone, Copy)]
pub struct Headers<'a> {
    buf: &'a [u8],
    count: u16,
}

impl<'a> Headers<'a> {
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// `(name, value)` pairs in the order they were encoded.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let mut reader = Reader::new(self.buf, "headers");
        (0..self.count).map_while(move |_| {
            let name = reader.bytes16().ok()?;
            let value = reader.bytes16().ok()?;
            Some((name, value))
        })
    }
}
/// Everything in a request frame but its header fields.
#[derive(Debug, Clone, Copy)]
pub struct RequestLine<'a> {
    pub kind: StreamKind,
    pub body: BodyLen,
    /// The public client's address, as the edge saw it.
    pub client_addr: &'a str,
    pub method: &'a str,
    /// The request's Host, as sent by the client (port included when present).
    pub authority: &'a str,
    /// The request target in origin form (`/path?query`).
    pub path: &'a str,
}

#[derive(Debug, Clone, Copy)]
pub struct RequestFrame<'a> {
    pub line: RequestLine<'a>,
    pub headers: Headers<'a>,
}

#[derive(Debug, Clone, Copy)]
pub struct ResponseFrame<'a> {
    pub status: u16,
    pub body: BodyLen,
    pub headers: Headers<'a>,
}

#[derive(Debug, Clone, Copy)]
pub struct ErrorFrame<'a> {
    pub code: ErrorCode,
    pub message: &'a str,
}

#[derive(Debug, Clone, Copy)]
pub struct Register<'a> {
    pub protocol_version: u16,
    pub tunnel_id: Uuid,
    pub secret: [u8; SECRET_LEN],
    pub connector_id: Uuid,
    pub conn_index: u8,
    pub version: &'a str,
    pub platform: &'a str,
}

#[derive(Debug, Clone, Copy)]
pub struct Registered<'a> {
    pub connection_id: Uuid,
    /// Which edge worker owns this connection.
    pub edge_worker: u16,
    pub edge_version: &'a str,
}

#[derive(Debug, Clone, Copy)]
pub struct Refused<'a> {
    pub code: RefuseCode,
    pub message: &'a str,
}

#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Frame<'a> {
    Request(RequestFrame<'a>),
    Response(ResponseFrame<'a>),
    Error(ErrorFrame<'a>),
    Register(Register<'a>),
    Registered(Registered<'a>),
    Refused(Refused<'a>),
    Unregister,
}

/// The version of this codec; [`Register::protocol_version`] carries it.
pub const PROTOCOL_VERSION: u16 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the {MAX_FRAME_LEN}-byte limit")]
    TooLarge(usize),
    #[error("unknown frame type {0:#04x}")]
    UnknownType(u8),
    #[error("malformed {0} frame")]
    Malformed(&'static str),
}

/// Longest text field the infallible encoders write; longer text is cut at a character
/// boundary. With every such field capped, those frames always fit in [`MAX_FRAME_LEN`].
pub const MAX_TEXT_LEN: usize = 4096;

const TYPE_REQUEST: u8 = 0x01;
const TYPE_RESPONSE: u8 = 0x02;
const TYPE_ERROR: u8 = 0x03;
const TYPE_REGISTER: u8 = 0x10;
const TYPE_REGISTERED: u8 = 0x11;
const TYPE_REFUSED: u8 = 0x12;
const TYPE_UNREGISTER: u8 = 0x13;

const BODY_EMPTY: u8 = 0;
const BODY_KNOWN: u8 = 1;
const BODY_UNKNOWN: u8 = 2;

/// Decodes one frame from the start of `buf`.
///
/// `Ok(None)` means more bytes are needed; `Ok(Some((frame, used)))` says how many bytes of
/// `buf` the frame took (what follows is body). An unknown type or an oversized length is
/// reported as soon as the 5-byte frame header is in `buf`, without waiting for the payload.
pub fn decode(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    let Some(&[ty, l0, l1, l2, l3]) = buf.first_chunk::<FRAME_HEADER_LEN>() else {
        return Ok(None);
    };
    if !matches!(
        ty,
        TYPE_REQUEST
            | TYPE_RESPONSE
            | TYPE_ERROR
            | TYPE_REGISTER
            | TYPE_REGISTERED
            | TYPE_REFUSED
            | TYPE_UNREGISTER
    ) {
        return Err(FrameError::UnknownType(ty));
    }
    let len = u32::from_be_bytes([l0, l1, l2, l3]) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(len));
    }

    let Some(payload) = buf.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len) else {
        return Ok(None);
    };
    let frame = match ty {
        TYPE_REQUEST => decode_request(payload)?,
        TYPE_RESPONSE => decode_response(payload)?,
        TYPE_ERROR => decode_error(payload)?,
        TYPE_REGISTER => decode_register(payload)?,
        TYPE_REGISTERED => decode_registered(payload)?,
        TYPE_REFUSED => decode_refused(payload)?,
        _ => {
            Reader::new(payload, "unregister").end()?;
            Frame::Unregister
        }
    };
    Ok(Some((frame, FRAME_HEADER_LEN + len)))
}

fn decode_request(payload: &[u8]) -> Result<Frame<'_>, FrameError> {
    let mut r = Reader::new(payload, "request");
    let kind = match r.u8()? {
        0 => StreamKind::Http,
        1 => StreamKind::WebSocket,
        2 => StreamKind::Tcp,
        _ => return Err(r.malformed()),
    };
    let body = r.body_len()?;
    let client_addr = r.str16()?;
    let method = r.str16()?;
    let authority = r.str16()?;
    let path = r.str16()?;
    if !is_token(method.as_bytes()) || !is_visible(authority) || !is_visible(path) {
        return Err(r.malformed());
    }
    let headers = r.headers()?;
    r.end()?;

    let line = RequestLine {
        kind,
        body,
        client_addr,
        method,
        authority,
        path,
    };
    Ok(Frame::Request(RequestFrame { line, headers }))
}

fn decode_response(payload: &[u8]) -> Result<Frame<'_>, FrameError> {
    let mut r = Reader::new(payload, "response");
    let status = r.u16()?;
    if !(100..=999).contains(&status) {
        return Err(r.malformed());
    }
    let body = r.body_len()?;
    let headers = r.headers()?;
    r.end()?;
    Ok(Frame::Response(ResponseFrame {
        status,
        body,
        headers,
    }))
}

fn decode_error(payload: &[u8]) -> Result<Frame<'_>, FrameError> {
    let mut r = Reader::new(payload, "error");
    let code = match r.u8()? {
        0 => ErrorCode::OriginUnreachable,
        1 => ErrorCode::OriginTimeout,
        2 => ErrorCode::OriginTls,
        3 => ErrorCode::OriginProtocol,
        4 => ErrorCode::BadRequest,
        5 => ErrorCode::Internal,
        _ => return Err(r.malformed()),
    };
    let message = r.str16()?;
    r.end()?;
    Ok(Frame::Error(ErrorFrame { code, message }))
}

fn decode_register(payload: &[u8]) -> Result<Frame<'_>, FrameError> {
    let mut r = Reader::new(payload, "register");
    let protocol_version = r.u16()?;
    let tunnel_id = r.uuid()?;
    let secret = r.array::<SECRET_LEN>()?;
    let connector_id = r.uuid()?;
    let conn_index = r.u8()?;
    let version = r.str16()?;
    let platform = r.str16()?;
    r.end()?;
    Ok(Frame::Register(Register {
        protocol_version,
        tunnel_id,
        secret,
        connector_id,
        conn_index,
        version,
        platform,
    }))
}

fn decode_registered(payload: &[u8]) -> Result<Frame<'_>, FrameError> {
    let mut r = Reader::new(payload, "registered");
    let connection_id = r.uuid()?;
    let edge_worker = r.u16()?;
    let edge_version = r.str16()?;
    r.end()?;
    Ok(Frame::Registered(Registered {
        connection_id,
        edge_worker,
        edge_version,
    }))
}

fn decode_refused(payload: &[u8]) -> Result<Frame<'_>, FrameError> {
    let mut r = Reader::new(payload, "refused");
    let code = match r.u8()? {
        0 => RefuseCode::UnknownTunnel,
        1 => RefuseCode::BadSecret,
        2 => RefuseCode::Unavailable,
        3 => RefuseCode::Version,
        _ => return Err(r.malformed()),
    };
    let message = r.str16()?;
    r.end()?;
    Ok(Frame::Refused(Refused { code, message }))
}

/// Appends a request frame; headers are `(name, value)` pairs.
///
/// Fails with [`FrameError::TooLarge`] when a field or the whole frame is over its limit and
/// with [`FrameError::Malformed`] when the method, authority, path or a header field could not
/// be decoded on the other side; `out` is then left as it was.
pub fn encode_request<'h>(
    out: &mut BytesMut,
    line: &RequestLine<'_>,
    headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
) -> Result<(), FrameError> {
    let valid = is_token(line.method.as_bytes()) && is_visible(line.authority);
    if !valid || !is_visible(line.path) {
        return Err(FrameError::Malformed("request"));
    }
    encode_with(out, TYPE_REQUEST, |enc| {
        enc.out.put_u8(match line.kind {
            StreamKind::Http => 0,
            StreamKind::WebSocket => 1,
            StreamKind::Tcp => 2,
        });
        enc.body_len(line.body);
        enc.bytes16(line.client_addr.as_bytes())?;
        enc.bytes16(line.method.as_bytes())?;
        enc.bytes16(line.authority.as_bytes())?;
        enc.bytes16(line.path.as_bytes())?;
        enc.headers(headers, "request")
    })
}

/// Appends a response frame; headers are `(name, value)` pairs.
///
/// Fails like [`encode_request`], and with [`FrameError::Malformed`] for a status outside
/// 100..=999; `out` is then left as it was.
pub fn encode_response<'h>(
    out: &mut BytesMut,
    status: u16,
    body: BodyLen,
    headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
) -> Result<(), FrameError> {
    if !(100..=999).contains(&status) {
        return Err(FrameError::Malformed("response"));
    }
    encode_with(out, TYPE_RESPONSE, |enc| {
        enc.out.put_u16(status);
        enc.body_len(body);
        enc.headers(headers, "response")
    })
}

/// Appends an error frame; a message longer than [`MAX_TEXT_LEN`] bytes is cut.
pub fn encode_error(out: &mut BytesMut, code: ErrorCode, message: &str) {
    encode_capped(out, TYPE_ERROR, |enc| {
        enc.out.put_u8(match code {
            ErrorCode::OriginUnreachable => 0,
            ErrorCode::OriginTimeout => 1,
            ErrorCode::OriginTls => 2,
            ErrorCode::OriginProtocol => 3,
            ErrorCode::BadRequest => 4,
            ErrorCode::Internal => 5,
        });
        enc.text(message);
    });
}

/// Appends a register frame; version and platform longer than [`MAX_TEXT_LEN`] bytes are cut.
pub fn encode_register(out: &mut BytesMut, register: &Register<'_>) {
    encode_capped(out, TYPE_REGISTER, |enc| {
        enc.out.put_u16(register.protocol_version);
        enc.out.put_slice(register.tunnel_id.as_bytes());
        enc.out.put_slice(&register.secret);
        enc.out.put_slice(register.connector_id.as_bytes());
        enc.out.put_u8(register.conn_index);
        enc.text(register.version);
        enc.text(register.platform);
    });
}

/// Appends a registered frame; an edge version longer than [`MAX_TEXT_LEN`] bytes is cut.
pub fn encode_registered(out: &mut BytesMut, registered: &Registered<'_>) {
    encode_capped(out, TYPE_REGISTERED, |enc| {
        enc.out.put_slice(registered.connection_id.as_bytes());
        enc.out.put_u16(registered.edge_worker);
        enc.text(registered.edge_version);
    });
}

/// Appends a refused frame; a message longer than [`MAX_TEXT_LEN`] bytes is cut.
pub fn encode_refused(out: &mut BytesMut, refused: &Refused<'_>) {
    encode_capped(out, TYPE_REFUSED, |enc| {
        enc.out.put_u8(match refused.code {
            RefuseCode::UnknownTunnel => 0,
            RefuseCode::BadSecret => 1,
            RefuseCode::Unavailable => 2,
            RefuseCode::Version => 3,
        });
        enc.text(refused.message);
    });
}

pub fn encode_unregister(out: &mut BytesMut) {
    encode_capped(out, TYPE_UNREGISTER, |_| {});
}

/// Writes one frame through `fill`; on any error `out` is truncated back to where it was.
fn encode_with(
    out: &mut BytesMut,
    ty: u8,
    fill: impl FnOnce(&mut Encoder<'_>) -> Result<(), FrameError>,
) -> Result<(), FrameError> {
    let mut enc = Encoder::begin(out, ty);
    let result = fill(&mut enc).and_then(|()| enc.check_size());
    match result {
        Ok(()) => {
            enc.patch_len();
            Ok(())
        }
        Err(e) => {
            enc.out.truncate(enc.start);
            Err(e)
        }
    }
}

/// Writes a frame whose fields are all fixed-size or capped by [`Encoder::text`], so it
/// always fits.
fn encode_capped(out: &mut BytesMut, ty: u8, fill: impl FnOnce(&mut Encoder<'_>)) {
    let mut enc = Encoder::begin(out, ty);
    fill(&mut enc);
    debug_assert!(enc.payload_len() <= MAX_FRAME_LEN);
    enc.patch_len();
}

#[cfg(test)]
mod tests {
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
            version: "0.1.0",
            platform: "linux-x86_64",
        };
        encode_register(&mut out, &register);
        let Frame::Register(r) = decode_all(&out) else {
            panic!("not a register")
        };
        assert_eq!(r.protocol_version, 1);
        assert_eq!(r.tunnel_id, TUNNEL);
        assert_eq!(r.secret, [0xab; SECRET_LEN]);
        assert_eq!(r.connector_id, CONNECTOR);
        assert_eq!(r.conn_index, 3);
        assert_eq!(r.version, "0.1.0");
        assert_eq!(r.platform, "linux-x86_64");

        out.clear();
        let registered = Registered {
            connection_id: TUNNEL,
            edge_worker: 513,
            edge_version: "e",
        };
        encode_registered(&mut out, &registered);
        let Frame::Registered(r) = decode_all(&out) else {
            panic!("not registered")
        };
        assert_eq!(r.connection_id, TUNNEL);
        assert_eq!(r.edge_worker, 513);
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
}
