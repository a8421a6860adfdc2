//! Request and response heads: parsing, framing decisions, hop-by-hop fields.

/// Largest head (request line or status line plus fields) accepted, in bytes.
pub const MAX_HEAD_LEN: usize = 32 * 1024;

/// Most header fields accepted in one head.
pub const MAX_HEADERS: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// A parsed request head borrowing from the read buffer.
#[derive(Debug)]
pub struct RequestHead<'b, 'h> {
    pub method: &'b str,
    pub target: &'b str,
    pub version: Version,
    pub headers: &'h [httparse::Header<'b>],
    /// Bytes of the buffer the head took; the body starts there.
    pub len: usize,
}

/// A parsed response head borrowing from the read buffer.
#[derive(Debug)]
pub struct ResponseHead<'b, 'h> {
    pub status: u16,
    pub reason: &'b str,
    pub version: Version,
    pub headers: &'h [httparse::Header<'b>],
    pub len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeadError {
    #[error("header section larger than {MAX_HEAD_LEN} bytes")]
    TooLarge,
    #[error("more than {MAX_HEADERS} header fields")]
    TooManyHeaders,
    #[error("malformed head: {0}")]
    Malformed(&'static str),
    #[error("conflicting or invalid message framing: {0}")]
    Framing(&'static str),
}

impl HeadError {
    /// The status a client gets for this error (431 or 400).
    pub fn status(&self) -> u16 {
        todo!()
    }
}

/// How a message body is delimited (RFC 9112 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(u64),
    Chunked,
    /// Read until the peer closes (responses only).
    UntilClose,
}

/// Parses a request head. `Ok(None)`: incomplete, read more (unless the buffer already
/// holds [`MAX_HEAD_LEN`] bytes, which is [`HeadError::TooLarge`]).
pub fn parse_request<'b, 'h>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>; MAX_HEADERS],
) -> Result<Option<RequestHead<'b, 'h>>, HeadError> {
    let _ = (buf, headers);
    todo!()
}

/// Parses a response head; 1xx heads are returned like any other.
pub fn parse_response<'b, 'h>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>; MAX_HEADERS],
) -> Result<Option<ResponseHead<'b, 'h>>, HeadError> {
    let _ = (buf, headers);
    todo!()
}

/// The framing of a request body; refuses everything RFC 9112 §6.3 says a server must
/// (both Content-Length and Transfer-Encoding, differing lengths, a coding other than a
/// final `chunked`, an invalid length).
pub fn request_framing(headers: &[httparse::Header<'_>]) -> Result<BodyFraming, HeadError> {
    let _ = headers;
    todo!()
}

/// The framing of a response body to a request with `method`: none for HEAD, 1xx, 204 and
/// 304; else length, chunked, or until close.
pub fn response_framing(
    method: &str,
    status: u16,
    headers: &[httparse::Header<'_>],
) -> Result<BodyFraming, HeadError> {
    let _ = (method, status, headers);
    todo!()
}

/// Whether the connection stays open after this message (version default, overridden by
/// `Connection: close` / `keep-alive`).
pub fn keep_alive(version: Version, headers: &[httparse::Header<'_>]) -> bool {
    let _ = (version, headers);
    todo!()
}

/// Whether a field must not be forwarded to the next hop: the fixed hop-by-hop names
/// (`Connection`, `Keep-Alive`, `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`)
/// and every name listed in the message's `Connection` fields.
pub fn is_hop_by_hop(name: &str, headers: &[httparse::Header<'_>]) -> bool {
    let _ = (name, headers);
    todo!()
}

/// The standard reason phrase for a status code ("" when unknown).
pub fn reason(status: u16) -> &'static str {
    let _ = status;
    todo!()
}
