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

use bytes::BytesMut;
use uuid::Uuid;

use super::credentials::SECRET_LEN;

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
        let _ = self.buf;
        std::iter::empty()
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

/// Decodes one frame from the start of `buf`.
///
/// `Ok(None)` means more bytes are needed; `Ok(Some((frame, used)))` says how many bytes of
/// `buf` the frame took (what follows is body).
pub fn decode(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    let _ = buf;
    todo!()
}

/// Appends a request frame; headers are `(name, value)` pairs.
pub fn encode_request<'h>(
    out: &mut BytesMut,
    line: &RequestLine<'_>,
    headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
) -> Result<(), FrameError> {
    let _ = (out, line, headers.into_iter());
    todo!()
}

/// Appends a response frame; headers are `(name, value)` pairs.
pub fn encode_response<'h>(
    out: &mut BytesMut,
    status: u16,
    body: BodyLen,
    headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
) -> Result<(), FrameError> {
    let _ = (out, status, body, headers.into_iter());
    todo!()
}

pub fn encode_error(out: &mut BytesMut, code: ErrorCode, message: &str) {
    let _ = (out, code, message);
    todo!()
}

pub fn encode_register(out: &mut BytesMut, register: &Register<'_>) {
    let _ = (out, register);
    todo!()
}

pub fn encode_registered(out: &mut BytesMut, registered: &Registered<'_>) {
    let _ = (out, registered);
    todo!()
}

pub fn encode_refused(out: &mut BytesMut, refused: &Refused<'_>) {
    let _ = (out, refused);
    todo!()
}

pub fn encode_unregister(out: &mut BytesMut) {
    let _ = out;
    todo!()
}
