//! What a benchmark run found: the JSON model (`--json`, read back by `bench compare`), the
//! accumulation of rounds into it, and the terminal table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::procstat::CpuTicks;
use super::summary::{self, Summary};

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    pub adit_version: String,
    /// Cores the machine has; two runs on different machines compare poorly.
    pub cores: usize,
    /// Which load generator measured.
    pub load_generator: String,
    pub scenarios: Vec<ScenarioReport>,
    /// Peer paths that were asked for but could not run.
    #[serde(default)]
    pub skipped: Vec<SkippedPath>,
    /// One row per path across the scenarios (see [`super::summary`]).
    #[serde(default)]
    pub summary: Summary,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedPath {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioReport {
    pub name: String,
    pub kind: String,
    #[serde(default)]
    pub description: String,
    /// What CPU is charged per: "request", or "GiB" for bulk transfers.
    pub unit: String,
    /// `direct` first, then `tunnel`, then any peers.
    pub paths: Vec<PathReport>,
    /// Each other path against `direct`.
    #[serde(default)]
    pub ratios: BTreeMap<String, Ratio>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathReport {
    pub path: String,
    pub rounds: u32,
    pub requests: u64,
    pub errors: u64,
    /// Bytes read plus bytes written by the load generator.
    pub bytes: u64,
    pub elapsed_s: f64,
    pub requests_per_sec: f64,
    pub bytes_per_sec: f64,
    pub latency_us: Latency,
    /// The proxying processes of this path (edge, connector, access, or a peer's).
    #[serde(default)]
    pub processes: Vec<ProcessReport>,
    /// Latency percentile curve: `[nines, microseconds]`, where nines = -log10(1 - q).
    #[serde(default)]
    pub curve: Vec<[f64; 2]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessReport {
    pub role: String,
    pub cpu_s: f64,
    /// Of `cpu_s`, the seconds spent in the process's own code rather than in the kernel
    /// (absent in reports written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_s: Option<f64>,
    /// CPU seconds per request, or per GiB moved for bulk scenarios.
    pub cpu_per_unit: f64,
    pub peak_rss_kib: u64,
}

/// A path's figures divided by the direct path's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ratio {
    pub requests_per_sec: f64,
    pub bytes_per_sec: f64,
    pub p50: f64,
    pub p99: f64,
}

impl ScenarioReport {
    pub fn is_bulk(&self) -> bool {
        self.unit == "GiB"
    }

    pub fn path(&self, name: &str) -> Option<&PathReport> {
        self.paths.iter().find(|p| p.path == name)
    }

    /// Fills `ratios` from `paths`.
    pub fn compute_ratios(&mut self) {
        let Some(direct) = self.path("direct").cloned() else {
            return;
        };
        let div = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        self.ratios = self
            .paths
            .iter()
            .filter(|p| p.path != "direct")
            .map(|p| {
                let ratio = Ratio {
                    requests_per_sec: div(p.requests_per_sec, direct.requests_per_sec),
                    bytes_per_sec: div(p.bytes_per_sec, direct.bytes_per_sec),
                    p50: div(p.latency_us.p50 as f64, direct.latency_us.p50 as f64),
                    p99: div(p.latency_us.p99 as f64, direct.latency_us.p99 as f64),
                };
                (p.path.clone(), ratio)
            })
            .collect();
    }
}

impl PathReport {
    /// CPU per unit of all the path's proxying processes together; `None` without any.
    pub fn proxy_cpu_per_unit(&self) -> Option<f64> {
        let all = self.processes.iter().map(|p| p.cpu_per_unit);
        (!self.processes.is_empty()).then(|| all.sum())
    }

    /// The throughput a regression gate watches: bytes/s for bulk, requests/s otherwise.
    pub fn throughput(&self, bulk: bool) -> f64 {
        if bulk {
            self.bytes_per_sec
        } else {
            self.requests_per_sec
        }
    }
}

/// Sums one path's rounds of one scenario.
pub struct PathTally {
    pub path: String,
    rounds: u32,
    requests: u64,
    errors: u64,
    bytes: u64,
    elapsed_s: f64,
    latency: Histogram<u64>,
    /// CPU ticks per role over all rounds.
    ticks: Vec<(String, CpuTicks)>,
}

impl PathTally {
    pub fn new(path: &str) -> PathTally {
        PathTally {
            path: path.to_owned(),
            rounds: 0,
            requests: 0,
            errors: 0,
            bytes: 0,
            elapsed_s: 0.0,
            latency: Histogram::new(3).expect("3 significant digits is valid"),
            ticks: Vec::new(),
        }
    }

    /// Adds one round: its counts, its histogram, and the CPU ticks each role used.
    #[allow(clippy::too_many_arguments)]
    pub fn add_round(
        &mut self,
        requests: u64,
        errors: u64,
        bytes: u64,
        elapsed_s: f64,
        latency: &Histogram<u64>,
        ticks: &[(String, CpuTicks)],
    ) {
        self.rounds += 1;
        self.requests += requests;
        self.errors += errors;
        self.bytes += bytes;
        self.elapsed_s += elapsed_s;
        // An auto-resizing histogram takes any other's values.
        self.latency.auto(true);
        let _ = self.latency.add(latency);
        for (role, n) in ticks {
            match self.ticks.iter_mut().find(|(r, _)| r == role) {
                Some((_, total)) => *total = *total + *n,
                None => self.ticks.push((role.clone(), *n)),
            }
        }
    }

    /// The path's report; `peaks` is the peak RSS of each role in KiB.
    pub fn finish(&self, bulk: bool, ticks_per_second: u64, peaks: &[(String, u64)]) -> PathReport {
        let per_second = |n: f64| n / self.elapsed_s.max(1e-9);
        let units = if bulk {
            self.bytes as f64 / (1u64 << 30) as f64
        } else {
            self.requests as f64
        };
        let processes = self
            .ticks
            .iter()
            .map(|(role, ticks)| {
                let seconds = |n: u64| n as f64 / ticks_per_second.max(1) as f64;
                let cpu_s = seconds(ticks.total());
                ProcessReport {
                    role: role.clone(),
                    cpu_s,
                    user_s: Some(seconds(ticks.user)),
                    cpu_per_unit: if units > 0.0 { cpu_s / units } else { 0.0 },
                    peak_rss_kib: peaks.iter().find(|(r, _)| r == role).map_or(0, |p| p.1),
                }
            })
            .collect();
        let h = &self.latency;
        PathReport {
            path: self.path.clone(),
            rounds: self.rounds,
            requests: self.requests,
            errors: self.errors,
            bytes: self.bytes,
            elapsed_s: self.elapsed_s,
            requests_per_sec: per_second(self.requests as f64),
            bytes_per_sec: per_second(self.bytes as f64),
            latency_us: Latency {
                p50: h.value_at_quantile(0.5),
                p90: h.value_at_quantile(0.9),
                p99: h.value_at_quantile(0.99),
                p999: h.value_at_quantile(0.999),
                max: h.max(),
            },
            processes,
            curve: curve(h),
        }
    }
}

/// Percentile curve in steps of a tenth of a nine, as far as the sample count resolves.
pub fn curve(h: &Histogram<u64>) -> Vec<[f64; 2]> {
    if h.is_empty() {
        return Vec::new();
    }
    let tenths = ((h.len() as f64).log10() * 10.0).floor().clamp(0.0, 60.0) as u32;
    let mut points: Vec<[f64; 2]> = (0..=tenths)
        .map(|t| {
            let nines = f64::from(t) / 10.0;
            let q = 1.0 - 10f64.powf(-nines);
            [nines, h.value_at_quantile(q) as f64]
        })
        .collect();
    if let Some(last) = points.last_mut() {
        last[1] = h.max() as f64;
    }
    points
}

/// Microseconds as a short human duration.
pub fn format_us(us: u64) -> String {
    match us {
        0..=9_999 => format!("{us}µs"),
        10_000..=999_999 => format!("{:.2}ms", us as f64 / 1e3),
        _ => format!("{:.2}s", us as f64 / 1e6),
    }
}

pub(crate) fn format_rate(per_sec: f64) -> String {
    match per_sec {
        r if r >= 1e6 => format!("{:.2}M", r / 1e6),
        r if r >= 1e4 => format!("{:.1}k", r / 1e3),
        r => format!("{r:.0}"),
    }
}

fn format_bytes_rate(per_sec: f64) -> String {
    let mib = per_sec / (1u64 << 20) as f64;
    if mib >= 100.0 {
        format!("{mib:.0}MiB/s")
    } else {
        format!("{mib:.1}MiB/s")
    }
}

fn format_cpu_per_unit(per_unit: f64, bulk: bool) -> String {
    if bulk {
        format!("{per_unit:.2}s/GiB")
    } else if per_unit < 1e-3 {
        format!("{:.1}µs/req", per_unit * 1e6)
    } else {
        format!("{:.2}ms/req", per_unit * 1e3)
    }
}

fn format_cpu(process: &ProcessReport, bulk: bool) -> String {
    format!(
        "{} {}{} {:.1}MiB",
        process.role,
        format_cpu_per_unit(process.cpu_per_unit, bulk),
        format_user_share(process.user_s, process.cpu_s),
        process.peak_rss_kib as f64 / 1024.0
    )
}

/// ` (N% user)`: how much of the CPU went to the process's own code rather than the kernel;
/// empty when the report has no split or no CPU was used.
fn format_user_share(user_s: Option<f64>, cpu_s: f64) -> String {
    match user_s {
        Some(user) if cpu_s > 0.0 => format!(" ({:.0}% user)", 100.0 * user / cpu_s),
        _ => String::new(),
    }
}

/// The CPU line of a path: each process, and their sum when there are several.
fn format_processes(path: &PathReport, bulk: bool) -> String {
    let each: Vec<String> = path.processes.iter().map(|p| format_cpu(p, bulk)).collect();
    let mut line = each.join(", ");
    if let (Some(total), true) = (path.proxy_cpu_per_unit(), path.processes.len() > 1) {
        let rss: u64 = path.processes.iter().map(|p| p.peak_rss_kib).sum();
        let cpu_s: f64 = path.processes.iter().map(|p| p.cpu_s).sum();
        let user_s: Option<f64> = path.processes.iter().map(|p| p.user_s).sum();
        let _ = write!(
            line,
            "; total {}{} {:.1}MiB",
            format_cpu_per_unit(total, bulk),
            format_user_share(user_s, cpu_s),
            rss as f64 / 1024.0
        );
    }
    line
}

/// The terminal table: one row per path, the ratios, then CPU and memory per process.
pub fn table(report: &BenchReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:<8} {:>9} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "scenario", "path", "req/s", "bytes/s", "p50", "p90", "p99", "p99.9", "max", "errors"
    );
    for scenario in &report.scenarios {
        for (i, path) in scenario.paths.iter().enumerate() {
            let name = if i == 0 { scenario.name.as_str() } else { "" };
            let l = &path.latency_us;
            let _ = writeln!(
                out,
                "{name:<16} {:<8} {:>9} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
                path.path,
                format_rate(path.requests_per_sec),
                format_bytes_rate(path.bytes_per_sec),
                format_us(l.p50),
                format_us(l.p90),
                format_us(l.p99),
                format_us(l.p999),
                format_us(l.max),
                path.errors
            );
            if !path.processes.is_empty() {
                let procs = format_processes(path, scenario.is_bulk());
                let _ = writeln!(out, "{:<16}   cpu (user share), peak rss: {procs}", "");
            }
        }
        let ratios = scenario
            .paths
            .iter()
            .filter_map(|p| Some((&p.path, scenario.ratios.get(&p.path)?)));
        for (path, ratio) in ratios {
            let throughput = if scenario.is_bulk() {
                ratio.bytes_per_sec
            } else {
                ratio.requests_per_sec
            };
            let _ = writeln!(
                out,
                "{:<16}   {path}/direct: throughput {throughput:.2}x, p50 {:.2}x, p99 {:.2}x",
                "", ratio.p50, ratio.p99
            );
        }
    }
    for skipped in &report.skipped {
        let _ = writeln!(out, "skipped {}: {}", skipped.path, skipped.reason);
    }
    if !report.summary.is_empty() {
        out.push('\n');
        out.push_str(&summary::table(&report.summary));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_of_two_rounds() {
        let mut a = Histogram::<u64>::new(3).unwrap();
        for v in 1..=100 {
            a.record(v * 10).unwrap();
        }
        let mut tally = PathTally::new("tunnel");
        let ticks = [
            (
                "edge".to_owned(),
                CpuTicks {
                    user: 10,
                    system: 20,
                },
            ),
            (
                "connector".to_owned(),
                CpuTicks {
                    user: 10,
                    system: 0,
                },
            ),
        ];
        tally.add_round(100, 1, 4096, 0.5, &a, &ticks);
        tally.add_round(100, 0, 4096, 0.5, &a, &ticks);
        let peaks = [("edge".to_owned(), 2048u64)];
        let report = tally.finish(false, 100, &peaks);
        assert_eq!(report.requests, 200);
        assert_eq!(report.errors, 1);
        assert_eq!(report.requests_per_sec, 200.0);
        assert_eq!(report.bytes_per_sec, 8192.0);
        assert_eq!(report.latency_us.p50, 500);
        assert_eq!(report.latency_us.p99, 990);
        assert_eq!(report.latency_us.max, 1000);
        assert_eq!(report.processes.len(), 2);
        assert_eq!(report.processes[0].role, "edge");
        assert_eq!(report.processes[0].cpu_s, 0.6);
        assert_eq!(report.processes[0].user_s, Some(0.2));
        assert_eq!(report.processes[0].cpu_per_unit, 0.003);
        assert_eq!(report.processes[0].peak_rss_kib, 2048);
        assert_eq!(report.processes[1].peak_rss_kib, 0);
        // 200 samples resolve 2.3 nines: 24 points, ending at the maximum.
        assert_eq!(report.curve.len(), 24);
        assert_eq!(report.curve[0], [0.0, 10.0]);
        assert_eq!(report.curve[10], [1.0, 900.0]);
        assert_eq!(report.curve[23], [2.3, 1000.0]);
    }

    #[test]
    fn durations_print_short() {
        assert_eq!(format_us(312), "312µs");
        assert_eq!(format_us(15_230), "15.23ms");
        assert_eq!(format_us(999_999), "1000.00ms");
        assert_eq!(format_us(1_153_020), "1.15s");
        assert_eq!(format_us(12_000_000), "12.00s");
        assert_eq!(format_rate(25_312.0), "25.3k");
        assert_eq!(format_rate(812.4), "812");
        assert_eq!(format_bytes_rate(3.0 * 1048576.0), "3.0MiB/s");
        let mut edge = ProcessReport {
            role: "edge".into(),
            cpu_s: 1.0,
            user_s: None,
            cpu_per_unit: 0.085,
            peak_rss_kib: 48230,
        };
        assert_eq!(format_cpu(&edge, false), "edge 85.00ms/req 47.1MiB");
        edge.cpu_per_unit = 0.000_102_3;
        assert_eq!(format_cpu(&edge, false), "edge 102.3µs/req 47.1MiB");
        edge.cpu_per_unit = 11.97;
        edge.user_s = Some(0.426);
        assert_eq!(
            format_cpu(&edge, true),
            "edge 11.97s/GiB (43% user) 47.1MiB"
        );
        edge.cpu_s = 0.0;
        assert_eq!(format_cpu(&edge, true), "edge 11.97s/GiB 47.1MiB");
    }

    #[test]
    fn several_processes_show_their_sum() {
        let mut tally = PathTally::new("rathole-tls");
        let h = Histogram::<u64>::new(3).unwrap();
        let ticks = [
            ("rathole-server".to_owned(), CpuTicks { user: 1, system: 2 }),
            ("rathole-client".to_owned(), CpuTicks { user: 0, system: 1 }),
        ];
        tally.add_round(10_000, 0, 0, 1.0, &h, &ticks);
        let peaks = [
            ("rathole-server".to_owned(), 4096u64),
            ("rathole-client".to_owned(), 1024),
        ];
        let path = tally.finish(false, 100, &peaks);
        assert_eq!(path.proxy_cpu_per_unit(), Some(4e-6));
        assert_eq!(
            format_processes(&path, false),
            "rathole-server 3.0µs/req (33% user) 4.0MiB, rathole-client 1.0µs/req (0% user) \
             1.0MiB; total 4.0µs/req (25% user) 5.0MiB"
        );
        let alone = PathTally::new("direct").finish(false, 100, &[]);
        assert_eq!(alone.proxy_cpu_per_unit(), None);
        assert_eq!(format_processes(&alone, false), "");
    }
}
