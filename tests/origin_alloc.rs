//! The origin's hot routes allocate nothing per request: over one warmed-up keep-alive
//! connection, a thousand requests to `/` and to `/bytes/N` leave the allocation count where
//! it was. The client side (a fixed request, a fixed read buffer) allocates nothing either,
//! so the count covers the whole process.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{Counting, ALLOCATIONS};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Sends `request` `times` times, reading each response (of `response_len` bytes) whole.
fn exchange(
    stream: &mut TcpStream,
    buf: &mut [u8],
    request: &[u8],
    response_len: usize,
    times: usize,
) {
    for _ in 0..times {
        stream.write_all(request).unwrap();
        let mut got = 0;
        while got < response_len {
            let n = stream.read(&mut buf[..response_len - got]).unwrap();
            assert!(n > 0, "origin closed");
            got += n;
        }
    }
}

#[test]
fn hello_and_bytes_allocate_nothing_per_request() {
    let origin = adit::origin::spawn("127.0.0.1:0".parse().unwrap(), 1).unwrap();
    let mut stream = TcpStream::connect(origin.addr).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut buf = vec![0u8; 128 * 1024];

    let hello = b"GET / HTTP/1.1\r\nHost: origin.test\r\nUser-Agent: test\r\n\r\n";
    let hello_len = b"HTTP/1.1 200 OK\r\nServer: adit-origin\r\nContent-Type: text/plain\r\n\
Content-Length: 27\r\n\r\nHello from the adit origin\n"
        .len();
    let bytes = b"GET /bytes/100000 HTTP/1.1\r\nHost: origin.test\r\n\r\n";
    let bytes_len = b"HTTP/1.1 200 OK\r\nServer: adit-origin\r\n\
Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n"
        .len()
        + 100_000;

    // Warm up: the connection's buffers and the runtime's tables reach their sizes.
    exchange(&mut stream, &mut buf, hello, hello_len, 100);
    exchange(&mut stream, &mut buf, bytes, bytes_len, 20);

    let before = ALLOCATIONS.load(Ordering::Relaxed);
    assert!(before > 0, "the counting allocator is not in use");
    exchange(&mut stream, &mut buf, hello, hello_len, 1000);
    exchange(&mut stream, &mut buf, bytes, bytes_len, 100);
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(after - before, 0);
}
