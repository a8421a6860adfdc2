//! The one-screen comparison at the end of a run: one row per path with the figures people
//! compare tunnels by (small-GET requests/s, 1 MiB GET MiB/s, bulk TCP Gbit/s, and latency and
//! proxy CPU per request in an open loop at a fixed rate), and each path's ratio to rathole's
//! TLS and plain TCP tunnels. A figure comes from the scenario of that name only when it ran;
//! anything else is an empty cell.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::report::{format_rate, PathReport, ScenarioReport};

/// The scenarios the summary reads, by name (files in `loadtest/`).
pub const SMALL_GET: &str = "small-get";
pub const GET_1MIB: &str = "get-1mib";
pub const TCP_BULK: &str = "tcp-bulk";
pub const OPEN_LOOP: &str = "open-loop-10k";
/// The paths every other one is divided by, when they ran.
pub const BASELINES: [&str; 2] = ["rathole-tls", "rathole"];

const EMPTY: &str = "—";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// One row per path, in the order the paths first appear in the scenarios.
    pub rows: Vec<SummaryRow>,
    /// Per baseline path: every other path's row with each figure divided by the baseline's.
    #[serde(default)]
    pub ratios: BTreeMap<String, Vec<SummaryRow>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    pub path: String,
    pub small_get_rps: Option<f64>,
    pub get_1mib_mib_s: Option<f64>,
    /// Bytes sent plus bytes echoed back, in Gbit/s.
    pub tcp_bulk_gbit_s: Option<f64>,
    /// The rate the open loop achieved (it aims at the scenario's `rate`).
    pub open_loop_rps: Option<f64>,
    pub open_loop_p50_ms: Option<f64>,
    pub open_loop_p99_ms: Option<f64>,
    pub open_loop_p999_ms: Option<f64>,
    /// CPU of all the path's proxying processes per open-loop request, in µs.
    pub open_loop_cpu_us: Option<f64>,
}

