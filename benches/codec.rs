//! Micro-benchmarks of the per-request pure paths: parsing a request head, encoding and
//! decoding the tunnel's request frame, and decoding a chunked body.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use adit::http::{self, BodyDecoder, BodyFraming, MAX_HEADERS};
use adit::tunnel::frame::{self, BodyLen, RequestLine, StreamKind};

const HEAD: &[u8] = b"GET /api/v1/items?page=2 HTTP/1.1\r\nHost: app.example.com\r\n\
User-Agent: bench/1.0\r\nAccept: application/json\r\nAccept-Encoding: gzip, br\r\n\
Cookie: session=0123456789abcdef\r\nX-Request-Id: 5f0c9a\r\n\r\n";

fn head_parse(c: &mut Criterion) {
    c.bench_function("http/parse_request", |b| {
        b.iter(|| {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let head = http::parse_request(black_box(HEAD), &mut headers)
                .unwrap()
                .unwrap();
            black_box(http::request_framing(head.headers).unwrap());
        })
    });
}

fn request_frame(c: &mut Criterion) {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let head = http::parse_request(HEAD, &mut headers).unwrap().unwrap();
    let line = RequestLine {
        kind: StreamKind::Http,
        body: BodyLen::Empty,
        client_addr: "203.0.113.7",
        method: head.method,
        authority: "app.example.com",
        path: head.target,
    };
    let mut out = BytesMut::with_capacity(4096);
    c.bench_function("frame/encode_request", |b| {
        b.iter(|| {
            out.clear();
            let fields = head.headers.iter().map(|h| (h.name.as_bytes(), h.value));
            frame::encode_request(&mut out, black_box(&line), fields).unwrap();
        })
    });
    let encoded = out.clone().freeze();
    c.bench_function("frame/decode_request", |b| {
        b.iter(|| {
            let (frame, used) = frame::decode(black_box(&encoded)).unwrap().unwrap();
            black_box((frame, used));
        })
    });
}

fn chunked_body(c: &mut Criterion) {
    let mut body = Vec::new();
    for _ in 0..64 {
        body.extend_from_slice(b"400\r\n");
        body.extend_from_slice(&[b'x'; 1024]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let mut group = c.benchmark_group("http");
    group.throughput(Throughput::Bytes(64 * 1024));
    group.bench_function("decode_chunked_64k", |b| {
        b.iter(|| {
            let mut decoder = BodyDecoder::new(BodyFraming::Chunked);
            let mut at = 0;
            while !decoder.is_done() {
                let step = decoder.decode(black_box(&body[at..])).unwrap();
                at += step.consumed;
            }
        })
    });
    group.finish();
}

criterion_group!(benches, head_parse, request_frame, chunked_body);
criterion_main!(benches);
