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
    /// A request line still unfinished after [`MAX_HEAD_LEN`] bytes: the target is that
    /// long, which is 414 rather than 431 (RFC 9112 3).
    #[error("request line longer than {MAX_HEAD_LEN} bytes")]
    TargetTooLong,
    #[error("more than {MAX_HEADERS} header fields")]
    TooManyHeaders,
    #[error("malformed head: {0}")]
    Malformed(&'static str),
    /// A well-formed `HTTP/x.y` whose major version is not 1 (in a request).
    #[error("unsupported HTTP version: only HTTP/1.0 and HTTP/1.1 are served")]
    UnsupportedVersion,
    /// A request line ending in `HTTP/1.x` with x above 1: RFC 9110 (2.5) asks that it be
    /// served as HTTP/1.1. The byte at `minor` (the x) is where the caller's buffer says so;
    /// [`serve_as_http11`] rewrites it and the head parses again.
    #[error("HTTP/1.x request above HTTP/1.1")]
    HigherMinorVersion { minor: usize },
    #[error("conflicting or invalid message framing: {0}")]
    Framing(&'static str),
}

impl HeadError {
    /// The status a client gets for this error (431, 414, 505 or 400).
    pub fn status(&self) -> u16 {
        match self {
            HeadError::TargetTooLong => 414,
            HeadError::TooLarge | HeadError::TooManyHeaders => 431,
            // A caller that does not rewrite the version (see the variant) refuses it.
            HeadError::UnsupportedVersion | HeadError::HigherMinorVersion { .. } => 505,
            HeadError::Malformed(_) | HeadError::Framing(_) => 400,
        }
    }

    /// The title of the error page for [`status`](Self::status).
    pub fn title(&self) -> &'static str {
        match self {
            HeadError::TargetTooLong => "Request target too long",
            HeadError::TooLarge | HeadError::TooManyHeaders => "Request header fields too large",
            HeadError::UnsupportedVersion | HeadError::HigherMinorVersion { .. } => {
                "HTTP version not supported"
            }
            HeadError::Malformed(_) | HeadError::Framing(_) => "Bad request",
        }
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
/// holds [`MAX_HEAD_LEN`] bytes: [`HeadError::TooLarge`], or [`HeadError::TargetTooLong`] while
/// the request line has not ended).
pub fn parse_request<'b, 'h>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>; MAX_HEADERS],
) -> Result<Option<RequestHead<'b, 'h>>, HeadError> {
    let mut request = httparse::Request::new(headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return incomplete_request(buf),
        Err(httparse::Error::Version) => {
            return match request_version_error(buf) {
                Some(err) => Err(err),
                // httparse judges the version from its first bytes; the rest of the line
                // tells which error it is.
                None => incomplete_request(buf),
            };
        }
        Err(e) => return Err(parse_error(e)),
    };
    if len > MAX_HEAD_LEN {
        return Err(too_large_request(buf));
    }

    // A complete parse fills every part; the fallbacks only keep a surprise from panicking.
    let httparse::Request {
        method,
        path,
        version,
        headers,
    } = request;
    let (Some(method), Some(target), Some(version)) = (method, path, version) else {
        return Err(HeadError::Malformed("incomplete request line"));
    };
    Ok(Some(RequestHead {
        method,
        target,
        version: version_of(version)?,
        headers,
        len,
    }))
}

/// Parses a response head; 1xx heads are returned like any other.
pub fn parse_response<'b, 'h>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>; MAX_HEADERS],
) -> Result<Option<ResponseHead<'b, 'h>>, HeadError> {
    let mut response = httparse::Response::new(headers);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return incomplete(buf),
        Err(e) => return Err(parse_error(e)),
    };
    if len > MAX_HEAD_LEN {
        return Err(HeadError::TooLarge);
    }

    let httparse::Response {
        version,
        code,
        reason,
        headers,
    } = response;
    let (Some(version), Some(status)) = (version, code) else {
        return Err(HeadError::Malformed("incomplete status line"));
    };
    let reason = reason.unwrap_or("");
    Ok(Some(ResponseHead {
        status,
        reason,
        version: version_of(version)?,
        headers,
        len,
    }))
}

