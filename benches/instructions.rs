//! The per-request path in a form callgrind can count: parse a request head and encode the
//! tunnel's request frame for it; one small GET's QUIC exchange between edge and connector,
//! sans IO; and the response head's way from the origin through the connector's frame to the
//! client (the connector's `origin_head` and the edge's `client_head`).
//! `benches/callgrind.sh` runs this binary under `valgrind --tool=callgrind`, collecting only
//! inside the `measure_*` functions, and divides the instruction count by the iterations;
//! instruction counts, unlike wall time, do not move with the load on the machine, so a
//! regression shows as a plain difference.
//!
//! `instructions CASE [ITERATIONS]` runs one case; with no case (as under `cargo bench`) it
//! runs each once and prints the wall time per iteration, which is only a sanity check.
//!
//! Instructions per iteration on this project's kind of machine (2 vCPUs, here an Intel Xeon;
//! valgrind 3.19, rustc 1.95), from `benches/callgrind.sh`, as of the commit that frames a
//! relayed response and refuses codings other than chunked in one pass. Before the frame
//! bytes were checked against a class table, the same machine counted (2,000 iterations):
//! frame_encode 2955, request_path 5197, quic_exchange 48976, response_path 7775; right after
//! it: 2009, 4252, 45579 and 6940.
//!
//! ```text
//! head_parse       2238
//! frame_encode     2009
//! request_path     4254
//! quic_exchange   45266
//! response_path    6826
//! ```
//!
//! The QUIC exchange runs the real io_uring driver's steps by hand (valgrind cannot run
//! io_uring): two `quinn_proto` endpoints whose datagrams are moved in memory, a fake clock
//! that advances by fixed steps, and seeded randomness, so that the count repeats exactly.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use quinn_proto::{
    ConnectionHandle, DatagramEvent, Dir, EndpointConfig, HashedConnectionIdGenerator, StreamId,
};

use adit::connector::origin_head;
use adit::edge::response::client_head;
use adit::http::{self, Version, MAX_HEADERS};
use adit::tunnel::buffers::Buffers;
use adit::tunnel::frame::{self, BodyLen, Frame, RequestLine, StreamKind};

const HEAD: &[u8] = b"GET /api/v1/items?page=2 HTTP/1.1\r\nHost: app.example.com\r\n\
User-Agent: bench/1.0\r\nAccept: application/json\r\nAccept-Encoding: gzip, br\r\n\
Cookie: session=0123456789abcdef\r\nX-Request-Id: 5f0c9a\r\n\r\n";

/// A small origin response: its head and a 13-byte body.
const ORIGIN_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Length: 13\r\nDate: Tue, 04 Mar 2025 10:00:00 GMT\r\nServer: origin/1.0\r\n\
Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\nHello, world!";

const BODY: &[u8] = b"Hello, world!";

/// The fields of the response frame the connector sends in `quic_exchange`: what the
/// connector keeps of `ORIGIN_RESPONSE`'s head.
const RESPONSE_FIELDS: [(&[u8], &[u8]); 3] = [
    (b"Content-Type", b"text/plain; charset=utf-8"),
    (b"Date", b"Tue, 04 Mar 2025 10:00:00 GMT"),
    (b"Server", b"origin/1.0"),
];

const CASES: [&str; 5] = [
    "head_parse",
    "frame_encode",
    "request_path",
    "quic_exchange",
    "response_path",
];

fn main() {
    let mut args = std::env::args().skip(1);
    let case = args.next();
    let iterations = args.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    match case.as_deref() {
        Some(case) if CASES.contains(&case) => {
            run(case, iterations);
        }
        _ => {
            for case in CASES {
                let per = run(case, iterations).as_nanos() / u128::from(iterations);
                println!("{case}: {per} ns/iteration (wall time; count with callgrind.sh)");
            }
        }
    }
}

