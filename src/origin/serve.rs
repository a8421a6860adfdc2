//! One origin connection: read a request head, pick its route while the head is still
//! borrowed from the read buffer, answer, and loop while keep-alive holds.
//!
//! The connection owns two buffers for its whole life: `buf`, which reads land in, and
//! `out`, which response heads (and small bodies) are written into and handed to the kernel
//! by ownership, coming back when the write completes. So `/` and `/bytes/N` allocate
//! nothing per request: the route is a small enum, the head is assembled in `out`, and the
//! bytes of `/bytes/N` come from one block in static memory.

use std::io;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;

use super::routes;
use super::websocket;
use crate::http::{self, BodyDecoder, BodyFraming, HeadError, Version, MAX_HEADERS};
use crate::runtime::io::{body_chunk, read_more};
use crate::ws::handshake::{self, HandshakeError};

/// Room for a response head; `out` starts with this much and keeps what it grows to.
const OUT_CAPACITY: usize = 4 * 1024;

/// Initial capacity of the read buffer; `read_more` grows it when a body streams in.
const BUF_CAPACITY: usize = 16 * 1024;

/// Longest `/delay/MS`, so a typo cannot hold a connection for days.
const MAX_DELAY_MS: u64 = 600_000;

pub(super) const HELLO: &[u8] = b"Hello from the adit origin\n";

/// The whole answer to `GET /` on a keep-alive HTTP/1.1 connection, the benchmark's
/// request: written as it is, without assembling anything.
const HELLO_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: adit-origin\r\n\
Content-Type: text/plain\r\nContent-Length: 27\r\n\r\nHello from the adit origin\n";

pub(super) const TEXT: &str = "text/plain";

/// What a request asks for, decided while its head is borrowed; owns nothing on the hot
/// routes.
#[derive(Debug)]
enum Route {
    Hello,
    Bytes(u64),
    Echo,
    Sha256,
    Stream {
        count: u64,
        interval: Duration,
    },
    Sse {
        count: u64,
        interval: Duration,
    },
    Delay(Duration),
    Status(u16),
    /// The JSON body, built before the head's borrow ends.
    Headers(Vec<u8>),
    /// A valid upgrade, with its `Sec-WebSocket-Accept` value.
    WebSocket(String),
    /// An upgrade with an unsupported `Sec-WebSocket-Version` (answered 426).
    WebSocketVersion,
    BadRequest(&'static str),
    NotFound,
}

/// What the handlers need of one request, owned.
#[derive(Debug)]
struct Request {
    route: Route,
    head_only: bool,
    framing: BodyFraming,
    expect_continue: bool,
}

/// How a response's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyLen {
    Length(u64),
    /// Chunked to HTTP/1.1 clients; to HTTP/1.0 ones, until the connection closes.
    Streamed,
    /// No body and no length field (204, 304).
    Empty,
}

/// One client connection and the buffers it keeps.
pub(super) struct Conn {
    pub stream: TcpStream,
    /// Bytes read and not yet consumed.
    pub buf: BytesMut,
    /// The next write, reused from response to response.
    pub out: BytesMut,
    /// Whether another request may follow this response.
    pub keep_alive: bool,
    /// The request is HTTP/1.0, so no chunked responses.
    pub http10: bool,
}

/// Serves requests on one connection until the client closes or keep-alive ends.
pub async fn serve_connection(stream: TcpStream) -> io::Result<()> {
    let mut conn = Conn {
        stream,
        buf: BytesMut::with_capacity(BUF_CAPACITY),
        out: BytesMut::with_capacity(OUT_CAPACITY),
        keep_alive: true,
        http10: false,
    };
    loop {
        let request = match read_request(&mut conn).await? {
            Some(Ok(request)) => request,
            Some(Err(err)) => {
                http::pages::error_response(
                    &mut conn.out,
                    err.status(),
                    err.title(),
                    &err.to_string(),
                    true,
                );
                return conn.flush().await;
            }
            None => return Ok(()),
        };
        let mut decoder = BodyDecoder::new(request.framing);
        respond(&mut conn, &mut decoder, request).await?;
        if !conn.keep_alive {
            return Ok(());
        }

        // Whatever the handler left of the body is drained so the next request starts clean.
        while body_chunk(&mut conn.stream, &mut conn.buf, &mut decoder)
            .await?
            .is_some()
        {}
    }
}