fn incomplete<T>(buf: &[u8]) -> Result<Option<T>, HeadError> {
    match buf.len() >= MAX_HEAD_LEN {
        true => Err(HeadError::TooLarge),
        false => Ok(None),
    }
}

/// As [`incomplete`], telling a request line that is itself over the limit (414) from a
/// header section that is (431).
fn incomplete_request<T>(buf: &[u8]) -> Result<Option<T>, HeadError> {
    incomplete(buf).map_err(|_| too_large_request(buf))
}

/// The error for a request head over [`MAX_HEAD_LEN`]: 414 when its request line, with its
/// line end, does not end within the limit, else 431. Either way the same, however the
/// head was split into reads.
fn too_large_request(buf: &[u8]) -> HeadError {
    match request_line(buf) {
        Some((_, _, end)) if end <= MAX_HEAD_LEN => HeadError::TooLarge,
        _ => HeadError::TargetTooLong,
    }
}

/// The first line of a request once it is whole: where it starts, the line without its line
/// end, and where the next line starts. Empty lines before it are skipped, as httparse
/// skips them.
fn request_line(buf: &[u8]) -> Option<(usize, &[u8], usize)> {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n')?;
    let lf = start + buf[start..].iter().position(|&b| b == b'\n')?;
    let line = &buf[start..lf];
    Some((start, line.strip_suffix(b"\r").unwrap_or(line), lf + 1))
}

fn parse_error(e: httparse::Error) -> HeadError {
    match e {
        httparse::Error::TooManyHeaders => HeadError::TooManyHeaders,
        httparse::Error::HeaderName => HeadError::Malformed("invalid header name"),
        httparse::Error::HeaderValue => HeadError::Malformed("invalid header value"),
        httparse::Error::NewLine => HeadError::Malformed("invalid line ending"),
        httparse::Error::Status => HeadError::Malformed("invalid status"),
        // Only the request line has tokens: the method, and the target (which must also be
        // valid UTF-8).
        httparse::Error::Token => HeadError::Malformed("invalid byte in the method or target"),
        httparse::Error::Version => HeadError::Malformed("unsupported version"),
    }
}

/// Tells apart what httparse reports as a bad version in a request line, once the line is
/// complete (`None` before): a well-formed version with another major version (505), one
/// above HTTP/1.1 (served as 1.1), a target with a space in it (the rest of the target reads
/// as the version), or something that is no version at all.
fn request_version_error(buf: &[u8]) -> Option<HeadError> {
    let (start, line, _) = request_line(buf)?;
    // Method and target end at the first two spaces, as httparse read them.
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (method, target) = (parts.next().unwrap_or_default(), parts.next());
    let version_at = start + method.len() + 1 + target.unwrap_or_default().len() + 1;
    Some(match parts.next() {
        Some([b'H', b'T', b'T', b'P', b'/', b'1', b'.', b'2'..=b'9']) => {
            HeadError::HigherMinorVersion {
                minor: version_at + 7,
            }
        }
        Some([b'H', b'T', b'T', b'P', b'/', major, b'.', minor])
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            HeadError::UnsupportedVersion
        }
        Some(rest) if rest.contains(&b' ') => {
            HeadError::Malformed("whitespace in the request target")
        }
        _ => HeadError::Malformed("invalid HTTP version"),
    })
}

/// Serves a request line that ended in `HTTP/1.x` (x above 1) as HTTP/1.1, rewriting the
/// minor version where [`HeadError::HigherMinorVersion`] found it.
pub fn serve_as_http11(buf: &mut [u8], minor: usize) {
    if let Some(digit) = buf.get_mut(minor) {
        *digit = b'1';
    }
}