/// Runs `case` and returns the wall time of its measured part.
fn run(case: &str, iterations: u32) -> Duration {
    let mut out = BytesMut::with_capacity(4096);
    // Set-up (the QUIC handshake and warm-up, buffers) stays outside the measured functions.
    let mut tunnel = (case == "quic_exchange").then(Tunnel::connected);
    let buffers = Buffers::default();
    let mut head = BytesMut::with_capacity(512);
    let started = Instant::now();
    match (case, &mut tunnel) {
        ("head_parse", _) => measure_head_parse(iterations),
        ("frame_encode", _) => measure_frame_encode(iterations, &mut out),
        ("request_path", _) => measure_request_path(iterations, &mut out),
        (_, Some(tunnel)) => measure_quic_exchange(iterations, tunnel),
        _ => measure_response_path(iterations, &buffers, &mut head, &mut out),
    }
    started.elapsed()
}

#[inline(never)]
fn measure_head_parse(iterations: u32) {
    for _ in 0..iterations {
        parse_once();
    }
}

#[inline(never)]
fn measure_frame_encode(iterations: u32, out: &mut BytesMut) {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let head = http::parse_request(HEAD, &mut headers).unwrap().unwrap();
    for _ in 0..iterations {
        encode_once(&head, out);
    }
}

#[inline(never)]
fn measure_request_path(iterations: u32, out: &mut BytesMut) {
    for _ in 0..iterations {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let head = http::parse_request(black_box(HEAD), &mut headers)
            .unwrap()
            .unwrap();
        black_box(http::request_framing(head.headers).unwrap());
        encode_once(&head, out);
    }
}

fn parse_once() {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let head = http::parse_request(black_box(HEAD), &mut headers)
        .unwrap()
        .unwrap();
    black_box(http::request_framing(head.headers).unwrap());
}

fn encode_once(head: &http::RequestHead<'_, '_>, out: &mut BytesMut) {
    let line = RequestLine {
        kind: StreamKind::Http,
        body: BodyLen::Empty,
        client_addr: "203.0.113.7",
        method: head.method,
        authority: "app.example.com",
        path: head.target,
    };
    out.clear();
    let fields = head.headers.iter().map(|h| (h.name.as_bytes(), h.value));
    frame::encode_request(out, black_box(&line), fields).unwrap();
    black_box(&out);
}

#[inline(never)]
fn measure_quic_exchange(iterations: u32, tunnel: &mut Tunnel) {
    for _ in 0..iterations {
        tunnel.exchange();
    }
}

#[inline(never)]
fn measure_response_path(
    iterations: u32,
    buffers: &Buffers,
    head: &mut BytesMut,
    origin: &mut BytesMut,
) {
    for _ in 0..iterations {
        // As the connector's read from the origin leaves it: the head and the body in `origin`.
        origin.clear();
        origin.extend_from_slice(black_box(ORIGIN_RESPONSE));
        let parsed = origin_head(origin, false, buffers).unwrap().unwrap();
        black_box((parsed.framing, parsed.keep_alive));
        let response = response_frame(&parsed.frame);
        black_box(client_head(head, &response, Version::Http11, false, true));
        black_box(&head);
    }
}

fn response_frame(bytes: &[u8]) -> frame::ResponseFrame<'_> {
    match frame::decode(bytes) {
        Ok(Some((Frame::Response(response), _))) => response,
        other => panic!("expected a response frame, got {other:?}"),
    }
}

/// Where the edge listens and where the connector sends from: one host, as in our benchmarks.
const EDGE_ADDR: ([u8; 4], u16) = ([127, 0, 0, 1], 7844);
const CONNECTOR_ADDR: ([u8; 4], u16) = ([127, 0, 0, 1], 40000);

/// Fake time from one request to the next on the connection.
const REQUEST_GAP: Duration = Duration::from_micros(500);

/// Fake time from one flight of datagrams to the next.
const HOP: Duration = Duration::from_micros(20);

/// Exchanges before measuring (a second of fake time), so that MTU discovery has ended and
/// the connection is in its steady state.
const WARM_UP: u32 = 2_000;

/// What a socket with GRO accepts (`MAX_GRO_PAYLOAD` in `src/quic/udp.rs`).
const MAX_UDP_PAYLOAD: u16 = 16 * 1024;