/// Reads one request head; `None` when the client closed between requests.
async fn read_request(conn: &mut Conn) -> io::Result<Option<Result<Request, HeadError>>> {
    loop {
        if !conn.buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match http::parse_request(&conn.buf, &mut headers) {
                Ok(Some(head)) => {
                    let framing = match http::request_framing(head.headers) {
                        Ok(framing) => framing,
                        Err(err) => return Ok(Some(Err(err))),
                    };
                    conn.keep_alive = http::head::keep_alive(head.version, head.headers);
                    conn.http10 = head.version == Version::Http10;
                    let request = Request {
                        route: route(head.method, head.target, head.headers),
                        head_only: head.method == "HEAD",
                        framing,
                        expect_continue: !matches!(
                            framing,
                            BodyFraming::None | BodyFraming::Length(0)
                        ) && http::head::has_token(
                            head.headers,
                            "expect",
                            "100-continue",
                        ),
                    };
                    // Advancing (rather than splitting off) keeps the buffer unshared, so
                    // the next read reuses its allocation.
                    let len = head.len;
                    conn.buf.advance(len);
                    return Ok(Some(Ok(request)));
                }
                Ok(None) => {}
                Err(HeadError::HigherMinorVersion { minor }) => {
                    http::head::serve_as_http11(&mut conn.buf, minor);
                    continue;
                }
                Err(err) => return Ok(Some(Err(err))),
            }
        }
        let (result, filled) = read_more(&mut conn.stream, std::mem::take(&mut conn.buf)).await;
        conn.buf = filled;
        if result? == 0 {
            return Ok(None);
        }
    }
}

fn route(method: &str, target: &str, headers: &[httparse::Header<'_>]) -> Route {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match path {
        "/" => return Route::Hello,
        "/echo" => return Route::Echo,
        "/sha256" => return Route::Sha256,
        "/headers" => return Route::Headers(routes::headers_json(headers)),
        "/ws" => return websocket_route(method, headers),
        "/stream" => {
            let (count, interval) = routes::repeat_params(query, "chunks");
            return Route::Stream { count, interval };
        }
        "/sse" => {
            let (count, interval) = routes::repeat_params(query, "events");
            return Route::Sse { count, interval };
        }
        _ => {}
    }
    if let Some(n) = path.strip_prefix("/bytes/") {
        return match n.parse::<u64>() {
            Ok(n) => Route::Bytes(n.min(routes::MAX_GENERATED)),
            Err(_) => Route::BadRequest("N in /bytes/N must be a whole number\n"),
        };
    }
    if let Some(ms) = path.strip_prefix("/delay/") {
        return match ms.parse::<u64>() {
            Ok(ms) => Route::Delay(Duration::from_millis(ms.min(MAX_DELAY_MS))),
            Err(_) => Route::BadRequest("MS in /delay/MS must be a whole number\n"),
        };
    }
    if let Some(code) = path.strip_prefix("/status/") {
        return match code.parse::<u16>() {
            Ok(code) if (200..600).contains(&code) => Route::Status(code),
            _ => Route::BadRequest("CODE in /status/CODE must be 200 to 599\n"),
        };
    }
    Route::NotFound
}