fn version_of(minor: u8) -> Result<Version, HeadError> {
    match minor {
        0 => Ok(Version::Http10),
        1 => Ok(Version::Http11),
        _ => Err(HeadError::Malformed("unsupported version")),
    }
}

/// Longest Host (or absolute-form authority) accepted, in bytes: a 253-byte DNS name with a
/// port fits.
pub const MAX_AUTHORITY_LEN: usize = 255;

/// Checks a request's Host value (or the authority of an absolute-form target): a host and an
/// optional `:port` of one to five digits up to 65535 (RFC 3986 §3.2.2, §3.2.3).
///
/// The host is an IPv6 address in brackets, or a registered name or IPv4 address: letters,
/// digits, `-`, `.`, `_`, `~` and the sub-delimiters `!$&'()*+,;=`. Percent-encoding is
/// refused although RFC 3986 allows it in a name: a host that decodes to something else is a
/// way to route by one name and be served by another. Empty hosts, `[IPvFuture]`, empty ports
/// and anything longer than [`MAX_AUTHORITY_LEN`] bytes are refused too.
pub fn validate_authority(authority: &str) -> Result<(), HeadError> {
    const INVALID: HeadError = HeadError::Malformed("invalid Host");
    if authority.is_empty() || authority.len() > MAX_AUTHORITY_LEN {
        return Err(INVALID);
    }

    let port = match authority.strip_prefix('[') {
        Some(rest) => {
            let (inside, after) = rest.split_once(']').ok_or(INVALID)?;
            inside.parse::<std::net::Ipv6Addr>().map_err(|_| INVALID)?;
            match after {
                "" => None,
                after => Some(after.strip_prefix(':').ok_or(INVALID)?),
            }
        }
        None => {
            // A name holds no ':', so the first one starts the port.
            let (host, port) = match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            };
            if host.is_empty() || !host.bytes().all(is_name_byte) {
                return Err(INVALID);
            }
            port
        }
    };

    match port {
        Some(port) if !is_port(port) => Err(INVALID),
        _ => Ok(()),
    }
}

/// A byte of an RFC 3986 reg-name other than `%`: unreserved or a sub-delimiter.
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b)
}

/// One to five digits, at most 65535.
fn is_port(text: &str) -> bool {
    (1..=5).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_digit())
        && text.parse::<u16>().is_ok()
}

/// The value of the request's one Host field, without surrounding whitespace; `None` when
/// there is none. Two or more Host fields are refused (RFC 9112 §3.2): which one a hop
/// believes decides where the request goes. The value is not checked; see
/// [`validate_authority`].
pub fn single_host<'b>(headers: &[httparse::Header<'b>]) -> Result<Option<&'b str>, HeadError> {
    let mut hosts = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"));
    let Some(field) = hosts.next() else {
        return Ok(None);
    };
    if hosts.next().is_some() {
        return Err(HeadError::Malformed("more than one Host"));
    }
    std::str::from_utf8(trim_ows(field.value))
        .map(Some)
        .map_err(|_| HeadError::Malformed("invalid Host"))
}

/// Whether a request target is in origin form (`/path?query`, RFC 9112 §3.2.1). The parser
/// already refused whitespace and control characters in a target; they are checked again so
/// that the answer holds for any string.
pub fn is_origin_form(target: &str) -> bool {
    target.starts_with('/') && !target.bytes().any(|b| b.is_ascii_control() || b == b' ')
}

/// Whether a request target is in asterisk form (`*`, for a server-wide `OPTIONS`).
pub fn is_asterisk_form(target: &str) -> bool {
    target == "*"
}