/// As the driver: at most this many datagrams per transmit, and at most 64 KiB.
const MAX_GSO_SEGMENTS: usize = 44;

/// As the driver's receive block (`RX_BLOCK` in `src/quic/run.rs`).
const RX_BLOCK: usize = 64 * 1024;

/// Flights one exchange may take; more means the exchange is stuck.
const MAX_FLIGHTS: usize = 64;

/// The fields of the request frame the edge sends in `quic_exchange`: `HEAD`'s less Host,
/// plus the scheme, as `prepare` in `src/edge/proxy.rs` builds them.
const REQUEST_FIELDS: [(&[u8], &[u8]); 6] = [
    (b"User-Agent", b"bench/1.0"),
    (b"Accept", b"application/json"),
    (b"Accept-Encoding", b"gzip, br"),
    (b"Cookie", b"session=0123456789abcdef"),
    (b"X-Request-Id", b"5f0c9a"),
    (b"x-forwarded-proto", b"https"),
];

/// One end of the tunnel connection: a quinn-proto endpoint and its one connection.
struct Side {
    endpoint: quinn_proto::Endpoint,
    conn: Option<(ConnectionHandle, quinn_proto::Connection)>,
    addr: SocketAddr,
    /// The config an accepted connection gets: the edge's, with the loopback transport, as
    /// the driver picks it for a loopback peer.
    accept: Option<Arc<quinn_proto::ServerConfig>>,
    /// The block received datagrams are copied into, as the driver's `take_train` does.
    rx: BytesMut,
    /// Datagrams the endpoint answers by itself.
    response: Vec<u8>,
}

impl Side {
    /// An endpoint configured as the driver configures one, with fixed keys and a fixed rng
    /// seed so that every run makes the same connection ids and random choices.
    fn new(addr: ([u8; 4], u16), server: Option<Arc<quinn_proto::ServerConfig>>, seed: u8) -> Side {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[seed; 32]);
        let mut config = EndpointConfig::new(Arc::new(key));
        config
            .cid_generator(move || Box::new(HashedConnectionIdGenerator::from_key(u64::from(seed))))
            .rng_seed(Some([seed; 32]))
            .max_udp_payload_size(MAX_UDP_PAYLOAD)
            .unwrap();
        let accept = server.as_deref().map(|server| {
            let mut server = server.clone();
            server.transport_config(adit::quic::loopback_transport_config());
            Arc::new(server)
        });
        Side {
            endpoint: quinn_proto::Endpoint::new(Arc::new(config), server, true, None),
            conn: None,
            addr: SocketAddr::from(addr),
            accept,
            rx: BytesMut::new(),
            response: Vec::new(),
        }
    }

    fn conn(&mut self) -> &mut quinn_proto::Connection {
        &mut self.conn.as_mut().expect("not connected").1
    }

    /// Hands a received train of datagrams (`stride` bytes each) to the endpoint and its
    /// connection, as the driver's `receive` does.
    fn receive(&mut self, now: Instant, from: SocketAddr, train: &[u8], stride: usize) {
        if !self.rx.try_reclaim(train.len()) {
            self.rx = BytesMut::with_capacity(RX_BLOCK.max(train.len()));
        }
        self.rx.extend_from_slice(train);
        let mut train = self.rx.split();
        while !train.is_empty() {
            let datagram = train.split_to(stride.min(train.len()));
            self.response.clear();
            let local_ip = Some(self.addr.ip());
            let event =
                self.endpoint
                    .handle(now, from, local_ip, None, datagram, &mut self.response);
            match event {
                Some(DatagramEvent::ConnectionEvent(_, event)) => {
                    if let Some((_, conn)) = &mut self.conn {
                        conn.handle_event(event);
                    }
                }
                Some(DatagramEvent::NewConnection(incoming)) => {
                    let config = self.accept.clone();
                    match self
                        .endpoint
                        .accept(incoming, now, &mut self.response, config)
                    {
                        Ok(accepted) => self.conn = Some(accepted),
                        Err(error) => panic!("the edge refused the connector: {}", error.cause),
                    }
                }
                Some(DatagramEvent::Response(_)) | None => {}
            }
        }
    }

    /// The driver's `service`: fire a due timeout, pass endpoint events both ways, take the
    /// application events (nobody waits on them here).
    fn service(&mut self, now: Instant) {
        let Some((handle, conn)) = &mut self.conn else {
            return;
        };
        if conn.poll_timeout().is_some_and(|t| t <= now) {
            conn.handle_timeout(now);
        }
        while let Some(event) = conn.poll_endpoint_events() {
            if let Some(event) = self.endpoint.handle_event(*handle, event) {
                conn.handle_event(event);
            }
        }
        while conn.poll().is_some() {}
    }
}

