//! The Prometheus text exposition format (version 0.0.4): `# HELP` and `# TYPE` once per
//! family, then one line per sample. Runs on the scrape thread only, so it may allocate.

use std::fmt::{Display, Write};

use super::{HistogramSum, LATENCY_LE};

/// The metric type a family declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A scrape's text, built family by family.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Starts a family. Help text is escaped as the format asks (backslash, newline).
    pub fn header(&mut self, name: &str, help: &str, kind: Kind) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
    }

    /// One sample line of the current family.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        self.labels(labels, None);
        let _ = writeln!(self.out, " {value}");
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, help: &str, kind: Kind, value: impl Display) {
        self.header(name, help, kind);
        self.sample(name, &[], value);
    }

    /// The `_bucket` (cumulative), `_sum` (seconds) and `_count` lines of one histogram.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], sum: &HistogramSum) {
        let mut cumulative = 0u64;
        let bounds = LATENCY_LE.iter().copied().chain(["+Inf"]);
        for (bucket, le) in sum.buckets.iter().zip(bounds) {
            cumulative = cumulative.wrapping_add(*bucket);
            let _ = write!(self.out, "{name}_bucket");
            self.labels(labels, Some(le));
            let _ = writeln!(self.out, " {cumulative}");
        }
        let _ = write!(self.out, "{name}_sum");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {}", seconds(sum.sum_ns));
        let _ = write!(self.out, "{name}_count");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {}", sum.count());
    }

    pub fn finish(self) -> String {
        self.out
    }

    fn labels(&mut self, labels: &[(&str, &str)], le: Option<&str>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.out.push('{');
        let all = labels.iter().copied().chain(le.map(|le| ("le", le)));
        for (i, (name, value)) in all.enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.out.push_str(name);
            self.out.push_str("=\"");
            for c in value.chars() {
                match c {
                    '\\' => self.out.push_str("\\\\"),
                    '"' => self.out.push_str("\\\""),
                    '\n' => self.out.push_str("\\n"),
                    c => self.out.push(c),
                }
            }
            self.out.push('"');
        }
        self.out.push('}');
    }
}

/// Nanoseconds as seconds, in the shortest decimal that reads back as the same number.
pub fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::metrics::Histogram;

    #[test]
    fn counters_gauges_and_escaped_labels() {
        let mut out = Exposition::new();
        out.header("adit_test_total", "Things\\counted\nhere.", Kind::Counter);
        out.sample("adit_test_total", &[("class", "2xx")], 7);
        out.sample("adit_test_total", &[("a", "q\"b\\c\nd"), ("b", "x")], 0);
        out.single("adit_test_open", "Open things.", Kind::Gauge, -1);
        assert_eq!(
            out.finish(),
            "# HELP adit_test_total Things\\\\counted\\nhere.\n\
             # TYPE adit_test_total counter\n\
             adit_test_total{class=\"2xx\"} 7\n\
             adit_test_total{a=\"q\\\"b\\\\c\\nd\",b=\"x\"} 0\n\
             # HELP adit_test_open Open things.\n\
             # TYPE adit_test_open gauge\n\
             adit_test_open -1\n"
        );
    }

    #[test]
    fn histograms_render_cumulative_buckets_in_seconds() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_micros(100));
        histogram.observe(Duration::from_millis(2));
        histogram.observe(Duration::from_millis(2));
        histogram.observe(Duration::from_secs(31));
        let sum = HistogramSum::of([&histogram]);
        let mut out = Exposition::new();
        out.header("adit_t_seconds", "Latency.", Kind::Histogram);
        out.histogram("adit_t_seconds", &[("x", "y")], &sum);
        let text = out.finish();
        let b = |le: &str, n: u64| format!("adit_t_seconds_bucket{{x=\"y\",le=\"{le}\"}} {n}\n");
        let expected = [
            "# HELP adit_t_seconds Latency.\n# TYPE adit_t_seconds histogram\n".to_owned(),
            b("0.0001", 1),
            b("0.00025", 1),
            b("0.0005", 1),
            b("0.001", 1),
            b("0.0025", 3),
            b("0.005", 3),
            b("0.01", 3),
            b("0.025", 3),
            b("0.05", 3),
            b("0.1", 3),
            b("0.25", 3),
            b("0.5", 3),
            b("1", 3),
            b("2.5", 3),
            b("5", 3),
            b("10", 3),
            b("30", 3),
            b("+Inf", 4),
            "adit_t_seconds_sum{x=\"y\"} 31.0041\n".to_owned(),
            "adit_t_seconds_count{x=\"y\"} 4\n".to_owned(),
        ]
        .concat();
        assert_eq!(text, expected);
    }
}
