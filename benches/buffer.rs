//! Micro-benchmark of taking and returning a read buffer as the data path does today.
//!
//! adit has no slab pool of buffers yet: each connection owns one `BytesMut`, reads land in
//! its spare capacity (`runtime::io::read_more`), the filled bytes are split off and frozen
//! into `Bytes` that move on to a write, and once that `Bytes` is dropped the next `reserve`
//! takes the allocation back. This measures that cycle (reserve, fill, `split().freeze()`,
//! drop, reserve again) against allocating a fresh buffer per read.

use std::hint::black_box;

use bytes::{BufMut, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use adit::runtime::io::READ_CHUNK;

/// What `read_more` does before each read: make room for a read of `READ_CHUNK / 4` at
/// least, reserving a whole `READ_CHUNK` when there is less.
fn make_room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
}

/// One read's worth of bytes through the buffer: the fill stands in for the kernel's copy.
fn cycle(buf: &mut BytesMut, fill: usize) {
    make_room(buf);
    buf.put_bytes(0xA5, fill);
    let bytes = buf.split().freeze();
    black_box(&bytes);
    drop(bytes);
}

fn reclaim(c: &mut Criterion) {
    let mut group = c.benchmark_group("buffer/bytesmut_reclaim");
    for fill in [512, READ_CHUNK] {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        // The measured path must be the reclaiming one: however many reads go through, the
        // buffer stays inside its first allocation.
        let first = buf.as_ptr() as usize..buf.as_ptr() as usize + READ_CHUNK;
        for _ in 0..1000 {
            cycle(&mut buf, fill);
            make_room(&mut buf);
            assert!(first.contains(&(buf.as_ptr() as usize)), "not reclaimed");
        }

        group.throughput(Throughput::Bytes(fill as u64));
        group.bench_function(format!("{fill}B"), |b| b.iter(|| cycle(&mut buf, fill)));
    }
    group.finish();

    let mut group = c.benchmark_group("buffer/fresh_alloc");
    for fill in [512, READ_CHUNK] {
        group.throughput(Throughput::Bytes(fill as u64));
        group.bench_function(format!("{fill}B"), |b| {
            b.iter(|| {
                let mut buf = BytesMut::with_capacity(READ_CHUNK);
                cycle(&mut buf, fill);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, reclaim);
criterion_main!(benches);
