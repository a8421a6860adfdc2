//! Recording metrics allocates nothing: what the edge and the connector do per request (a
//! status class, latencies, the active-stream gauge, body bytes) and what a connection does
//! each second (its QUIC figures, in place) leave the allocation count where it was.

use std::time::{Duration, Instant};

use adit::metrics::connector::ConnectorMetrics;
use adit::metrics::edge::EdgeMetrics;
use adit::quic::ConnectionStats;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{thread_allocations, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn recording_does_not_allocate() {
    let edge = EdgeMetrics::default();
    let connector = ConnectorMetrics::default();
    let tunnel = uuid::Uuid::from_u128(1);
    let stats = ConnectionStats::default();
    // The first publication of a connection adds its row; later ones update it in place.
    edge.paths.update((tunnel, tunnel), stats);
    connector.paths.update(0, stats);

    // Everything below runs on this thread: count its allocations only (see
    // `thread_allocations`).
    let before = thread_allocations();
    for i in 0..10_000u64 {
        let started = Instant::now();
        {
            let _stream = edge.active_streams.track();
            edge.origin_latency.observe(Duration::from_micros(i * 7));
            edge.bytes_from_client.add(i);
            edge.bytes_to_client.add(2 * i);
        }
        edge.response(200 + (i % 400) as u16, started);

        let _stream = connector.active_streams.track();
        connector.requests.record(200);
        connector
            .origin_latency
            .observe(Duration::from_nanos(i * 1_000_003));
        connector.bytes_to_origin.add(i);
        connector.bytes_from_origin.add(i);
        if i % 1000 == 0 {
            edge.paths.update((tunnel, tunnel), stats);
            connector.paths.update(0, stats);
        }
    }
    let after = thread_allocations();
    assert_eq!(after - before, 0);
    assert_eq!(edge.bytes_to_client.value(), 9_999 * 10_000);
    assert_eq!(edge.active_streams.value(), 0);
}
