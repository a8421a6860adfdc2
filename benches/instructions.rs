//! The per-request pure path in a form callgrind can count: parse a request head, then
//! encode the tunnel's request frame for it. `benches/callgrind.sh` runs this binary under
//! `valgrind --tool=callgrind`, collecting only inside the `measure_*` functions, and divides
//! the instruction count by the iterations; instruction counts, unlike wall time, do not move
//! with the load on the machine, so a regression shows as a plain difference.
//!
//! `instructions CASE [ITERATIONS]` runs one case; with no case (as under `cargo bench`) it
//! runs each once and prints the wall time per iteration, which is only a sanity check.

use std::hint::black_box;
use std::time::Instant;

use bytes::BytesMut;

use adit::http::{self, MAX_HEADERS};
use adit::tunnel::frame::{self, BodyLen, RequestLine, StreamKind};

const HEAD: &[u8] = b"GET /api/v1/items?page=2 HTTP/1.1\r\nHost: app.example.com\r\n\
User-Agent: bench/1.0\r\nAccept: application/json\r\nAccept-Encoding: gzip, br\r\n\
Cookie: session=0123456789abcdef\r\nX-Request-Id: 5f0c9a\r\n\r\n";

const CASES: [&str; 3] = ["head_parse", "frame_encode", "request_path"];

fn main() {
    let mut args = std::env::args().skip(1);
    let case = args.next();
    let iterations = args.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    match case.as_deref() {
        Some(case) if CASES.contains(&case) => run(case, iterations),
        _ => {
            for case in CASES {
                let started = Instant::now();
                run(case, iterations);
                let per = started.elapsed().as_nanos() / u128::from(iterations);
                println!("{case}: {per} ns/iteration (wall time; count with callgrind.sh)");
            }
        }
    }
}

fn run(case: &str, iterations: u32) {
    let mut out = BytesMut::with_capacity(4096);
    match case {
        "head_parse" => measure_head_parse(iterations),
        "frame_encode" => measure_frame_encode(iterations, &mut out),
        _ => measure_request_path(iterations, &mut out),
    }
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