/// The framing of an HTTP/1.1 request body; see [`request_framing_for`].
pub fn request_framing(headers: &[httparse::Header<'_>]) -> Result<BodyFraming, HeadError> {
    request_framing_for(Version::Http11, headers)
}

/// The framing of a request body; refuses everything RFC 9112 §6.3 says a server must (both
/// Content-Length and Transfer-Encoding, differing lengths, an invalid length) and more:
/// the only Transfer-Encoding accepted is a single `chunked`, and none at all on an HTTP/1.0
/// request (RFC 9112 §6.1 calls such framing faulty).
///
/// A coding list like `gzip, chunked` is valid HTTP, but no client needs it and every hop
/// that reads it differently from us is a way to smuggle a request, so it gets 400.
pub fn request_framing_for(
    version: Version,
    headers: &[httparse::Header<'_>],
) -> Result<BodyFraming, HeadError> {
    let has_length = headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("content-length"));
    let coding = transfer_coding(headers)?;
    if coding.is_some() && version == Version::Http10 {
        return Err(HeadError::Framing(
            "transfer-encoding in an http/1.0 request",
        ));
    }
    match coding {
        Some(_) if has_length => Err(HeadError::Framing(
            "both transfer-encoding and content-length",
        )),
        Some(Coding::Chunked) => Ok(BodyFraming::Chunked),
        Some(Coding::FinalChunked | Coding::Other) => {
            Err(HeadError::Framing("transfer coding other than chunked"))
        }
        None => match content_length(headers)? {
            Some(n) => Ok(BodyFraming::Length(n)),
            None => Ok(BodyFraming::None),
        },
    }
}

/// The framing of a response body to a request with `method`: none for HEAD, 1xx, 204 and
/// 304; else length, chunked, or until close.
///
/// Following RFC 9112 §6.3, Transfer-Encoding wins over a Content-Length sent with it; such a
/// response was likely meant to smuggle, so callers should not reuse the connection after it.
pub fn response_framing(
    method: &str,
    status: u16,
    headers: &[httparse::Header<'_>],
) -> Result<BodyFraming, HeadError> {
    framing_of_response(method, status, headers, false)
}

/// As [`response_framing`], for a proxy that decodes no transfer coding but `chunked`: a body
/// under any other (`gzip`, or `gzip, chunked`) is an error. Transfer-Encoding is hop-by-hop,
/// so such a body would reach the next hop without the field that says how it is coded
/// (nginx answers 502 to such an upstream response too).
pub fn relayable_response_framing(
    method: &str,
    status: u16,
    headers: &[httparse::Header<'_>],
) -> Result<BodyFraming, HeadError> {
    framing_of_response(method, status, headers, true)
}

fn framing_of_response(
    method: &str,
    status: u16,
    headers: &[httparse::Header<'_>],
    only_chunked: bool,
) -> Result<BodyFraming, HeadError> {
    let no_body = method == "HEAD"
        || (100..200).contains(&status)
        || status == 204
        || status == 304
        || (method == "CONNECT" && (200..300).contains(&status));
    if no_body {
        return Ok(BodyFraming::None);
    }

    match transfer_coding(headers)? {
        Some(Coding::FinalChunked | Coding::Other) if only_chunked => Err(HeadError::Framing(
            "a transfer coding other than chunked, which adit does not decode",
        )),
        Some(Coding::Chunked | Coding::FinalChunked) => Ok(BodyFraming::Chunked),
        Some(Coding::Other) => Ok(BodyFraming::UntilClose),
        None => match content_length(headers)? {
            Some(n) => Ok(BodyFraming::Length(n)),
            None => Ok(BodyFraming::UntilClose),
        },
    }
}

/// What the Transfer-Encoding fields of a message say, all fields taken as one list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    /// Exactly one coding, `chunked`.
    Chunked,
    /// `chunked` last, after other codings.
    FinalChunked,
    /// `chunked` missing or not last.
    Other,
}

/// Reads the Transfer-Encoding fields: `None` when there are none. `chunked` applied twice,
/// with parameters, or an empty field list is an error whatever the message.
fn transfer_coding(headers: &[httparse::Header<'_>]) -> Result<Option<Coding>, HeadError> {
    let mut present = false;
    let mut codings = 0usize;
    let mut chunked = 0usize;
    let mut last_chunked = false;
    for field in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
    {
        present = true;
        for coding in list_elements(field.value) {
            let (name, params) = match coding.iter().position(|&b| b == b';') {
                Some(at) => (trim_ows(&coding[..at]), true),
                None => (coding, false),
            };
            last_chunked = name.eq_ignore_ascii_case(b"chunked");
            if last_chunked {
                if params {
                    return Err(HeadError::Framing("chunked with parameters"));
                }
                chunked += 1;
            }
            codings += 1;
        }
    }

    if !present {
        return Ok(None);
    }
    if codings == 0 {
        return Err(HeadError::Framing("empty transfer-encoding"));
    }
    if chunked > 1 {
        return Err(HeadError::Framing("chunked applied more than once"));
    }
    Ok(Some(match (last_chunked, codings) {
        (true, 1) => Coding::Chunked,
        (true, _) => Coding::FinalChunked,
        (false, _) => Coding::Other,
    }))
}

/// Reads the Content-Length fields: several fields or a list are accepted only when every
/// value is the same.
fn content_length(headers: &[httparse::Header<'_>]) -> Result<Option<u64>, HeadError> {
    let mut length: Option<u64> = None;
    for field in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
    {
        // Unlike other lists an empty element is refused: "Content-Length: ," carries no length.
        for element in field.value.split(|&b| b == b',') {
            let n =
                decimal(trim_ows(element)).ok_or(HeadError::Framing("invalid content-length"))?;
            if length.is_some_and(|seen| seen != n) {
                return Err(HeadError::Framing("conflicting content-length"));
            }
            length = Some(n);
        }
    }
    Ok(length)
}

/// Non-empty ASCII digits that fit a `u64`; no sign, no spaces.
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| match d {
        b'0'..=b'9' => n.checked_mul(10)?.checked_add(u64::from(d - b'0')),
        _ => None,
    })
}

/// Whether the connection stays open after this message (version default, overridden by
/// `Connection: close` / `keep-alive`).
pub fn keep_alive(version: Version, headers: &[httparse::Header<'_>]) -> bool {
    let listed = |option: &str| {
        connection_options(headers).any(|t| t.eq_ignore_ascii_case(option.as_bytes()))
    };
    match version {
        Version::Http11 => !listed("close"),
        Version::Http10 => listed("keep-alive") && !listed("close"),
    }
}

/// Whether a field must not be forwarded to the next hop: the fixed hop-by-hop names
/// (`Connection`, `Keep-Alive`, `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`)
/// and every name listed in the message's `Connection` fields.
pub fn is_hop_by_hop(name: &str, headers: &[httparse::Header<'_>]) -> bool {
    const FIXED: [&str; 6] = [
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ];
    let proxy = name
        .as_bytes()
        .get(..6)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"proxy-"));
    proxy
        || FIXED.iter().any(|fixed| name.eq_ignore_ascii_case(fixed))
        || connection_options(headers).any(|t| t.eq_ignore_ascii_case(name.as_bytes()))
}

/// Every option listed across the message's Connection fields.
/// Whether any `name` field lists `token` (comma-separated, case-insensitive), as in
/// `Connection: keep-alive, Upgrade` or `Upgrade: websocket`.
pub fn has_token(headers: &[httparse::Header<'_>], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .flat_map(|h| list_elements(h.value))
        .any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

/// Whether the request asks to become a WebSocket (`Connection: upgrade` and `Upgrade:
/// websocket`, each possibly among other tokens).
pub fn is_websocket_upgrade(headers: &[httparse::Header<'_>]) -> bool {
    has_token(headers, "connection", "upgrade") && has_token(headers, "upgrade", "websocket")
}

fn connection_options<'a>(
    headers: &'a [httparse::Header<'_>],
) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| list_elements(h.value))
}

/// The non-empty elements of a comma-separated list, without surrounding whitespace
/// (RFC 9110 §5.6.1).
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// The standard reason phrase for a status code ("" when unknown).
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        511 => "Network Authentication Required",
        _ => "",
    }
}

#[cfg(test)]
mod tests;
