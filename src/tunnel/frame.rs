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
    /// How many connections the connector keeps open in all, so the edge can tell a
    /// degraded connector (fewer live connections than it asked for).
    pub ha_connections: u8,
    pub version: &'a str,
    pub platform: &'a str,
}

#[derive(Debug, Clone, Copy)]
pub struct Registered<'a> {
    pub connection_id: Uuid,
    /// Which edge worker owns this connection.
    pub edge_worker: u16,
    /// How many data-plane workers the edge runs, so a connector can spread its connections
    /// over all of them.
    pub edge_workers: u16,
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
pub const PROTOCOL_VERSION: u16 = 2;

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
    let ha_connections = r.u8()?;
    let version = r.str16()?;
    let platform = r.str16()?;
    r.end()?;
    Ok(Frame::Register(Register {
        protocol_version,
        tunnel_id,
        secret,
        connector_id,
        conn_index,
        ha_connections,
        version,
        platform,
    }))
}

fn decode_registered(payload: &[u8]) -> Result<Frame<'_>, FrameError> {
    let mut r = Reader::new(payload, "registered");
    let connection_id = r.uuid()?;
    let edge_worker = r.u16()?;
    let edge_workers = r.u16()?;
    let edge_version = r.str16()?;
    r.end()?;
    Ok(Frame::Registered(Registered {
        connection_id,
        edge_worker,
        edge_workers,
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
        enc.out.put_u8(register.ha_connections);
        enc.text(register.version);
        enc.text(register.platform);
    });
}

/// Appends a registered frame; an edge version longer than [`MAX_TEXT_LEN`] bytes is cut.
pub fn encode_registered(out: &mut BytesMut, registered: &Registered<'_>) {
    encode_capped(out, TYPE_REGISTERED, |enc| {
        enc.out.put_slice(registered.connection_id.as_bytes());
        enc.out.put_u16(registered.edge_worker);
        enc.out.put_u16(registered.edge_workers);
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
mod tests;
