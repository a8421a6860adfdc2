//! What a load run measured, and the three ways it leaves: a text summary, JSON, and the
//! HdrHistogram percentile-distribution text that plotting tools read.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::Duration;

use hdrhistogram::Histogram;

/// Lowest and highest latency the histograms hold, in microseconds. An hour is far past any
/// sane timeout; a larger value is recorded as the highest, so nothing is lost from the count.
const LOWEST_US: u64 = 1;
const HIGHEST_US: u64 = 3_600_000_000;

/// Significant decimal digits of every latency histogram.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// The percentiles the summary and the JSON report name.
const PERCENTILES: [(&str, f64); 5] = [
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99.9", 99.9),
    ("p99.99", 99.99),
];

/// A latency histogram in microseconds with fixed bounds, so recording never allocates.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// Failures by kind. A failed request is retried on a new connection, so these count
/// attempts, not lost requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Errors {
    /// Connections that could not be opened (refused, unreachable, or not within the timeout).
    pub connect: u64,
    /// Requests with no complete response within the timeout.
    pub timeout: u64,
    /// Reads that failed: reset, closed before the response ended, or a malformed response.
    pub read: u64,
    /// Writes that failed.
    pub write: u64,
    /// Complete responses with a status outside 2xx, by status.
    pub status: BTreeMap<u16, u64>,
}

impl Errors {
    /// Adds another worker's counts.
    pub fn merge(&mut self, other: &Errors) {
        self.connect += other.connect;
        self.timeout += other.timeout;
        self.read += other.read;
        self.write += other.write;
        for (&status, &count) in &other.status {
            *self.status.entry(status).or_default() += count;
        }
    }

    /// Responses that were not 2xx.
    pub fn non_2xx(&self) -> u64 {
        self.status.values().sum()
    }

    /// Failed connects, timeouts, reads and writes (non-2xx responses not included).
    pub fn transport(&self) -> u64 {
        self.connect + self.timeout + self.read + self.write
    }
}

/// The result of one load run, all workers merged.
#[derive(Debug, Clone)]
pub struct Report {
    /// Completed requests (HTTP responses of any status, TCP round trips, or bulk blocks).
    pub requests: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Wall time from the start of the run until the last worker stopped.
    pub elapsed: Duration,
    pub errors: Errors,
    /// Latency of each completed request in microseconds, 3 significant digits.
    pub latency: Histogram<u64>,
    /// Set when a run with a request count and no duration stopped early because no request
    /// completed for this long.
    pub stalled: Option<Duration>,
}

impl Report {
    /// An empty report, to merge workers' reports into.
    pub fn empty() -> Report {
        Report {
            requests: 0,
            bytes_read: 0,
            bytes_written: 0,
            elapsed: Duration::ZERO,
            errors: Errors::default(),
            latency: latency_histogram(),
            stalled: None,
        }
    }

    /// Adds another worker's counts and latencies (the elapsed time is set by the caller).
    pub fn merge(&mut self, other: &Report) {
        self.requests += other.requests;
        self.bytes_read += other.bytes_read;
        self.bytes_written += other.bytes_written;
        self.errors.merge(&other.errors);
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
    }

    pub fn requests_per_sec(&self) -> f64 {
        per_sec(self.requests as f64, self.elapsed)
    }

    /// Bytes read and written together, per second.
    pub fn bytes_per_sec(&self) -> f64 {
        per_sec((self.bytes_read + self.bytes_written) as f64, self.elapsed)
    }

    /// The latency at percentile `q` (0 to 100).
    pub fn percentile(&self, q: f64) -> Duration {
        Duration::from_micros(self.latency.value_at_percentile(q))
    }