/// One side's turn as the driver's `drive` takes it: service the connection, send what it
/// has (straight into the other side), service it again. Returns whether anything was sent.
fn flush(from: &mut Side, to: &mut Side, now: Instant, tx: &mut Vec<u8>) -> bool {
    from.service(now);
    let Some((_, conn)) = &mut from.conn else {
        return false;
    };
    let mut sent = false;
    loop {
        let fit = usize::from(u16::MAX) / usize::from(conn.current_mtu().max(1));
        tx.clear();
        let Some(transmit) = conn.poll_transmit(now, fit.clamp(1, MAX_GSO_SEGMENTS), tx) else {
            break;
        };
        let stride = transmit.segment_size.unwrap_or(transmit.size);
        to.receive(now, from.addr, &tx[..transmit.size], stride);
        sent = true;
    }
    from.service(now);
    sent
}

/// Edge and connector with one tunnel connection between them, on a fake clock.
struct Tunnel {
    edge: Side,
    connector: Side,
    now: Instant,
    /// The transmit buffer, reused for every `poll_transmit` as the driver's.
    tx: Vec<u8>,
    /// The edge's buffer request frames are encoded into and split off.
    frame: BytesMut,
    /// The connector worker's frame block.
    buffers: Buffers,
    /// Chunks read off a stream.
    chunks: Vec<Bytes>,
}

impl Tunnel {
    /// A tunnel connection past its handshake and warm-up.
    fn connected() -> Tunnel {
        let (server, ca_pem) = edge_server_config();
        let mut client = adit::quic::client_config(&ca_pem).unwrap();
        client.transport_config(adit::quic::loopback_transport_config());
        let mut tunnel = Tunnel {
            edge: Side::new(EDGE_ADDR, Some(server), 1),
            connector: Side::new(CONNECTOR_ADDR, None, 2),
            now: clock_start(),
            tx: Vec::with_capacity(usize::from(u16::MAX)),
            frame: BytesMut::new(),
            buffers: Buffers::default(),
            chunks: Vec::new(),
        };
        let dialed = tunnel.connector.endpoint.connect(
            tunnel.now,
            client,
            tunnel.edge.addr,
            adit::tunnel::EDGE_SERVER_NAME,
        );
        tunnel.connector.conn = Some(dialed.unwrap());
        tunnel.pump();
        assert!(!tunnel.connector.conn().is_handshaking());
        assert!(!tunnel.edge.conn().is_handshaking());
        for _ in 0..WARM_UP {
            tunnel.exchange();
        }
        tunnel
    }

    /// Moves datagrams both ways, a flight at a time, until neither side has more to send.
    fn pump(&mut self) {
        for _ in 0..MAX_FLIGHTS {
            let to_connector = flush(&mut self.edge, &mut self.connector, self.now, &mut self.tx);
            let to_edge = flush(&mut self.connector, &mut self.edge, self.now, &mut self.tx);
            self.now += HOP;
            if !to_connector && !to_edge {
                return;
            }
        }
        panic!("the exchange did not settle within {MAX_FLIGHTS} flights");
    }

