//! The built-in origin's routes, byte for byte, over real sockets on loopback.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use adit::http::{BodyDecoder, BodyFraming};

fn origin() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        adit::origin::spawn("127.0.0.1:0".parse().unwrap(), 2)
            .unwrap()
            .addr
    })
}

#[derive(Debug)]
struct Response {
    status: u16,
    /// The head as it came, status line to the blank line.
    head: String,
    headers: Vec<(String, String)>,
    /// The body as it came on the wire (chunk framing included).
    wire: Vec<u8>,
    /// The body with any chunk framing removed.
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect() -> Client {
        let stream = TcpStream::connect(origin()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads more into `buf`; false at end of stream.
    fn read(&mut self) -> bool {
        let mut chunk = [0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk).unwrap();
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    fn take(&mut self, len: usize) -> Vec<u8> {
        while self.buf.len() < len {
            assert!(self.read(), "closed before {len} bytes came");
        }
        self.buf.drain(..len).collect()
    }

    fn request(&mut self, method: &str, target: &str) -> Response {
        self.send(format!("{method} {target} HTTP/1.1\r\nHost: origin.test\r\n\r\n").as_bytes());
        self.response(method == "HEAD")
    }

    /// Reads the head of one response.
    fn head(&mut self) -> (u16, String, Vec<(String, String)>) {
        loop {
            let mut fields = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut fields);
            if let httparse::Status::Complete(len) = parsed.parse(&self.buf).unwrap() {
                let status = parsed.code.unwrap();
                let headers = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        let value = String::from_utf8(h.value.to_vec()).unwrap();
                        (h.name.to_owned(), value)
                    })
                    .collect();
                let head = String::from_utf8(self.take(len)).unwrap();
                return (status, head, headers);
            }
            assert!(self.read(), "closed before a response head");
        }
    }

    fn response(&mut self, head_only: bool) -> Response {
        let (status, head, headers) = self.head();
        let mut response = Response {
            status,
            head,
            headers,
            wire: Vec::new(),
            body: Vec::new(),
        };
        let length = response
            .header("content-length")
            .map(|v| v.parse().unwrap());
        let chunked = response.header("transfer-encoding") == Some("chunked");
        if head_only || status == 204 || status == 304 || status == 101 {
            return response;
        }
        if let Some(length) = length {
            response.wire = self.take(length);
            response.body = response.wire.clone();
        } else if chunked {
            let mut decoder = BodyDecoder::new(BodyFraming::Chunked);
            while !decoder.is_done() {
                if self.buf.is_empty() {
                    assert!(self.read(), "closed inside a chunked body");
                }
                let step = decoder.decode(&self.buf).unwrap();
                response.body.extend_from_slice(&self.buf[step.data]);
                response.wire.extend(self.buf.drain(..step.consumed));
            }
        } else {
            while self.read() {}
            response.wire = std::mem::take(&mut self.buf);
            response.body = response.wire.clone();
        }
        response
    }

    /// Whether the origin closed the connection (nothing more to read).
    fn closed(&mut self) -> bool {
        self.buf.is_empty() && !self.read()
    }
}

fn expected_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 65536 % 26) as u8).collect()
}

#[test]
fn hello_is_exact_and_head_has_no_body() {
    let mut client = Client::connect();
    client.send(b"GET / HTTP/1.1\r\nHost: origin.test\r\n\r\n");
    let expected: &[u8] = b"HTTP/1.1 200 OK\r\nServer: adit-origin\r\n\
Content-Type: text/plain\r\nContent-Length: 27\r\n\r\nHello from the adit origin\n";
    assert_eq!(client.take(expected.len()), expected);

    client.send(b"HEAD / HTTP/1.1\r\nHost: origin.test\r\n\r\n");
    let head: &[u8] = b"HTTP/1.1 200 OK\r\nServer: adit-origin\r\n\
Content-Type: text/plain\r\nContent-Length: 27\r\n\r\n";
    assert_eq!(client.take(head.len()), head);

    // Nothing followed the HEAD answer: the next response starts right after it.
    let next = client.request("GET", "/");
    assert_eq!(next.status, 200);
    assert_eq!(next.body, b"Hello from the adit origin\n");
}

#[test]
fn bytes_are_exact() {
    let mut client = Client::connect();
    let empty = client.request("GET", "/bytes/0");
    assert_eq!(
        empty.head,
        "HTTP/1.1 200 OK\r\nServer: adit-origin\r\nContent-Type: application/octet-stream\r\n\
Content-Length: 0\r\n\r\n"
    );
    assert_eq!(empty.body, b"");

    let small = client.request("GET", "/bytes/30");
    assert_eq!(small.body, b"abcdefghijklmnopqrstuvwxyzabcd");

    let large = client.request("GET", "/bytes/100000");
    assert_eq!(large.header("content-length"), Some("100000"));
    assert_eq!(large.body, expected_bytes(100_000));

    let head = client.request("HEAD", "/bytes/100000");
    assert_eq!(head.header("content-length"), Some("100000"));
    assert_eq!(client.request("GET", "/bytes/3").body, b"abc");

    let bad = client.request("GET", "/bytes/ten");
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body, b"N in /bytes/N must be a whole number\n");
}