    /// The largest latency recorded.
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.latency.max())
    }

    /// Everything measured, with latencies in microseconds.
    pub fn to_json(&self) -> serde_json::Value {
        let mut latency = serde_json::Map::new();
        for (name, q) in PERCENTILES {
            latency.insert(
                format!("{name}_us"),
                self.latency.value_at_percentile(q).into(),
            );
        }
        latency.insert("max_us".into(), self.latency.max().into());
        latency.insert("min_us".into(), self.latency.min().into());
        latency.insert("mean_us".into(), self.latency.mean().into());
        latency.insert("stdev_us".into(), self.latency.stdev().into());
        latency.insert("count".into(), self.latency.len().into());
        let status: serde_json::Map<String, serde_json::Value> = self
            .errors
            .status
            .iter()
            .map(|(status, count)| (status.to_string(), (*count).into()))
            .collect();
        serde_json::json!({
            "requests": self.requests,
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
            "elapsed_secs": self.elapsed.as_secs_f64(),
            "requests_per_sec": self.requests_per_sec(),
            "bytes_per_sec": self.bytes_per_sec(),
            "errors": {
                "connect": self.errors.connect,
                "timeout": self.errors.timeout,
                "read": self.errors.read,
                "write": self.errors.write,
                "status": status,
            },
            "latency": latency,
            "stalled_secs": self.stalled.map(|d| d.as_secs_f64()),
        })
    }

    /// Writes the percentile distribution in HdrHistogram's text format, values in
    /// milliseconds: a `Value Percentile TotalCount 1/(1-Percentile)` table, then the
    /// `#[Mean …]`, `#[Max …]` and `#[Buckets …]` footer lines.
    pub fn write_hgrm(&self, out: &mut impl Write) -> io::Result<()> {
        write_hgrm(&self.latency, out)
    }

    /// Writes the human summary: rates, errors by kind, latency percentiles.
    pub fn print(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(
            out,
            "  requests    {} in {}, {:.1}/s",
            self.requests,
            span(self.elapsed),
            self.requests_per_sec()
        )?;
        writeln!(
            out,
            "  transfer    {} read, {} written, {}/s",
            bytes(self.bytes_read as f64),
            bytes(self.bytes_written as f64),
            bytes(self.bytes_per_sec())
        )?;
        let e = &self.errors;
        writeln!(
            out,
            "  errors      connect {}, timeout {}, read {}, write {}",
            e.connect, e.timeout, e.read, e.write
        )?;
        if !e.status.is_empty() {
            let list: Vec<String> = e.status.iter().map(|(s, n)| format!("{s}: {n}")).collect();
            writeln!(out, "  non-2xx     {}", list.join(", "))?;
        }
        if let Some(limit) = self.stalled {
            writeln!(
                out,
                "  stopped     no request completed in {}",
                humantime::format_duration(limit)
            )?;
        }
        if self.requests == 0 {
            // No sample: a percentile of nothing would print as 0.000ms.
            return writeln!(out, "  latency     none (no request completed)");
        }
        write!(out, "  latency    ")?;
        for (name, q) in PERCENTILES {
            write!(out, " {name} {}", millis(self.percentile(q)))?;
        }
        writeln!(out, " max {}", millis(self.max()))
    }
}

fn per_sec(amount: f64, elapsed: Duration) -> f64 {
    match elapsed.as_secs_f64() {
        secs if secs > 0.0 => amount / secs,
        _ => 0.0,
    }
}

/// A duration as milliseconds with three decimals (microsecond resolution).
pub fn millis(d: Duration) -> String {
    format!("{:.3}ms", d.as_secs_f64() * 1e3)
}

/// A run's length: seconds, or milliseconds when it was shorter than one (a `-n` run of a
/// few requests), so that the rate beside it can be checked.
pub fn span(d: Duration) -> String {
    match d.as_secs_f64() {
        secs if secs < 1.0 => millis(d),
        secs => format!("{secs:.2}s"),
    }
}

/// A byte count with a binary unit.
pub fn bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{value:.0} {}", UNITS[0]),
        _ => format!("{value:.2} {}", UNITS[unit]),
    }
}

/// Microsecond values are written as milliseconds, as wrk2 and the HdrHistogram plotter expect.
const HGRM_SCALE: f64 = 1000.0;

/// Percentile steps per halving of the distance to 100%, as HdrHistogram's own tools use.
const HGRM_TICKS: u32 = 5;

