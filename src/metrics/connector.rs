//! The connector's metric set, one per worker, its rendering, and the readiness probe.

use std::sync::Arc;

use uuid::Uuid;

use super::path::{self, PathTable};
use super::server::Reply;
use super::{
    render_classes, render_counters, sum_counters, sum_gauges, Counter, Exposition, Gauge,
    Histogram, HistogramSum, Kind, StatusClasses,
};
use crate::quic::Connection;

/// What one connector worker records. Only that worker writes it (see the module
/// documentation).
#[derive(Debug, Default)]
pub struct ConnectorMetrics {
    /// Responses sent to the edge by status class; an origin failure counts as the status
    /// the edge shows for it.
    pub requests: StatusClasses,
    /// From a stream's request frame to the origin's response head (dialing included).
    pub origin_latency: Histogram,
    /// Streams from the edge being served.
    pub active_streams: Gauge,
    /// Request body bytes written to origins.
    pub bytes_to_origin: Counter,
    /// Response body bytes read from origins into streams.
    pub bytes_from_origin: Counter,
    /// Connections registered with the edge right now; one that was unregistered (on
    /// shutdown) no longer counts, though it stays open for the requests in flight. The
    /// connector's links keep it (see `connector::drain`).
    pub registered_connections: Gauge,
    pub registrations_registered: Counter,
    pub registrations_refused: Counter,
    /// Attempts that failed before the edge answered (dial, handshake, timeout).
    pub registrations_failed: Counter,
    /// Times a link waited to dial the edge again.
    pub reconnects: Counter,
    /// QUIC figures per connection, keyed by connection index.
    pub paths: PathTable<u8>,
}

impl ConnectorMetrics {
    /// Serves a registered connection: counts its registration and publishes its QUIC
    /// figures while `work` runs.
    pub async fn serving<F: std::future::Future>(
        &self,
        index: u8,
        conn: &Connection,
        work: F,
    ) -> F::Output {
        self.registrations_registered.inc();
        path::watch(&self.paths, index, conn, work).await
    }
}

/// Registered connections summed over workers.
pub fn ready_connections(sets: &[Arc<ConnectorMetrics>]) -> u64 {
    u64::try_from(sum_gauges(sets, |s| &s.registered_connections)).unwrap_or(0)
}

/// `/ready`: 200 when at least one connection is registered, else 503; the body says how
/// many and which connector.
pub fn ready(sets: &[Arc<ConnectorMetrics>], connector_id: Uuid) -> Reply {
    let ready = ready_connections(sets);
    let status = if ready > 0 { 200 } else { 503 };
    Reply {
        status,
        content_type: "application/json",
        body: format!(
            "{{\"status\":{status},\"readyConnections\":{ready},\
             \"connectorId\":\"{connector_id}\"}}"
        ),
    }
}

/// The text of a scrape: every worker's set, summed.
pub fn render(sets: &[Arc<ConnectorMetrics>]) -> String {
    let mut out = Exposition::new();
    render_classes(
        &mut out,
        "adit_connector_requests_total",
        "Responses sent to the edge by status class, origin failures as the edge shows them.",
        sets,
        |s| &s.requests,
    );
    let name = "adit_connector_origin_latency_seconds";
    out.header(
        name,
        "Time from a stream's request to the origin's response head, dialing included.",
        Kind::Histogram,
    );
    let latency = HistogramSum::of(sets.iter().map(|s| &s.origin_latency));
    out.histogram(name, &[], &latency);
    out.single(
        "adit_connector_active_streams",
        "Streams from the edge being served.",
        Kind::Gauge,
        sum_gauges(sets, |s| &s.active_streams),
    );
    render_counters(
        &mut out,
        (
            "adit_connector_bytes_total",
            "Body bytes relayed between the edge and origins, by direction.",
        ),
        "direction",
        sets,
        &[
            ("to_origin", |s| &s.bytes_to_origin),
            ("from_origin", |s| &s.bytes_from_origin),
        ],
    );
    out.single(
        "adit_connector_registered_connections",
        "Connections registered with the edge.",
        Kind::Gauge,
        sum_gauges(sets, |s| &s.registered_connections),
    );
    render_counters(
        &mut out,
        (
            "adit_connector_registrations_total",
            "Registration attempts by result.",
        ),
        "result",
        sets,
        &[
            ("registered", |s| &s.registrations_registered),
            ("refused", |s| &s.registrations_refused),
            ("failed", |s| &s.registrations_failed),
        ],
    );
    out.single(
        "adit_connector_reconnects_total",
        "Times a connection to the edge was dialed again after it failed or dropped.",
        Kind::Counter,
        sum_counters(sets, |s| &s.reconnects),
    );
    path::render(
        &mut out,
        "adit_connector",
        sets.iter().map(|s| &s.paths),
        |index| vec![("index", index.to_string())],
    );
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_answers_by_registered_connections() {
        let sets: Vec<Arc<ConnectorMetrics>> = (0..2).map(|_| Arc::default()).collect();
        let id = Uuid::from_u128(0x1234);
        assert_eq!(
            ready(&sets, id),
            Reply {
                status: 503,
                content_type: "application/json",
                body: "{\"status\":503,\"readyConnections\":0,\"connectorId\":\
                       \"00000000-0000-0000-0000-000000001234\"}"
                    .into(),
            }
        );
        sets[0].registered_connections.inc();
        sets[1].registered_connections.inc();
        let reply = ready(&sets, id);
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.body,
            "{\"status\":200,\"readyConnections\":2,\"connectorId\":\
             \"00000000-0000-0000-0000-000000001234\"}"
        );
    }

    #[test]
    fn renders_the_sum_of_workers() {
        let sets: Vec<Arc<ConnectorMetrics>> = (0..2).map(|_| Arc::default()).collect();
        sets[0].requests.record(200);
        sets[1].requests.record(502);
        sets[0].bytes_to_origin.add(1000);
        sets[1].bytes_from_origin.add(27);
        sets[0].reconnects.inc();
        sets[1].reconnects.inc();
        sets[1].registrations_failed.inc();
        let text = render(&sets);
        for line in [
            "adit_connector_requests_total{class=\"2xx\"} 1\n",
            "adit_connector_requests_total{class=\"5xx\"} 1\n",
            "adit_connector_origin_latency_seconds_count 0\n",
            "adit_connector_bytes_total{direction=\"to_origin\"} 1000\n",
            "adit_connector_bytes_total{direction=\"from_origin\"} 27\n",
            "adit_connector_registered_connections 0\n",
            "adit_connector_registrations_total{result=\"registered\"} 0\n",
            "adit_connector_registrations_total{result=\"failed\"} 1\n",
            "adit_connector_reconnects_total 2\n",
            "# TYPE adit_connector_quic_lost_packets_total counter\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
    }
}
