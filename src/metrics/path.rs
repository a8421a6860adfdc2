//! QUIC path figures per connection: RTT, congestion window, packets sent, received, lost.
//!
//! quinn-proto's state lives on the worker that owns the connection, so the scraper cannot
//! read it. Instead, while a connection is served, [`watch`] copies its figures into the
//! worker's [`PathTable`] when it starts and then once a second; the table's lock is taken
//! by that copy and by the scraper only, never by a request.

use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::{Exposition, Kind};
use crate::quic::{Connection, ConnectionStats};

/// How often a served connection publishes its figures.
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// The latest figures of each live connection of one worker, by a key that names the
/// connection in labels.
#[derive(Debug)]
pub struct PathTable<K> {
    rows: Mutex<Vec<(K, ConnectionStats)>>,
}

impl<K> Default for PathTable<K> {
    fn default() -> Self {
        PathTable {
            rows: Mutex::new(Vec::new()),
        }
    }
}

impl<K: Copy + PartialEq> PathTable<K> {
    pub fn update(&self, key: K, stats: ConnectionStats) {
        let mut rows = self.rows();
        match rows.iter_mut().find(|(k, _)| *k == key) {
            Some(row) => row.1 = stats,
            None => rows.push((key, stats)),
        }
    }

    pub fn remove(&self, key: K) {
        self.rows().retain(|(k, _)| *k != key);
    }

    /// Appends every row to `out`.
    pub fn copy_into(&self, out: &mut Vec<(K, ConnectionStats)>) {
        out.extend_from_slice(&self.rows());
    }

    /// A panic elsewhere while the lock was held leaves plain numbers behind: still usable.
    fn rows(&self) -> MutexGuard<'_, Vec<(K, ConnectionStats)>> {
        self.rows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Removes a connection's row when its [`watch`] ends, even when the task is dropped.
struct Row<'a, K: Copy + PartialEq> {
    table: &'a PathTable<K>,
    key: K,
}

impl<K: Copy + PartialEq> Drop for Row<'_, K> {
    fn drop(&mut self) {
        self.table.remove(self.key);
    }
}

/// Runs `work` (the serving of `conn`) to its end, publishing `conn`'s figures under `key`
/// meanwhile; the row goes when `work` ends.
pub async fn watch<K: Copy + PartialEq, F: Future>(
    table: &PathTable<K>,
    key: K,
    conn: &Connection,
    work: F,
) -> F::Output {
    let _row = Row { table, key };
    let mut work = std::pin::pin!(work);
    loop {
        table.update(key, conn.stats());
        if let Ok(output) = monoio::time::timeout(PUBLISH_INTERVAL, work.as_mut()).await {
            return output;
        }
    }
}

/// Writes the path families of every worker's table; `labels` names a row's connection.
pub fn render<K: Copy + PartialEq>(
    out: &mut Exposition,
    prefix: &str,
    tables: impl IntoIterator<Item = impl std::ops::Deref<Target = PathTable<K>>>,
    labels: impl Fn(&K) -> Vec<(&'static str, String)>,
) {
    let mut rows = Vec::new();
    for table in tables {
        table.copy_into(&mut rows);
    }
    let labelled: Vec<(Vec<(&'static str, String)>, ConnectionStats)> = rows
        .iter()
        .map(|(key, stats)| (labels(key), *stats))
        .collect();

    type Figure = fn(&ConnectionStats) -> String;
    let families: [(&str, &str, Kind, Figure); 5] = [
        (
            "quic_rtt_seconds",
            "Smoothed round-trip time of a tunnel connection's path.",
            Kind::Gauge,
            |s| super::expose::seconds(duration_ns(s.rtt)).to_string(),
        ),
        (
            "quic_congestion_window_bytes",
            "Congestion window of a tunnel connection's path.",
            Kind::Gauge,
            |s| s.cwnd.to_string(),
        ),
        (
            "quic_lost_packets_total",
            "Packets a tunnel connection declared lost.",
            Kind::Counter,
            |s| s.lost_packets.to_string(),
        ),
        (
            "quic_sent_packets_total",
            "Packets a tunnel connection sent.",
            Kind::Counter,
            |s| s.sent_packets.to_string(),
        ),
        (
            "quic_received_packets_total",
            "UDP datagrams a tunnel connection received.",
            Kind::Counter,
            |s| s.received_packets.to_string(),
        ),
    ];
    for (suffix, help, kind, figure) in families {
        let name = format!("{prefix}_{suffix}");
        out.header(&name, help, kind);
        for (labels, stats) in &labelled {
            let labels: Vec<(&str, &str)> = labels.iter().map(|(n, v)| (*n, v.as_str())).collect();
            out.sample(&name, &labels, figure(stats));
        }
    }
}

fn duration_ns(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_replaced_by_key_and_removed() {
        let table = PathTable::<u8>::default();
        let stats = |cwnd| ConnectionStats {
            cwnd,
            ..ConnectionStats::default()
        };
        table.update(0, stats(10));
        table.update(1, stats(20));
        table.update(0, stats(30));
        let mut rows = Vec::new();
        table.copy_into(&mut rows);
        let cwnds: Vec<(u8, u64)> = rows.iter().map(|(k, s)| (*k, s.cwnd)).collect();
        assert_eq!(cwnds, [(0, 30), (1, 20)]);
        table.remove(0);
        rows.clear();
        table.copy_into(&mut rows);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].0, 1);
    }

    #[test]
    fn renders_one_sample_per_connection_and_figure() {
        let table = PathTable::<u8>::default();
        table.update(
            3,
            ConnectionStats {
                rtt: Duration::from_micros(1500),
                cwnd: 12000,
                lost_packets: 2,
                sent_packets: 40,
                received_packets: 35,
                mtu: 1452,
            },
        );
        let mut out = Exposition::new();
        render(&mut out, "adit_x", [&table], |index| {
            vec![("index", index.to_string())]
        });
        assert_eq!(
            out.finish(),
            "# HELP adit_x_quic_rtt_seconds Smoothed round-trip time of a tunnel connection's \
             path.\n# TYPE adit_x_quic_rtt_seconds gauge\nadit_x_quic_rtt_seconds{index=\"3\"} \
             0.0015\n# HELP adit_x_quic_congestion_window_bytes Congestion window of a tunnel \
             connection's path.\n# TYPE adit_x_quic_congestion_window_bytes gauge\n\
             adit_x_quic_congestion_window_bytes{index=\"3\"} 12000\n\
             # HELP adit_x_quic_lost_packets_total Packets a tunnel connection declared lost.\n\
             # TYPE adit_x_quic_lost_packets_total counter\n\
             adit_x_quic_lost_packets_total{index=\"3\"} 2\n\
             # HELP adit_x_quic_sent_packets_total Packets a tunnel connection sent.\n\
             # TYPE adit_x_quic_sent_packets_total counter\n\
             adit_x_quic_sent_packets_total{index=\"3\"} 40\n\
             # HELP adit_x_quic_received_packets_total UDP datagrams a tunnel connection \
             received.\n# TYPE adit_x_quic_received_packets_total counter\n\
             adit_x_quic_received_packets_total{index=\"3\"} 35\n"
        );
    }
}