fn write_hgrm(h: &Histogram<u64>, out: &mut impl Write) -> io::Result<()> {
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    let mut total = 0u64;
    for step in h.iter_quantiles(HGRM_TICKS) {
        total += step.count_since_last_iteration();
        let value = step.value_iterated_to() as f64 / HGRM_SCALE;
        let q = step.quantile_iterated_to();
        if q < 1.0 {
            let inverse = 1.0 / (1.0 - q);
            writeln!(out, "{value:12.3} {q:2.12} {total:10} {inverse:14.2}")?;
        } else {
            writeln!(out, "{value:12.3} {q:2.12} {total:10}")?;
        }
    }

    let sub_buckets = (2 * 10u64.pow(u32::from(h.sigfig()))).next_power_of_two();
    writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        h.mean() / HGRM_SCALE,
        h.stdev() / HGRM_SCALE
    )?;
    writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64 / HGRM_SCALE,
        h.len()
    )?;
    writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_buckets
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report_with(values: &[u64]) -> Report {
        let mut report = Report::empty();
        for &v in values {
            report.latency.record(v).unwrap();
        }
        report.requests = values.len() as u64;
        report.elapsed = Duration::from_secs(2);
        report
    }

    #[test]
    fn rates_and_percentiles() {
        let mut report = report_with(&(1..=1000).collect::<Vec<_>>());
        report.bytes_read = 3000;
        report.bytes_written = 1000;
        assert_eq!(report.requests_per_sec(), 500.0);
        assert_eq!(report.bytes_per_sec(), 2000.0);
        assert_eq!(report.percentile(50.0), Duration::from_micros(500));
        assert_eq!(report.percentile(99.0), Duration::from_micros(990));
        assert_eq!(report.max(), Duration::from_micros(1000));
    }

    #[test]
    fn merge_adds_counts_errors_and_latencies() {
        let mut a = report_with(&[10, 20]);
        a.errors.status.insert(404, 1);
        a.errors.read = 2;
        let mut b = report_with(&[30]);
        b.errors.status.insert(404, 2);
        b.errors.status.insert(500, 1);
        b.errors.connect = 1;
        a.merge(&b);
        assert_eq!(a.requests, 3);
        assert_eq!(a.latency.len(), 3);
        assert_eq!(a.latency.max(), 30);
        assert_eq!(a.errors.status, BTreeMap::from([(404, 3), (500, 1)]));
        assert_eq!(a.errors.non_2xx(), 4);
        assert_eq!(a.errors.transport(), 3);
    }

    #[test]
    fn json_names_everything() {
        let mut report = report_with(&[1000, 2000]);
        report.errors.status.insert(503, 7);
        let json = report.to_json();
        assert_eq!(json["requests"], 2);
        assert_eq!(json["requests_per_sec"], 1.0);
        assert_eq!(json["errors"]["status"]["503"], 7);
        assert_eq!(json["latency"]["max_us"], 2000);
        assert_eq!(json["latency"]["p50_us"], 1000);
        assert_eq!(json["latency"]["count"], 2);
    }

    #[test]
    fn hgrm_has_header_rows_and_footer() {
        let report = report_with(&[1000, 2000, 3000, 4000]);
        let mut out = Vec::new();
        report.write_hgrm(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines[1], "");
        assert_eq!(
            lines[2],
            "       1.000 0.000000000000          1           1.00"
        );
        let last_row = lines[lines.len() - 4];
        // Rows show the highest value equivalent to the recorded one, as HdrHistogram does.
        assert_eq!(last_row, "       4.001 1.000000000000          4");
        assert_eq!(
            lines[lines.len() - 3],
            "#[Mean    =        2.501, StdDeviation   =        1.118]"
        );
        assert_eq!(
            lines[lines.len() - 2],
            "#[Max     =        4.001, Total count    =            4]"
        );
        assert_eq!(
            lines[lines.len() - 1],
            "#[Buckets =           22, SubBuckets     =         2048]"
        );
    }

    #[test]
    fn a_run_with_no_request_shows_no_percentiles() {
        let mut out = Vec::new();
        report_with(&[]).print(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text.lines().last(),
            Some("  latency     none (no request completed)")
        );
        let mut out = Vec::new();
        report_with(&[1000]).print(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(" p50 1.000ms"), "{text}");
    }

    #[test]
    fn run_length_in_a_unit_that_shows_it() {
        assert_eq!(span(Duration::from_micros(1_984)), "1.984ms");
        assert_eq!(span(Duration::from_millis(999)), "999.000ms");
        assert_eq!(span(Duration::from_millis(10_004)), "10.00s");
    }

    #[test]
    fn byte_units() {
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(1536.0), "1.50 KiB");
        assert_eq!(bytes(3.0 * 1024.0 * 1024.0), "3.00 MiB");
        assert_eq!(millis(Duration::from_micros(1500)), "1.500ms");
    }
}
