//! Allocations per proxied request through an in-process origin, edge and connector (one
//! worker each, on loopback), over one warmed-up keep-alive client connection with a fixed
//! request and a fixed read buffer. The count covers the whole process.
//!
//! adit's own request path allocates nothing in the steady state: the connector serves each
//! stream on a parked server task and keeps pooled origin connections split, and a stream
//! whose end has arrived is not stopped with a STOP_SENDING (which would cost quinn-proto a
//! retransmission record). quinn-proto allocates per stream; no setting reuses that state.
//! Per request, exactly 6, all in quinn-proto: on each side, the boxed send state of the
//! stream (2), the first growth of its send-buffer segment queue (2) and the first node of
//! its acknowledged-range set (2).
//!
//! The warm-up is longer than the concurrent-stream limit (4096): until then, quinn-proto
//! allocates the receive state of each stream the connector accepts (a boxed state and its
//! reassembly queue, 2 per request) and only then reuses freed ones.
//!
//! On top of that, quinn-proto's connection-level housekeeping (acknowledgement-only
//! packets, its sent-packet map, a MAX_STREAMS frame every 512 streams) allocates now and
//! then: measured at about 3 per thousand requests. The test allows at most one per hundred, so a
//! change that adds one allocation per request anywhere on the path fails it, and a slower
//! machine does not.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

mod common;
#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{Counting, ALLOCATIONS};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations per request left on the path (see the module documentation).
const PER_REQUEST: u64 = 6;

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: alloc.test\r\nUser-Agent: test\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: adit-origin\r\nContent-Type: text/plain\r\n\
Content-Length: 27\r\n\r\nHello from the adit origin\n";

/// Sends the request `times` times, reading each response whole.
fn exchange(stream: &mut TcpStream, buf: &mut [u8], times: usize) {
    for _ in 0..times {
        stream.write_all(REQUEST).unwrap();
        let mut got = 0;
        while got < RESPONSE.len() {
            let n = stream.read(&mut buf[got..RESPONSE.len()]).unwrap();
            assert!(n > 0, "edge closed");
            got += n;
        }
    }
}

/// Connects once the tunnel serves the route, with one whole response read.
fn connect(addr: std::net::SocketAddr, buf: &mut [u8]) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        stream.write_all(REQUEST).unwrap();
        let mut n = stream.read(buf).unwrap();
        if buf[..n].starts_with(b"HTTP/1.1 200") {
            while n < RESPONSE.len() {
                n += stream.read(&mut buf[n..RESPONSE.len()]).unwrap();
            }
            assert_eq!(&buf[..n], RESPONSE);
            return stream;
        }
        assert!(
            Instant::now() < deadline,
            "the tunnel never served the route"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn proxied_requests_allocate_only_what_quinn_needs_per_stream() {
    let dir = std::env::temp_dir().join(format!("adit-tunnel-alloc-{}", std::process::id()));
    let origin = adit::origin::spawn("127.0.0.1:0".parse().unwrap(), 1).unwrap();
    let edge = adit::edge::start(common::loopback_edge_config(dir.clone())).unwrap();
    let credentials = edge.control.create_tunnel("alloc").unwrap();
    edge.control.route("alloc", "alloc.test").unwrap();
    let connector = adit::connector::start(adit::connector::ConnectorConfig {
        credentials,
        ingress: adit::connector::ingress::Ingress::single(&format!("http://{}", origin.addr))
            .unwrap(),
        ha_connections: 1,
        workers: 1,
        edge: Some(edge.tunnel_addr),
        pin_cpus: false,
    })
    .unwrap();

    let mut buf = vec![0u8; 64 * 1024];
    let mut stream = connect(edge.http_addr, &mut buf);
    // Warm up: buffers, pools and tables reach their sizes, and quinn-proto has freed
    // receive state to reuse (see the module documentation).
    exchange(&mut stream, &mut buf, 5000);

    let measured = 1000;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    exchange(&mut stream, &mut buf, measured);
    let counted = ALLOCATIONS.load(Ordering::Relaxed) - before;

    drop(stream);
    connector.shutdown();
    edge.shutdown();
    let _ = std::fs::remove_dir_all(&dir);

    let measured = measured as u64;
    let floor = PER_REQUEST * measured;
    assert!(
        (floor..=floor + measured / 100).contains(&counted),
        "{counted} allocations over {measured} requests; expected {floor} and at most {} more",
        measured / 100
    );
}