#[test]
fn echo_streams_bodies_back() {
    let mut client = Client::connect();
    let body = expected_bytes(300_000);
    client.send(b"POST /echo HTTP/1.1\r\nHost: origin.test\r\nContent-Length: 300000\r\n\r\n");
    client.send(&body);
    let response = client.response(false);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-length"), Some("300000"));
    assert_eq!(response.body, body);

    client.send(
        b"POST /echo HTTP/1.1\r\nHost: origin.test\r\nTransfer-Encoding: chunked\r\n\r\n\
5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    );
    let response = client.response(false);
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    assert_eq!(response.body, b"hello world");

    let empty = client.request("POST", "/echo");
    assert_eq!(empty.header("content-length"), Some("0"));
    assert_eq!(empty.body, b"");
}

#[test]
fn sha256_of_a_known_body() {
    let mut client = Client::connect();
    client.send(b"POST /sha256 HTTP/1.1\r\nHost: origin.test\r\nContent-Length: 3\r\n\r\nabc");
    let response = client.response(false);
    assert_eq!(response.status, 200);
    assert_eq!(
        response.body,
        b"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );

    let empty = client.request("POST", "/sha256");
    assert_eq!(
        empty.body,
        b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn expect_continue_gets_an_interim_response() {
    let mut client = Client::connect();
    client.send(
        b"POST /echo HTTP/1.1\r\nHost: origin.test\r\nContent-Length: 4\r\n\
Expect: 100-continue\r\n\r\n",
    );
    assert_eq!(client.take(25), b"HTTP/1.1 100 Continue\r\n\r\n");
    client.send(b"ping");
    let response = client.response(false);
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"ping");

    client.send(
        b"POST /sha256 HTTP/1.1\r\nHost: origin.test\r\nContent-Length: 3\r\n\
Expect: 100-continue\r\n\r\n",
    );
    assert_eq!(client.take(25), b"HTTP/1.1 100 Continue\r\n\r\n");
    client.send(b"abc");
    let response = client.response(false);
    assert_eq!(
        response.body,
        b"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn stream_sends_exact_chunks_one_at_a_time() {
    let mut client = Client::connect();
    let started = Instant::now();
    let response = client.request("GET", "/stream?chunks=3&interval_ms=50");
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(response.header("content-type"), Some("text/plain"));
    assert_eq!(
        response.wire,
        b"8\r\nchunk 0\n\r\n8\r\nchunk 1\n\r\n8\r\nchunk 2\n\r\n0\r\n\r\n"
    );

    // The first chunk arrives on its own, long before the second is due.
    client.send(b"GET /stream?chunks=2&interval_ms=1000 HTTP/1.1\r\nHost: o\r\n\r\n");
    let (status, _, _) = client.head();
    assert_eq!(status, 200);
    assert_eq!(client.take(13), b"8\r\nchunk 0\n\r\n");
    assert!(client.buf.is_empty());
    assert_eq!(client.take(18), b"8\r\nchunk 1\n\r\n0\r\n\r\n");

    let empty = client.request("GET", "/stream?chunks=0");
    assert_eq!(empty.wire, b"0\r\n\r\n");
}

#[test]
fn sse_sends_exact_events() {
    let mut client = Client::connect();
    let response = client.request("GET", "/sse?events=3&interval_ms=10");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    assert_eq!(response.header("cache-control"), Some("no-cache"));
    assert_eq!(
        response.wire,
        b"f\r\ndata: event 0\n\n\r\nf\r\ndata: event 1\n\n\r\nf\r\ndata: event 2\n\n\r\n0\r\n\r\n"
    );
}

#[test]
fn delay_waits_at_least_as_asked() {
    let mut client = Client::connect();
    let started = Instant::now();
    let response = client.request("GET", "/delay/200");
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"done\n");
}

#[test]
fn status_answers_with_the_code_asked() {
    let mut client = Client::connect();
    let teapot = client.request("GET", "/status/418");
    assert_eq!(
        teapot.head,
        "HTTP/1.1 418 I'm a teapot\r\nServer: adit-origin\r\nContent-Type: text/plain\r\n\
Content-Length: 17\r\n\r\n"
    );
    assert_eq!(teapot.body, b"418 I'm a teapot\n");

    let no_content = client.request("GET", "/status/204");
    assert_eq!(
        no_content.head,
        "HTTP/1.1 204 No Content\r\nServer: adit-origin\r\nContent-Type: text/plain\r\n\r\n"
    );
    assert_eq!(
        client.request("GET", "/status/503").body,
        b"503 Service Unavailable\n"
    );
    assert_eq!(client.request("GET", "/status/600").status, 400);
    assert_eq!(client.request("GET", "/nowhere").status, 404);
}

#[test]
fn headers_come_back_as_a_json_object() {
    let mut client = Client::connect();
    client.send(
        b"GET /headers HTTP/1.1\r\nHost: origin.test\r\nX-Tag: one\r\nAccept: */*\r\n\
x-tag: two\r\nX-TAG: three\r\nX-Quote: say \"hi\"\r\n\r\n",
    );
    let response = client.response(false);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(
        String::from_utf8(response.body).unwrap(),
        concat!(
            r#"{"host":"origin.test","x-tag":["one","two","three"],"#,
            r#""accept":"*/*","x-quote":"say \"hi\""}"#
        )
    );
}

const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn upgrade(client: &mut Client) {
    client.send(
        format!(
            "GET /ws HTTP/1.1\r\nHost: origin.test\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: {SAMPLE_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    );
    let response = client.response(false);
    assert_eq!(
        response.head,
        "HTTP/1.1 101 Switching Protocols\r\nServer: adit-origin\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    );
}

fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![first];
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

#[test]
fn websocket_echoes_frames() {
    let mut client = Client::connect();
    upgrade(&mut client);

    // The masked "Hello" of RFC 6455 §5.7 comes back unmasked.
    client.send(&[
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ]);
    assert_eq!(client.take(7), [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);

    let binary: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
    client.send(&masked(0x82, &binary));
    assert_eq!(client.take(4), [0x82, 126, 0x01, 0x2c]);
    assert_eq!(client.take(300), binary);

    // A fragmented text message keeps its fragments.
    client.send(&masked(0x01, b"Hel"));
    client.send(&masked(0x80, b"lo"));
    assert_eq!(client.take(5), [0x01, 0x03, b'H', b'e', b'l']);
    assert_eq!(client.take(4), [0x80, 0x02, b'l', b'o']);

    client.send(&masked(0x89, b"hi"));
    assert_eq!(client.take(4), [0x8a, 0x02, b'h', b'i']);

    client.send(&masked(0x88, &1000u16.to_be_bytes()));
    assert_eq!(client.take(4), [0x88, 0x02, 0x03, 0xe8]);
    assert!(client.closed());
}

#[test]
fn websocket_refuses_unmasked_frames() {
    let mut client = Client::connect();
    upgrade(&mut client);
    client.send(&[0x81, 0x02, b'h', b'i']);
    assert_eq!(client.take(4), [0x88, 0x02, 0x03, 0xea]);
    assert!(client.closed());
}

#[test]
fn ws_without_an_upgrade_is_refused() {
    let mut client = Client::connect();
    let plain = client.request("GET", "/ws");
    assert_eq!(plain.status, 400);
    assert_eq!(plain.body, b"/ws takes a WebSocket upgrade\n");

    client.send(
        format!(
            "GET /ws HTTP/1.1\r\nHost: origin.test\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: {SAMPLE_KEY}\r\nSec-WebSocket-Version: 8\r\n\r\n"
        )
        .as_bytes(),
    );
    let old = client.response(false);
    assert_eq!(old.status, 426);
    assert_eq!(old.header("sec-websocket-version"), Some("13"));

    // Still HTTP after both refusals.
    assert_eq!(client.request("GET", "/").status, 200);
}

#[test]
fn one_connection_serves_every_route_in_turn() {
    let mut client = Client::connect();
    for round in 0..3 {
        assert_eq!(
            client.request("GET", "/").body,
            b"Hello from the adit origin\n"
        );
        assert_eq!(client.request("GET", "/bytes/70000").body.len(), 70_000);
        assert_eq!(client.request("HEAD", "/stream?chunks=5").wire, b"");
        assert_eq!(client.request("GET", "/stream?chunks=1").body, b"chunk 0\n");
        assert_eq!(
            client.request("GET", "/sse?events=1").body,
            b"data: event 0\n\n"
        );
        assert_eq!(client.request("GET", "/status/404").status, 404);
        assert_eq!(client.request("GET", "/delay/0").body, b"done\n");
        assert_eq!(client.request("HEAD", "/headers").wire, b"");
        // A body the route ignores is drained, not taken for the next request.
        let body = format!("round {round}");
        client.send(
            format!(
                "POST / HTTP/1.1\r\nHost: o\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        assert_eq!(client.response(false).status, 200);
    }
}

#[test]
fn http_1_0_and_close_end_the_connection() {
    let mut client = Client::connect();
    client.send(b"GET / HTTP/1.0\r\n\r\n");
    let response = client.response(false);
    assert_eq!(response.header("connection"), Some("close"));
    assert_eq!(response.body, b"Hello from the adit origin\n");
    assert!(client.closed());

    let mut client = Client::connect();
    client.send(b"GET /stream?chunks=2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let response = client.response(false);
    assert_eq!(response.header("transfer-encoding"), None);
    assert_eq!(response.body, b"chunk 0\nchunk 1\n");

    let mut client = Client::connect();
    client.send(b"GET /bytes/5 HTTP/1.1\r\nHost: o\r\nConnection: close\r\n\r\n");
    let response = client.response(false);
    assert_eq!(response.header("connection"), Some("close"));
    assert_eq!(response.body, b"abcde");
    assert!(client.closed());
}

#[test]
fn malformed_requests_get_400_and_a_close() {
    let mut client = Client::connect();
    client.send(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n");
    let response = client.response(false);
    assert_eq!(response.status, 400);
    assert_eq!(response.header("connection"), Some("close"));
    assert!(client.closed());
}