    /// One small GET through the tunnel connection: the edge opens a stream with the request
    /// frame, the connector answers with a response frame and a 13-byte body, the edge reads
    /// it all.
    fn exchange(&mut self) {
        self.now += REQUEST_GAP;
        let line = RequestLine {
            kind: StreamKind::Http,
            body: BodyLen::Empty,
            client_addr: "203.0.113.7",
            method: "GET",
            authority: "app.example.com",
            path: "/api/v1/items?page=2",
        };
        frame::encode_request(&mut self.frame, &line, REQUEST_FIELDS).unwrap();
        let edge = self.edge.conn();
        let id = edge.streams().open(Dir::Bi).expect("no stream credit");
        let mut send = edge.send_stream(id);
        send.write_chunks(&mut [self.frame.split().freeze()])
            .unwrap();
        send.finish().unwrap();
        self.pump();

        let connector = self.connector.conn();
        let accepted = connector
            .streams()
            .accept(Dir::Bi)
            .expect("no stream arrived");
        read_to_end(connector, accepted, &mut self.chunks);
        match self.chunks.first().map(|chunk| frame::decode(chunk)) {
            Some(Ok(Some((Frame::Request(request), _)))) => black_box(request.line.path),
            other => panic!("expected a request frame, got {other:?}"),
        };
        let head = self
            .buffers
            .encode(256, |out| {
                frame::encode_response(out, 200, BodyLen::Known(BODY.len() as u64), RESPONSE_FIELDS)
            })
            .unwrap();
        let mut send = connector.send_stream(accepted);
        send.write_chunks(&mut [head]).unwrap();
        send.write_chunks(&mut [Bytes::from_static(BODY)]).unwrap();
        send.finish().unwrap();
        self.pump();

        read_to_end(self.edge.conn(), id, &mut self.chunks);
        let first = self.chunks.first().expect("no response arrived");
        let used = match frame::decode(first) {
            Ok(Some((Frame::Response(response), used))) => {
                black_box(response.status);
                used
            }
            other => panic!("expected a response frame, got {other:?}"),
        };
        let body: usize = self.chunks.iter().map(Bytes::len).sum::<usize>() - used;
        assert_eq!(body, BODY.len());
    }
}

/// The fake clock's start: now, less its nanoseconds. Adding to an `Instant` carries into
/// the seconds when the nanoseconds overflow, so only a start with the same nanoseconds in
/// every run takes the same branches every run. std shows the nanoseconds only in `Debug`
/// (on Unix); should that change, the counts may move by a few instructions per run.
fn clock_start() -> Instant {
    let now = Instant::now();
    let shown = format!("{now:?}");
    let nanos = shown
        .split("tv_nsec: ")
        .nth(1)
        .and_then(|rest| rest.trim_end_matches([' ', '}']).parse().ok());
    let start = nanos.and_then(|nanos| now.checked_sub(Duration::from_nanos(nanos)));
    start.unwrap_or(now)
}

/// Reads all `id` has received, which must be the whole stream.
fn read_to_end(conn: &mut quinn_proto::Connection, id: StreamId, chunks: &mut Vec<Bytes>) {
    chunks.clear();
    let mut recv = conn.recv_stream(id);
    let mut read = recv.read(true).expect("stream not readable");
    loop {
        match read.next(usize::MAX) {
            Ok(Some(chunk)) => chunks.push(chunk.bytes),
            Ok(None) => break,
            Err(error) => panic!("stream {id} unfinished: {error}"),
        }
    }
    let _ = read.finalize();
}

/// The edge's QUIC server config, with a leaf for the edge's server name signed by a fresh
/// CA, and that CA's PEM for the connector. Ed25519, because its signatures have one length:
/// with ECDSA the certificates and handshake messages vary by a byte or two per run, which
/// moves later heap addresses and with them a few instructions of `memcpy`.
fn edge_server_config() -> (Arc<quinn_proto::ServerConfig>, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, PKCS_ED25519};
    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    let ca_key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
    let names = vec![adit::tunnel::EDGE_SERVER_NAME.to_string()];
    let leaf = CertificateParams::new(names)
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let server = adit::quic::server_config(vec![leaf.der().clone()], key).unwrap();
    (server, ca_pem)
}
