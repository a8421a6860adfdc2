//! Prometheus metrics for the edge and the connector: per-worker sets, summed when scraped.
//!
//! Every data-plane worker owns an `Arc` of its role's metric set ([`edge::EdgeMetrics`],
//! [`connector::ConnectorMetrics`]) and is the only thread that writes it; the metrics
//! server's thread holds every worker's `Arc` and reads them all at scrape time, summing
//! counters, gauges and histogram buckets. Recording a value is a relaxed atomic load and
//! store on memory no other thread writes: no lock, no allocation, no contended cache line
//! on the request path.
//!
//! QUIC path figures (RTT, congestion window, packets) are not per-request values: each
//! connection's task copies them into its worker's [`path::PathTable`] once a second, and
//! only that copy takes a lock.
//!
//! - this file: [`Counter`], [`Gauge`], [`Histogram`] and the status classes.
//! - `expose`: the Prometheus text exposition writer.
//! - [`server`]: the small blocking HTTP server that answers scrapes and probes.
//! - [`path`]: per-connection QUIC figures.
//! - [`edge`], [`connector`]: each role's set and how it renders.

pub mod connector;
pub mod edge;
mod expose;
pub mod path;
pub mod server;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

pub use expose::{Exposition, Kind};

// Why load and store instead of `fetch_add`: a set has exactly one writer (its worker), so
// no increment can race another and be lost. `fetch_add` would be a locked
// read-modify-write instruction that takes the cache line exclusively on every request; a
// plain load and store compile to ordinary moves. The scraper's relaxed loads of a 64-bit
// atomic never see a torn value, only a slightly older one, which a scrape tolerates.
// Should a set ever be written from two threads, increments could be lost, never memory
// corrupted.

/// A count that only grows, written by one worker.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        let value = self.0.load(Relaxed);
        self.0.store(value.wrapping_add(n), Relaxed);
    }

    pub fn value(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A value that goes up and down, written by one worker. Summed over workers it may be
/// read while one worker is between its increment and decrement; that is the gauge's
/// value at that instant.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn add(&self, n: i64) {
        let value = self.0.load(Relaxed);
        self.0.store(value.wrapping_add(n), Relaxed);
    }

    pub fn inc(&self) {
        self.add(1);
    }

    pub fn dec(&self) {
        self.add(-1);
    }

    pub fn value(&self) -> i64 {
        self.0.load(Relaxed)
    }

    /// Increments now and decrements when the guard drops, however the scope ends.
    pub fn track(&self) -> GaugeGuard<'_> {
        self.inc();
        GaugeGuard(self)
    }
}

/// See [`Gauge::track`].
pub struct GaugeGuard<'a>(&'a Gauge);

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Upper bounds of the latency buckets, in nanoseconds: 100 µs to 30 s, roughly 1-2.5-5
/// per decade. A value lands in the first bucket whose bound it does not exceed.
pub const LATENCY_BOUNDS_NS: [u64; 17] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
];

/// [`LATENCY_BOUNDS_NS`] as the `le` labels show them, in seconds.
const LATENCY_LE: [&str; 17] = [
    "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
    "0.25", "0.5", "1", "2.5", "5", "10", "30",
];

const BUCKETS: usize = LATENCY_BOUNDS_NS.len() + 1;

/// A latency histogram with the fixed buckets of [`LATENCY_BOUNDS_NS`], written by one
/// worker. Buckets hold their own counts (not cumulative ones); the last is `+Inf`. The
/// observation count is the buckets' sum, so `_count` and the `+Inf` bucket always agree.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [Counter; BUCKETS],
    sum_ns: Counter,
}

impl Histogram {
    pub fn observe(&self, value: Duration) {
        let ns = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(ns)].inc();
        self.sum_ns.add(ns);
    }
}

/// The index of the bucket a value of `ns` nanoseconds belongs in.
fn bucket_of(ns: u64) -> usize {
    LATENCY_BOUNDS_NS.partition_point(|&bound| bound < ns)
}

/// Histograms of several workers added up, for rendering.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistogramSum {
    pub buckets: [u64; BUCKETS],
    pub sum_ns: u64,
}

impl HistogramSum {
    pub fn of<'a>(histograms: impl IntoIterator<Item = &'a Histogram>) -> HistogramSum {
        let mut sum = HistogramSum::default();
        for histogram in histograms {
            for (total, bucket) in sum.buckets.iter_mut().zip(&histogram.buckets) {
                *total = total.wrapping_add(bucket.value());
            }
            sum.sum_ns = sum.sum_ns.wrapping_add(histogram.sum_ns.value());
        }
        sum
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().copied().fold(0, u64::wrapping_add)
    }
}