impl Summary {
    pub fn of(scenarios: &[ScenarioReport]) -> Summary {
        let mut names: Vec<&str> = Vec::new();
        for path in scenarios.iter().flat_map(|s| &s.paths) {
            if !names.contains(&path.path.as_str()) {
                names.push(&path.path);
            }
        }
        let find = |scenario: &str, path: &str| -> Option<&PathReport> {
            scenarios.iter().find(|s| s.name == scenario)?.path(path)
        };
        let rows: Vec<SummaryRow> = names
            .iter()
            .map(|name| {
                let open = find(OPEN_LOOP, name);
                let ms = |us: u64| us as f64 / 1e3;
                SummaryRow {
                    path: (*name).to_owned(),
                    small_get_rps: find(SMALL_GET, name).map(|p| p.requests_per_sec),
                    get_1mib_mib_s: find(GET_1MIB, name).map(|p| p.bytes_per_sec / 1048576.0),
                    tcp_bulk_gbit_s: find(TCP_BULK, name).map(|p| p.bytes_per_sec * 8.0 / 1e9),
                    open_loop_rps: open.map(|p| p.requests_per_sec),
                    open_loop_p50_ms: open.map(|p| ms(p.latency_us.p50)),
                    open_loop_p99_ms: open.map(|p| ms(p.latency_us.p99)),
                    open_loop_p999_ms: open.map(|p| ms(p.latency_us.p999)),
                    open_loop_cpu_us: open
                        .and_then(PathReport::proxy_cpu_per_unit)
                        .map(|s| s * 1e6),
                }
            })
            .collect();
        let ratios = BASELINES
            .iter()
            .filter_map(|base| {
                let base_row = rows.iter().find(|r| r.path == *base)?;
                let divided = rows
                    .iter()
                    .filter(|r| r.path != *base)
                    .map(|r| r.divided_by(base_row))
                    .collect();
                Some(((*base).to_owned(), divided))
            })
            .collect();
        Summary { rows, ratios }
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

impl SummaryRow {
    fn cells(&self) -> [Option<f64>; 8] {
        [
            self.small_get_rps,
            self.get_1mib_mib_s,
            self.tcp_bulk_gbit_s,
            self.open_loop_rps,
            self.open_loop_p50_ms,
            self.open_loop_p99_ms,
            self.open_loop_p999_ms,
            self.open_loop_cpu_us,
        ]
    }

    fn divided_by(&self, base: &SummaryRow) -> SummaryRow {
        let div = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        let [a, b, c, d, e, f, g, h] = self.cells();
        let [ba, bb, bc, bd, be, bf, bg, bh] = base.cells();
        SummaryRow {
            path: self.path.clone(),
            small_get_rps: div(a, ba),
            get_1mib_mib_s: div(b, bb),
            tcp_bulk_gbit_s: div(c, bc),
            open_loop_rps: div(d, bd),
            open_loop_p50_ms: div(e, be),
            open_loop_p99_ms: div(f, bf),
            open_loop_p999_ms: div(g, bg),
            open_loop_cpu_us: div(h, bh),
        }
    }
}

/// What each known path is, for the reader of the table.
fn describe(path: &str) -> &'static str {
    match path {
        "direct" => "no proxy",
        "tunnel" => "adit edge+connector",
        "haproxy" | "nginx" => "one proxy hop",
        "rathole" => "tunnel, plain TCP",
        "rathole-tls" => "tunnel, TLS",
        _ => "",
    }
}

const HEADER: [&str; 8] = [
    "GET req/s",
    "1MiB MiB/s",
    "TCP Gbit/s",
    "open r/s",
    "p50 ms",
    "p99 ms",
    "p99.9 ms",
    "CPU/req",
];

fn row_line(out: &mut String, path: &str, what: &str, cells: [String; 8]) {
    let _ = write!(out, "{path:<12} {what:<20}");
    for (cell, head) in cells.iter().zip(HEADER) {
        let _ = write!(out, " {cell:>w$}", w = head.chars().count().max(8));
    }
    out.push('\n');
}

/// The summary as text: the figures, then one block of ratios per baseline.
pub fn table(summary: &Summary) -> String {
    let mut out = String::new();
    if summary.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "summary: {SMALL_GET} req/s, {GET_1MIB} MiB/s, {TCP_BULK} Gbit/s (sent + echoed), \
         {OPEN_LOOP} achieved req/s, latency and proxy CPU per request"
    );
    row_line(&mut out, "path", "", HEADER.map(str::to_owned));
    for row in &summary.rows {
        let [a, b, c, d, e, f, g, h] = row.cells();
        let cell = |v: Option<f64>, show: fn(f64) -> String| v.map_or(EMPTY.to_owned(), show);
        let cells = [
            cell(a, format_rate),
            cell(b, |v| format!("{v:.0}")),
            cell(c, |v| format!("{v:.2}")),
            cell(d, format_rate),
            cell(e, |v| format!("{v:.2}")),
            cell(f, |v| format!("{v:.2}")),
            cell(g, |v| format!("{v:.2}")),
            cell(h, |v| format!("{v:.1}µs")),
        ];
        row_line(&mut out, &row.path, describe(&row.path), cells);
    }
    for (base, rows) in &summary.ratios {
        let _ = writeln!(out, "ratio to {base}:");
        for row in rows {
            let cells = row
                .cells()
                .map(|v| v.map_or(EMPTY.to_owned(), |v| format!("{v:.2}x")));
            row_line(&mut out, &row.path, describe(&row.path), cells);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::{Latency, ProcessReport};

    fn path(name: &str, rps: f64, bps: f64, p50: u64, cpu: &[f64]) -> PathReport {
        PathReport {
            path: name.into(),
            rounds: 1,
            requests: 1000,
            errors: 0,
            bytes: 0,
            elapsed_s: 1.0,
            requests_per_sec: rps,
            bytes_per_sec: bps,
            latency_us: Latency {
                p50,
                p90: p50 * 2,
                p99: p50 * 4,
                p999: p50 * 8,
                max: p50 * 10,
            },
            processes: cpu
                .iter()
                .enumerate()
                .map(|(i, c)| ProcessReport {
                    role: format!("p{i}"),
                    cpu_s: 1.0,
                    user_s: None,
                    cpu_per_unit: *c,
                    peak_rss_kib: 0,
                })
                .collect(),
            curve: Vec::new(),
        }
    }

    fn scenario(name: &str, paths: Vec<PathReport>) -> ScenarioReport {
        ScenarioReport {
            name: name.into(),
            kind: "http".into(),
            description: String::new(),
            unit: "request".into(),
            paths,
            ratios: BTreeMap::new(),
        }
    }

    fn run() -> Vec<ScenarioReport> {
        vec![
            scenario(
                SMALL_GET,
                vec![
                    path("direct", 40_000.0, 0.0, 100, &[]),
                    path("tunnel", 20_000.0, 0.0, 200, &[20e-6, 10e-6]),
                    path("rathole", 10_000.0, 0.0, 300, &[5e-6, 5e-6]),
                ],
            ),
            scenario(TCP_BULK, vec![path("tunnel", 0.0, 250e6, 1, &[1.0])]),
            scenario(
                OPEN_LOOP,
                vec![
                    path("tunnel", 10_000.0, 0.0, 500, &[30e-6, 20e-6]),
                    path("rathole", 9_990.0, 0.0, 250, &[10e-6, 15e-6]),
                ],
            ),
        ]
    }

    #[test]
    fn rows_take_each_figure_from_its_scenario() {
        let summary = Summary::of(&run());
        let names: Vec<&str> = summary.rows.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(names, ["direct", "tunnel", "rathole"]);
        let tunnel = &summary.rows[1];
        assert_eq!(tunnel.small_get_rps, Some(20_000.0));
        assert_eq!(tunnel.get_1mib_mib_s, None);
        assert_eq!(tunnel.tcp_bulk_gbit_s, Some(2.0));
        assert_eq!(tunnel.open_loop_rps, Some(10_000.0));
        assert_eq!(tunnel.open_loop_p50_ms, Some(0.5));
        assert_eq!(tunnel.open_loop_p99_ms, Some(2.0));
        assert_eq!(tunnel.open_loop_p999_ms, Some(4.0));
        assert_eq!(tunnel.open_loop_cpu_us, Some(50.0));
        assert_eq!(summary.rows[0].open_loop_cpu_us, None);
        assert_eq!(summary.rows[0].tcp_bulk_gbit_s, None);

        assert_eq!(summary.ratios.keys().collect::<Vec<_>>(), ["rathole"]);
        let ratios = &summary.ratios["rathole"];
        assert_eq!(ratios.len(), 2);
        assert_eq!(ratios[1].path, "tunnel");
        assert_eq!(ratios[1].small_get_rps, Some(2.0));
        assert_eq!(ratios[1].open_loop_p50_ms, Some(2.0));
        assert_eq!(ratios[1].open_loop_cpu_us, Some(2.0));
        assert_eq!(ratios[1].tcp_bulk_gbit_s, None);
        assert_eq!(ratios[0].path, "direct");
        assert_eq!(ratios[0].small_get_rps, Some(4.0));
        assert_eq!(ratios[0].open_loop_p99_ms, None);
    }

    #[test]
    fn table_shows_missing_cells_as_dashes() {
        let text = table(&Summary::of(&run()));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8);
        assert_eq!(
            lines[1],
            "path                              GET req/s 1MiB MiB/s TCP Gbit/s open r/s   p50 ms   \
             p99 ms p99.9 ms  CPU/req"
        );
        assert_eq!(
            lines[3],
            "tunnel       adit edge+connector      20.0k          —       2.00    10.0k     \
             0.50     2.00     4.00   50.0µs"
        );
        assert_eq!(lines[5], "ratio to rathole:");
        assert_eq!(
            lines[7],
            "tunnel       adit edge+connector      2.00x          —          —    1.00x    \
             2.00x    2.00x    2.00x    2.00x"
        );
        assert_eq!(table(&Summary::default()), "");
    }
}
