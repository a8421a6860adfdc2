//! Latency percentile plots as hand-written SVG: one panel per scenario, the x axis in
//! "nines" (0 = p0, 1 = p90, 2 = p99, 3 = p99.9, ...) so the tail gets as much room as the
//! median, the y axis in linear time, one line per path.

use std::fmt::Write as _;

use super::report::{format_us, ScenarioReport};

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 380.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 130.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
const COLORS: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

/// One SVG document with a panel per scenario, stacked top to bottom.
pub fn document(scenarios: &[&ScenarioReport]) -> String {
    let height = HEIGHT * scenarios.len().max(1) as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(
        out,
        "<rect width=\"{WIDTH}\" height=\"{height}\" fill=\"#ffffff\"/>"
    );
    for (i, scenario) in scenarios.iter().enumerate() {
        let _ = writeln!(out, "<g transform=\"translate(0,{})\">", HEIGHT * i as f64);
        panel(&mut out, scenario);
        out.push_str("</g>\n");
    }
    out.push_str("</svg>\n");
    out
}

fn panel(out: &mut String, scenario: &ScenarioReport) {
    let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let max_nines = scenario
        .paths
        .iter()
        .flat_map(|p| p.curve.iter().map(|pt| pt[0]))
        .fold(0.0f64, f64::max)
        .ceil()
        .max(1.0);
    let max_us = scenario
        .paths
        .iter()
        .flat_map(|p| p.curve.iter().map(|pt| pt[1]))
        .fold(0.0f64, f64::max);
    let top_us = nice_ceiling(max_us);
    let x = |nines: f64| LEFT + nines / max_nines * plot_w;
    let y = |us: f64| TOP + plot_h - us / top_us * plot_h;

    let _ = writeln!(
        out,
        "<text x=\"{LEFT}\" y=\"24\" font-size=\"15\" font-weight=\"bold\">\
         {} latency by percentile</text>",
        escape(&scenario.name)
    );
    let _ = writeln!(
        out,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_w}\" height=\"{plot_h}\" \
         fill=\"none\" stroke=\"#888888\"/>"
    );
    for n in 0..=max_nines as u32 {
        let px = x(f64::from(n));
        let _ = writeln!(
            out,
            "<line x1=\"{px:.1}\" y1=\"{TOP}\" x2=\"{px:.1}\" y2=\"{:.1}\" stroke=\"#dddddd\"/>\n\
             <text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            TOP + plot_h,
            TOP + plot_h + 18.0,
            nines_label(n)
        );
    }
    for step in 0..=4 {
        let us = top_us * f64::from(step) / 4.0;
        let py = y(us);
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" y1=\"{py:.1}\" x2=\"{:.1}\" y2=\"{py:.1}\" stroke=\"#dddddd\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + plot_w,
            LEFT - 6.0,
            py + 4.0,
            format_us(us as u64)
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">percentile</text>",
        LEFT + plot_w / 2.0,
        HEIGHT - 10.0
    );

    for (i, path) in scenario.paths.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> = path
            .curve
            .iter()
            .map(|pt| format!("{:.1},{:.1}", x(pt[0]), y(pt[1])))
            .collect();
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            points.join(" ")
        );
        let ly = TOP + 10.0 + 20.0 * i as f64;
        let lx = LEFT + plot_w + 12.0;
        let _ = writeln!(
            out,
            "<line x1=\"{lx:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" \
             stroke=\"{color}\" stroke-width=\"3\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            lx + 20.0,
            lx + 26.0,
            ly + 4.0,
            escape(&path.path)
        );
    }
}

/// "0%", "90%", "99%", "99.9%", ...
fn nines_label(n: u32) -> String {
    match n {
        0 => "0%".to_owned(),
        1 => "90%".to_owned(),
        2 => "99%".to_owned(),
        _ => format!("99.{}%", "9".repeat(n as usize - 2)),
    }
}

/// The smallest of 1, 2, 2.5, 5 times a power of ten that is at least `v` (and at least 1).
fn nice_ceiling(v: f64) -> f64 {
    if v <= 1.0 {
        return 1.0;
    }
    let power = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * power)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::{Latency, PathReport};

    fn path(name: &str, curve: Vec<[f64; 2]>) -> PathReport {
        PathReport {
            path: name.into(),
            rounds: 1,
            requests: 100,
            errors: 0,
            bytes: 0,
            elapsed_s: 1.0,
            requests_per_sec: 100.0,
            bytes_per_sec: 0.0,
            latency_us: Latency {
                p50: 0,
                p90: 0,
                p99: 0,
                p999: 0,
                max: 0,
            },
            processes: Vec::new(),
            curve,
        }
    }

    fn scenario() -> ScenarioReport {
        ScenarioReport {
            name: "a<b".into(),
            kind: "http".into(),
            description: String::new(),
            unit: "request".into(),
            paths: vec![
                path("direct", vec![[0.0, 100.0], [1.0, 200.0], [2.0, 400.0]]),
                path("tunnel", vec![[0.0, 200.0], [1.0, 400.0], [2.0, 1000.0]]),
            ],
            ratios: Default::default(),
        }
    }

    /// Checks that tags nest and close, and returns the element names in document order.
    fn elements(xml: &str) -> Vec<String> {
        let mut stack: Vec<String> = Vec::new();
        let mut names = Vec::new();
        let mut rest = xml;
        while let Some(start) = rest.find('<') {
            let end = rest[start..].find('>').expect("unclosed tag") + start;
            let tag = &rest[start + 1..end];
            assert!(!tag.contains('<'), "'<' inside a tag: {tag}");
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name), "mismatched close");
            } else {
                let name: String = tag.chars().take_while(|c| c.is_alphanumeric()).collect();
                names.push(name.clone());
                if !tag.ends_with('/') {
                    stack.push(name);
                }
            }
            let text = &rest[end + 1..];
            let next = text.find('<').unwrap_or(text.len());
            assert!(!text[..next].contains('>'), "stray '>' in text");
            rest = text;
        }
        assert!(stack.is_empty(), "unclosed elements: {stack:?}");
        names
    }

    #[test]
    fn document_is_well_formed() {
        let s = scenario();
        let svg = document(&[&s, &s]);
        let names = elements(&svg);
        assert_eq!(names[0], "svg");
        assert_eq!(names.iter().filter(|n| *n == "polyline").count(), 4);
        assert_eq!(names.iter().filter(|n| *n == "g").count(), 2);
        assert!(svg.contains("height=\"760\""));
        assert!(svg.contains(">a&lt;b latency by percentile</text>"));
    }

    #[test]
    fn curves_are_scaled_exactly() {
        let svg = document(&[&scenario()]);
        // x: 0..2 nines over 80..590; y: 0..1000µs over 330..40.
        assert!(svg.contains("points=\"80.0,301.0 335.0,272.0 590.0,214.0\""));
        assert!(svg.contains("points=\"80.0,272.0 335.0,214.0 590.0,40.0\""));
        assert!(svg.contains(">99%</text>"));
        assert!(svg.contains(">1000µs</text>"));
    }

    #[test]
    fn labels_and_ceilings() {
        assert_eq!(nines_label(0), "0%");
        assert_eq!(nines_label(1), "90%");
        assert_eq!(nines_label(2), "99%");
        assert_eq!(nines_label(4), "99.99%");
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(1000.0), 1000.0);
        assert_eq!(nice_ceiling(1001.0), 2000.0);
        assert_eq!(nice_ceiling(2100.0), 2500.0);
        assert_eq!(nice_ceiling(7000.0), 10000.0);
    }
}