/// Responses counted by status class, `1xx` to `5xx`.
#[derive(Debug, Default)]
pub struct StatusClasses([Counter; 5]);

/// The `class` label values, in the order of [`StatusClasses`].
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

impl StatusClasses {
    /// Counts one response; a status outside 100..=599 (or 0, "none sent") is not counted.
    pub fn record(&self, status: u16) {
        if let 100..=599 = status {
            self.0[usize::from(status / 100 - 1)].inc();
        }
    }
}

/// The sum over workers of one counter, chosen by `field`.
pub fn sum_counters<T>(sets: &[std::sync::Arc<T>], field: impl Fn(&T) -> &Counter) -> u64 {
    sets.iter()
        .map(|set| field(set).value())
        .fold(0, u64::wrapping_add)
}

/// The sum over workers of one gauge, chosen by `field`.
pub fn sum_gauges<T>(sets: &[std::sync::Arc<T>], field: impl Fn(&T) -> &Gauge) -> i64 {
    sets.iter()
        .map(|set| field(set).value())
        .fold(0, i64::wrapping_add)
}

/// Writes a `requests_total`-style family: one sample per status class, summed.
pub fn render_classes<T>(
    out: &mut Exposition,
    name: &str,
    help: &str,
    sets: &[std::sync::Arc<T>],
    field: impl Fn(&T) -> &StatusClasses,
) {
    out.header(name, help, Kind::Counter);
    for (index, class) in CLASSES.iter().enumerate() {
        let total = sum_counters(sets, |set| &field(set).0[index]);
        out.sample(name, &[("class", class)], total);
    }
}

/// One labelled counter of a [`render_counters`] family: the label's value and the field.
pub type Labelled<'a, T> = (&'a str, fn(&T) -> &Counter);

/// Writes a counter family with one label: one sample per `(value, field)`, summed over
/// every worker's set.
pub fn render_counters<T>(
    out: &mut Exposition,
    (name, help): (&str, &str),
    label: &str,
    sets: &[std::sync::Arc<T>],
    counters: &[Labelled<'_, T>],
) {
    out.header(name, help, Kind::Counter);
    for &(value, field) in counters {
        out.sample(name, &[(label, value)], sum_counters(sets, field));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn values_land_in_the_first_bucket_they_do_not_exceed() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(100_000), 0);
        assert_eq!(bucket_of(100_001), 1);
        assert_eq!(bucket_of(1_000_000), 3);
        assert_eq!(bucket_of(30_000_000_000), 16);
        assert_eq!(bucket_of(30_000_000_001), 17);
        assert_eq!(bucket_of(u64::MAX), 17);
    }

    #[test]
    fn histograms_sum_across_workers() {
        let a = Histogram::default();
        let b = Histogram::default();
        a.observe(Duration::from_micros(50));
        a.observe(Duration::from_millis(3));
        b.observe(Duration::from_millis(3));
        b.observe(Duration::from_secs(60));
        let sum = HistogramSum::of([&a, &b]);
        let mut expected = [0u64; BUCKETS];
        expected[0] = 1;
        expected[5] = 2;
        expected[17] = 1;
        assert_eq!(sum.buckets, expected);
        assert_eq!(sum.count(), 4);
        assert_eq!(sum.sum_ns, 50_000 + 6_000_000 + 60_000_000_000);
    }

    #[test]
    fn counters_and_gauges_sum_across_workers() {
        #[derive(Default)]
        struct Set {
            hits: Counter,
            open: Gauge,
        }
        let sets: Vec<Arc<Set>> = (0..3).map(|_| Arc::default()).collect();
        sets[0].hits.add(5);
        sets[1].hits.inc();
        sets[2].hits.add(10);
        sets[0].open.inc();
        {
            let _tracked = sets[1].open.track();
            assert_eq!(sum_gauges(&sets, |s| &s.open), 2);
        }
        sets[2].open.dec();
        assert_eq!(sum_counters(&sets, |s| &s.hits), 16);
        assert_eq!(sum_gauges(&sets, |s| &s.open), 0);
    }

    #[test]
    fn status_classes_count_by_hundreds() {
        let classes = StatusClasses::default();
        for status in [0, 99, 101, 200, 204, 302, 404, 418, 502, 599, 600] {
            classes.record(status);
        }
        let counts: Vec<u64> = classes.0.iter().map(Counter::value).collect();
        assert_eq!(counts, [1, 2, 1, 2, 2]);
    }
}
