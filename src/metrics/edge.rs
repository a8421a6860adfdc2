//! The edge's metric set, one per data-plane worker, and its rendering.

use std::sync::Arc;
use std::time::Instant;

use uuid::Uuid;

use super::path::{self, PathTable};
use super::{
    render_classes, render_counters, sum_gauges, Counter, Exposition, Gauge, Histogram,
    HistogramSum, Kind, StatusClasses,
};
use crate::quic::Connection;

/// What one edge worker records. Only that worker writes it (see the module documentation).
#[derive(Debug, Default)]
pub struct EdgeMetrics {
    /// Responses to clients by status class, the edge's own error pages included.
    pub requests: StatusClasses,
    /// From a complete request head to the end of its response.
    pub request_latency: Histogram,
    /// From a stream opened on a tunnel connection to the response head from the connector.
    pub origin_latency: Histogram,
    /// Tunnel streams open for requests.
    pub active_streams: Gauge,
    /// Request body bytes taken from clients into tunnels.
    pub bytes_from_client: Counter,
    /// Response body bytes written to clients from tunnels.
    pub bytes_to_client: Counter,
    /// Registered tunnel connections this worker owns.
    pub tunnel_connections: Gauge,
    pub registrations_registered: Counter,
    pub registrations_refused: Counter,
    /// QUIC figures per tunnel connection, keyed by (tunnel id, connection id).
    pub paths: PathTable<(Uuid, Uuid)>,
}

impl EdgeMetrics {
    /// One response written to a client, for a request whose head was complete at `started`.
    pub fn response(&self, status: u16, started: Instant) {
        self.requests.record(status);
        self.request_latency.observe(started.elapsed());
    }

    /// Serves a registered tunnel connection: counts it while `work` runs and publishes its
    /// QUIC figures meanwhile.
    pub async fn serving<F: std::future::Future>(
        &self,
        tunnel: Uuid,
        connection: Uuid,
        conn: &Connection,
        work: F,
    ) -> F::Output {
        let _counted = self.tunnel_connections.track();
        path::watch(&self.paths, (tunnel, connection), conn, work).await
    }
}

/// The text of a scrape: every worker's set, summed.
pub fn render(sets: &[Arc<EdgeMetrics>]) -> String {
    let mut out = Exposition::new();
    render_classes(
        &mut out,
        "adit_edge_requests_total",
        "Responses to clients by status class, the edge's own error pages included.",
        sets,
        |s| &s.requests,
    );
    type Field = fn(&EdgeMetrics) -> &Histogram;
    let histograms: [(&str, &str, Field); 2] = [
        (
            "adit_edge_request_latency_seconds",
            "Time from a complete request head to the end of its response.",
            |s| &s.request_latency,
        ),
        (
            "adit_edge_origin_latency_seconds",
            "Time from opening a tunnel stream to the response head from the connector.",
            |s| &s.origin_latency,
        ),
    ];
    for (name, help, field) in histograms {
        out.header(name, help, Kind::Histogram);
        out.histogram(name, &[], &HistogramSum::of(sets.iter().map(|s| field(s))));
    }
    out.single(
        "adit_edge_active_streams",
        "Tunnel streams open for client requests.",
        Kind::Gauge,
        sum_gauges(sets, |s| &s.active_streams),
    );
    render_counters(
        &mut out,
        (
            "adit_edge_bytes_total",
            "Body bytes relayed between clients and tunnels, by direction.",
        ),
        "direction",
        sets,
        &[
            ("from_client", |s| &s.bytes_from_client),
            ("to_client", |s| &s.bytes_to_client),
        ],
    );
    out.single(
        "adit_edge_tunnel_connections",
        "Registered tunnel connections.",
        Kind::Gauge,
        sum_gauges(sets, |s| &s.tunnel_connections),
    );
    render_counters(
        &mut out,
        (
            "adit_edge_registrations_total",
            "Tunnel connection registrations by result.",
        ),
        "result",
        sets,
        &[
            ("registered", |s| &s.registrations_registered),
            ("refused", |s| &s.registrations_refused),
        ],
    );
    path::render(
        &mut out,
        "adit_edge",
        sets.iter().map(|s| &s.paths),
        |(tunnel, connection)| {
            vec![
                ("tunnel", tunnel.to_string()),
                ("connection", connection.to_string()),
            ]
        },
    );
    out.finish()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn renders_the_sum_of_workers() {
        let sets: Vec<Arc<EdgeMetrics>> = (0..2).map(|_| Arc::default()).collect();
        sets[0].requests.record(200);
        sets[1].requests.record(204);
        sets[1].requests.record(404);
        sets[0].bytes_from_client.add(10);
        sets[1].bytes_to_client.add(32);
        sets[0].tunnel_connections.inc();
        sets[1].tunnel_connections.inc();
        sets[1].registrations_registered.add(2);
        sets[0].registrations_refused.inc();
        sets[0].origin_latency.observe(Duration::from_millis(1));
        sets[1].origin_latency.observe(Duration::from_millis(1));
        let text = render(&sets);
        for line in [
            "adit_edge_requests_total{class=\"1xx\"} 0\n",
            "adit_edge_requests_total{class=\"2xx\"} 2\n",
            "adit_edge_requests_total{class=\"4xx\"} 1\n",
            "adit_edge_request_latency_seconds_count 0\n",
            "adit_edge_origin_latency_seconds_bucket{le=\"0.0005\"} 0\n",
            "adit_edge_origin_latency_seconds_bucket{le=\"0.001\"} 2\n",
            "adit_edge_origin_latency_seconds_sum 0.002\n",
            "adit_edge_origin_latency_seconds_count 2\n",
            "adit_edge_active_streams 0\n",
            "adit_edge_bytes_total{direction=\"from_client\"} 10\n",
            "adit_edge_bytes_total{direction=\"to_client\"} 32\n",
            "adit_edge_tunnel_connections 2\n",
            "adit_edge_registrations_total{result=\"registered\"} 2\n",
            "adit_edge_registrations_total{result=\"refused\"} 1\n",
            "# TYPE adit_edge_quic_rtt_seconds gauge\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        assert_eq!(text.matches("# TYPE ").count(), 12);
    }
}