fn websocket_route(method: &str, headers: &[httparse::Header<'_>]) -> Route {
    if method != "GET" || !http::head::is_websocket_upgrade(headers) {
        return Route::BadRequest("/ws takes a WebSocket upgrade\n");
    }
    let fields = headers.iter().map(|h| (h.name.as_bytes(), h.value));
    match handshake::check_request(fields) {
        Ok(key) => Route::WebSocket(handshake::accept_key(key)),
        Err(HandshakeError::Version) => Route::WebSocketVersion,
        Err(_) => Route::BadRequest("missing or invalid Sec-WebSocket-Key\n"),
    }
}

async fn respond(conn: &mut Conn, decoder: &mut BodyDecoder, request: Request) -> io::Result<()> {
    let head_only = request.head_only;
    if request.expect_continue && matches!(request.route, Route::Echo | Route::Sha256) {
        conn.out.put_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        conn.flush().await?;
    }
    match request.route {
        Route::Hello if conn.keep_alive && !conn.http10 && !head_only => {
            conn.out.put_slice(HELLO_RESPONSE);
            conn.flush().await
        }
        Route::Hello => conn.fixed(200, TEXT, HELLO, head_only).await,
        Route::Bytes(n) => routes::bytes(conn, n, head_only).await,
        Route::Echo => routes::echo(conn, decoder, request.framing, head_only).await,
        Route::Sha256 => routes::sha256(conn, decoder, head_only).await,
        Route::Stream { count, interval } => {
            routes::repeat(conn, routes::Repeat::Chunks, count, interval, head_only).await
        }
        Route::Sse { count, interval } => {
            routes::repeat(conn, routes::Repeat::Events, count, interval, head_only).await
        }
        Route::Delay(delay) => {
            monoio::time::sleep(delay).await;
            conn.fixed(200, TEXT, b"done\n", head_only).await
        }
        Route::Status(code) => routes::status(conn, code, head_only).await,
        Route::Headers(json) => conn.fixed(200, "application/json", &json, head_only).await,
        Route::WebSocketVersion => {
            let body = b"unsupported Sec-WebSocket-Version\n";
            let len = BodyLen::Length(body.len() as u64);
            conn.head_with(426, TEXT, len, b"Sec-WebSocket-Version: 13\r\n");
            if !head_only {
                conn.out.put_slice(body);
            }
            conn.flush().await
        }
        Route::BadRequest(why) => conn.fixed(400, TEXT, why.as_bytes(), head_only).await,
        Route::WebSocket(accept) => {
            // The connection stops being HTTP: whatever follows is WebSocket frames.
            conn.keep_alive = false;
            conn.switch_protocols(&accept);
            conn.flush().await?;
            websocket::echo(conn).await
        }
        Route::NotFound => {
            let body = b"no such route on the adit origin\n";
            conn.fixed(404, TEXT, body, head_only).await
        }
    }
}

impl Conn {
    /// Writes `out` to the socket and takes it back, emptied, for the next write.
    pub(super) async fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let (result, mut out) = self.stream.write_all(out).await;
        out.clear();
        self.out = out;
        result.map(|_| ())
    }

    /// Appends a response head to `out`.
    pub(super) fn head(&mut self, status: u16, content_type: &str, len: BodyLen) {
        self.head_with(status, content_type, len, b"");
    }

    /// Appends a response head with `extra` (whole field lines, each ending in CRLF) to `out`.
    /// A streamed body to an HTTP/1.0 client ends the connection, as that is the only way it
    /// can tell where the body ends.
    pub(super) fn head_with(
        &mut self,
        status: u16,
        content_type: &str,
        len: BodyLen,
        extra: &[u8],
    ) {
        let out = &mut self.out;
        if status == 200 {
            out.put_slice(b"HTTP/1.1 200 OK\r\n");
        } else {
            out.put_slice(b"HTTP/1.1 ");
            put_decimal(out, u64::from(status));
            out.put_u8(b' ');
            out.put_slice(reason(status).as_bytes());
            out.put_slice(b"\r\n");
        }
        out.put_slice(b"Server: adit-origin\r\nContent-Type: ");
        out.put_slice(content_type.as_bytes());
        out.put_slice(b"\r\n");
        match len {
            BodyLen::Length(n) => {
                out.put_slice(b"Content-Length: ");
                put_decimal(out, n);
                out.put_slice(b"\r\n");
            }
            BodyLen::Streamed if self.http10 => self.keep_alive = false,
            BodyLen::Streamed => out.put_slice(b"Transfer-Encoding: chunked\r\n"),
            BodyLen::Empty => {}
        }
        out.put_slice(extra);
        if !self.keep_alive {
            out.put_slice(b"Connection: close\r\n");
        } else if self.http10 {
            out.put_slice(b"Connection: keep-alive\r\n");
        }
        out.put_slice(b"\r\n");
    }

    /// A whole response with a body known up front, in one write.
    pub(super) async fn fixed(
        &mut self,
        status: u16,
        content_type: &str,
        body: &[u8],
        head_only: bool,
    ) -> io::Result<()> {
        let bodiless = status == 204 || status == 304;
        let len = if bodiless {
            BodyLen::Empty
        } else {
            BodyLen::Length(body.len() as u64)
        };
        self.head(status, content_type, len);
        if !head_only && !bodiless {
            self.out.put_slice(body);
        }
        self.flush().await
    }

    fn switch_protocols(&mut self, accept: &str) {
        self.out.put_slice(
            b"HTTP/1.1 101 Switching Protocols\r\nServer: adit-origin\r\n\
            Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
        );
        self.out.put_slice(accept.as_bytes());
        self.out.put_slice(b"\r\n\r\n");
    }
}

/// The reason phrase of `status`; 418, which HTTP reserves without a phrase (RFC 9110
/// §15.5.19), gets the one clients testing with `/status/418` expect.
pub(super) fn reason(status: u16) -> &'static str {
    match status {
        418 => "I'm a teapot",
        status => http::head::reason(status),
    }
}

/// Appends `n` in decimal without going through `fmt`.
pub(super) fn put_decimal(out: &mut BytesMut, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routed(target: &str) -> String {
        format!("{:?}", route("GET", target, &[]))
    }

    #[test]
    fn targets_map_to_routes() {
        assert_eq!(routed("/"), "Hello");
        assert_eq!(routed("/?x=1"), "Hello");
        assert_eq!(routed("/bytes/0"), "Bytes(0)");
        assert_eq!(routed("/bytes/100000"), "Bytes(100000)");
        assert_eq!(
            routed("/bytes/x"),
            format!(
                "{:?}",
                Route::BadRequest("N in /bytes/N must be a whole number\n")
            )
        );
        assert_eq!(routed("/delay/200"), "Delay(200ms)");
        assert_eq!(routed("/delay/999999999"), "Delay(600s)");
        assert_eq!(routed("/status/418"), "Status(418)");
        assert_eq!(
            routed("/status/99"),
            format!(
                "{:?}",
                Route::BadRequest("CODE in /status/CODE must be 200 to 599\n")
            )
        );
        assert_eq!(
            routed("/stream?chunks=3&interval_ms=5"),
            "Stream { count: 3, interval: 5ms }"
        );
        assert_eq!(routed("/sse?events=2"), "Sse { count: 2, interval: 0ns }");
        assert_eq!(
            routed("/ws"),
            format!("{:?}", Route::BadRequest("/ws takes a WebSocket upgrade\n"))
        );
        assert_eq!(routed("/nope"), "NotFound");
    }

    #[test]
    fn decimals_are_written_plainly() {
        let mut out = BytesMut::new();
        for n in [0, 7, 10, 418, u64::MAX] {
            put_decimal(&mut out, n);
            out.put_u8(b' ');
        }
        assert_eq!(&out[..], b"0 7 10 418 18446744073709551615 ");
    }
}
