//! Micro-benchmarks of the latency histograms `adit load` keeps: one HdrHistogram per
//! worker with 3 significant digits over microseconds, recorded into per request and merged
//! once at the end.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hdrhistogram::Histogram;

/// Latencies from 1 µs to one hour, as `adit load` records them.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap()
}

/// 10,000 latencies in microseconds, mostly 50 µs to 5 ms with a tail to about 1 s, from a
/// fixed xorshift sequence so every run records the same values.
fn latencies() -> Vec<u64> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..10_000)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let base = 50 + state % 5_000;
            if i % 100 == 0 {
                base * 200
            } else {
                base
            }
        })
        .collect()
}

fn record(c: &mut Criterion) {
    let values = latencies();
    let mut group = c.benchmark_group("histogram");
    group.throughput(Throughput::Elements(values.len() as u64));
    group.bench_function("record_10k", |b| {
        b.iter_batched_ref(
            histogram,
            |histogram| {
                for &value in &values {
                    histogram.saturating_record(black_box(value));
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn merge(c: &mut Criterion) {
    let values = latencies();
    let mut a = histogram();
    let mut b = histogram();
    for (i, &value) in values.iter().enumerate() {
        if i % 2 == 0 {
            a.saturating_record(value);
        } else {
            b.saturating_record(value * 3);
        }
    }
    c.bench_function("histogram/merge_two", |bencher| {
        bencher.iter_batched_ref(
            || a.clone(),
            |merged| merged.add(black_box(&b)).unwrap(),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, record, merge);
criterion_main!(benches);
