//! `adit bench compare BASE.json NEW.json`: the regression gate for CI. A scenario regresses
//! when, on a path both runs measured, its throughput drops or its p99 grows by more than the
//! allowed percent.

use std::fmt::Write as _;

use super::report::BenchReport;

/// The outcome of a comparison: a line per path compared, and the regressions among them.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub lines: Vec<String>,
    pub regressions: Vec<String>,
    /// Scenarios in BASE that NEW does not have (not a regression: scenario sets change).
    pub missing: Vec<String>,
}

impl Comparison {
    pub fn passed(&self) -> bool {
        self.regressions.is_empty()
    }

    /// What the command prints.
    pub fn render(&self, max_regression: f64) -> String {
        let mut out = String::new();
        for line in &self.lines {
            let _ = writeln!(out, "{line}");
        }
        for name in &self.missing {
            let _ = writeln!(out, "{name}: only in BASE, not compared");
        }
        if self.passed() {
            let _ = writeln!(
                out,
                "ok: {} paths compared, none regressed by more than {max_regression}%",
                self.lines.len()
            );
        } else {
            let _ = writeln!(
                out,
                "FAIL: {} regressions of more than {max_regression}%:",
                self.regressions.len()
            );
            for regression in &self.regressions {
                let _ = writeln!(out, "  {regression}");
            }
        }
        out
    }
}

/// Percent change from `base` to `new` (positive: grew).
fn change(base: f64, new: f64) -> f64 {
    if base > 0.0 {
        (new - base) * 100.0 / base
    } else {
        0.0
    }
}

pub fn compare(base: &BenchReport, new: &BenchReport, max_regression: f64) -> Comparison {
    let mut result = Comparison {
        lines: Vec::new(),
        regressions: Vec::new(),
        missing: Vec::new(),
    };
    for old in &base.scenarios {
        let Some(current) = new.scenarios.iter().find(|s| s.name == old.name) else {
            result.missing.push(old.name.clone());
            continue;
        };
        let bulk = old.is_bulk();
        let what = if bulk { "bytes/s" } else { "req/s" };
        for old_path in &old.paths {
            let Some(new_path) = current.path(&old_path.path) else {
                continue;
            };
            let label = format!("{}/{}", old.name, old_path.path);
            let (t0, t1) = (old_path.throughput(bulk), new_path.throughput(bulk));
            let (p0, p1) = (old_path.latency_us.p99, new_path.latency_us.p99);
            let throughput = change(t0, t1);
            let p99 = change(p0 as f64, p1 as f64);
            result.lines.push(format!(
                "{label}: {what} {t0:.0} -> {t1:.0} ({throughput:+.1}%), \
                 p99 {p0}µs -> {p1}µs ({p99:+.1}%)"
            ));
            if -throughput > max_regression {
                result.regressions.push(format!(
                    "{label}: {what} dropped {:.1}% ({t0:.0} -> {t1:.0})",
                    -throughput
                ));
            }
            if p99 > max_regression {
                result
                    .regressions
                    .push(format!("{label}: p99 grew {p99:.1}% ({p0}µs -> {p1}µs)"));
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::{Latency, PathReport, ScenarioReport};

    fn path(name: &str, rps: f64, bps: f64, p99: u64) -> PathReport {
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
                p50: 100,
                p90: 150,
                p99,
                p999: 400,
                max: 900,
            },
            processes: Vec::new(),
            curve: Vec::new(),
        }
    }

    fn report(scenarios: Vec<(&str, &str, Vec<PathReport>)>) -> BenchReport {
        BenchReport {
            adit_version: "0.1.0".into(),
            cores: 2,
            load_generator: "test".into(),
            skipped: Vec::new(),
            summary: Default::default(),
            scenarios: scenarios
                .into_iter()
                .map(|(name, unit, paths)| ScenarioReport {
                    name: name.into(),
                    kind: "http".into(),
                    description: String::new(),
                    unit: unit.into(),
                    paths,
                    ratios: Default::default(),
                })
                .collect(),
        }
    }

    #[test]
    fn within_the_limit_passes() {
        let base = report(vec![(
            "small-get",
            "request",
            vec![
                path("direct", 10000.0, 0.0, 200),
                path("tunnel", 5000.0, 0.0, 400),
            ],
        )]);
        let new = report(vec![(
            "small-get",
            "request",
            vec![
                path("direct", 9600.0, 0.0, 209),
                path("tunnel", 5100.0, 0.0, 380),
            ],
        )]);
        let result = compare(&base, &new, 5.0);
        assert!(result.passed());
        assert_eq!(
            result.render(5.0),
            "small-get/direct: req/s 10000 -> 9600 (-4.0%), p99 200µs -> 209µs (+4.5%)\n\
             small-get/tunnel: req/s 5000 -> 5100 (+2.0%), p99 400µs -> 380µs (-5.0%)\n\
             ok: 2 paths compared, none regressed by more than 5%\n"
        );
    }

    #[test]
    fn throughput_drop_and_p99_growth_fail() {
        let base = report(vec![
            (
                "small-get",
                "request",
                vec![path("tunnel", 5000.0, 0.0, 400)],
            ),
            ("tcp-bulk", "GiB", vec![path("tunnel", 10.0, 1000.0, 50)]),
            ("gone", "request", vec![path("tunnel", 1.0, 1.0, 1)]),
        ]);
        let new = report(vec![
            (
                "small-get",
                "request",
                vec![path("tunnel", 4700.0, 0.0, 440)],
            ),
            // Requests/s is not what bulk throughput means: only bytes/s counts.
            ("tcp-bulk", "GiB", vec![path("tunnel", 20.0, 900.0, 50)]),
        ]);
        let result = compare(&base, &new, 5.0);
        assert!(!result.passed());
        assert_eq!(
            result.regressions,
            [
                "small-get/tunnel: req/s dropped 6.0% (5000 -> 4700)",
                "small-get/tunnel: p99 grew 10.0% (400µs -> 440µs)",
                "tcp-bulk/tunnel: bytes/s dropped 10.0% (1000 -> 900)",
            ]
        );
        assert_eq!(result.missing, ["gone"]);
        assert!(result.render(5.0).ends_with(
            "FAIL: 3 regressions of more than 5%:\n  \
             small-get/tunnel: req/s dropped 6.0% (5000 -> 4700)\n  \
             small-get/tunnel: p99 grew 10.0% (400µs -> 440µs)\n  \
             tcp-bulk/tunnel: bytes/s dropped 10.0% (1000 -> 900)\n"
        ));
    }

    #[test]
    fn exactly_at_the_limit_passes() {
        let base = report(vec![(
            "s",
            "request",
            vec![path("direct", 1000.0, 0.0, 100)],
        )]);
        let new = report(vec![(
            "s",
            "request",
            vec![path("direct", 950.0, 0.0, 105)],
        )]);
        assert!(compare(&base, &new, 5.0).passed());
        assert!(!compare(&base, &new, 4.9).passed());
    }
}
