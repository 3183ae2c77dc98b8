//! A flood's report: a compact table for the terminal, and `report.json` + `report.html` for the
//! record. The HTML stands alone (inline CSS and SVG, one inline script that checks the plots drew;
//! no external scripts, fonts or links) so it can be archived by CI or mailed as it is.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::measure::{LatencySummary, Measurements};
use super::plots::{format_ms, plots};
use super::thresholds::ThresholdResult;
use crate::verify::Check;

/// Everything a flood found: what ran, against what, what was measured, and the verdicts.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FloodReport {
    pub scenario: String,
    pub story: String,
    /// "actors" or "http".
    pub driver: String,
    /// URLs for http; the journal for actors.
    pub targets: Vec<String>,
    /// RFC 3339.
    pub started_at: String,
    /// The flags as given (rate, stages, duration, scale, model...).
    pub settings: serde_json::Value,
    pub measurements: Measurements,
    pub thresholds: Vec<ThresholdResult>,
    pub invariants: Vec<Check>,
    /// All thresholds and invariants.
    pub passed: bool,
}

fn verdict(passed: bool) -> &'static str {
    if passed {
        "PASS"
    } else {
        "FAIL"
    }
}

fn rate(value: f64) -> String {
    format!("{value:.1}/s")
}

fn share(part: u64, whole: u64) -> String {
    if whole == 0 {
        "0%".to_owned()
    } else {
        format!("{:.3}%", part as f64 * 100.0 / whole as f64)
    }
}

fn latency_row(out: &mut String, name: &str, requests: u64, errors: u64, l: &LatencySummary) {
    let _ = writeln!(
        out,
        "  {name:<24} {requests:>9} {errors:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
        format_ms(l.p50_ms),
        format_ms(l.p90_ms),
        format_ms(l.p99_ms),
        format_ms(l.p999_ms),
        format_ms(l.max_ms),
    );
}

/// The summary printed at the end of a flood: plain text, no colours (it ends up in CI logs).
pub fn terminal_summary(report: &FloodReport) -> String {
    let m = &report.measurements;
    let mut out = String::new();
    let _ = writeln!(out, "flood {}: {}", report.scenario, if report.passed { "PASSED" } else { "FAILED" });
    if !report.story.is_empty() {
        let _ = writeln!(out, "  {}", report.story);
    }
    let _ = writeln!(
        out,
        "  driver {} against {} (started {})",
        report.driver,
        if report.targets.is_empty() { "-".to_owned() } else { report.targets.join(", ") },
        report.started_at
    );
    let requested = m.requested_rate.map_or_else(|| "closed model".to_owned(), rate);
    let ratio = m.requested_rate.filter(|r| *r > 0.0).map(|r| format!(" ({:.1}%)", m.achieved_rate * 100.0 / r));
    let _ = writeln!(
        out,
        "  {} requests in {:.1} s; arrivals requested {requested}, achieved {}{}",
        m.requests,
        m.duration_s,
        rate(m.achieved_rate),
        ratio.unwrap_or_default()
    );
    let kinds: Vec<String> = m.errors_by_kind.iter().map(|(kind, n)| format!("{kind}: {n}")).collect();
    let _ = writeln!(
        out,
        "  errors {} ({}){}{}",
        m.errors,
        share(m.errors, m.requests),
        if kinds.is_empty() { "" } else { " - " },
        kinds.join(", ")
    );
    let _ = writeln!(out, "\n  latency from the intended send time (coordinated omission corrected)");
    let _ = writeln!(
        out,
        "  {:<24} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "operation", "requests", "errors", "p50", "p90", "p99", "p99.9", "max"
    );
    latency_row(&mut out, "all", m.requests, m.errors, &m.latency);
    for (name, op) in &m.operations {
        latency_row(&mut out, name, op.requests, op.errors, &op.latency);
    }
    if !m.latencies.is_empty() {
        let _ = writeln!(out, "\n  the scenario's own latencies");
        for (name, l) in &m.latencies {
            latency_row(&mut out, name, l.count, 0, l);
        }
    }
    if !m.figures.is_empty() {
        let _ = writeln!(out, "\n  the scenario's figures");
        for (name, figure) in &m.figures {
            let _ = writeln!(out, "  {name:<40} {:>12} {}", trim_number(figure.value), figure.unit);
        }
    }
    if !report.thresholds.is_empty() {
        let _ = writeln!(out, "\n  thresholds");
        for t in &report.thresholds {
            let _ = writeln!(out, "  {} {:<30} {}", verdict(t.passed), t.threshold, t.actual);
        }
    }
    if !report.invariants.is_empty() {
        let _ = writeln!(out, "\n  invariants");
        for check in &report.invariants {
            let _ = writeln!(out, "  {} {:<30} {}", verdict(check.passed), check.name, check.detail);
        }
    }
    out
}

/// A figure without trailing noise: 3 decimals at most.
fn trim_number(value: f64) -> String {
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text.is_empty() || text == "-" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1000px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 8px 0; font-size: 14px; }
th, td { padding: 3px 10px; text-align: left; border-bottom: 1px solid #eee; vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.pass { color: #fff; background: #2a8a2a; padding: 1px 6px; border-radius: 3px; }
.fail { color: #fff; background: #c0392b; padding: 1px 6px; border-radius: 3px; }
.story { color: #555; }
figure { margin: 14px 0; } svg.plot { width: 100%; height: auto; }
pre { background: #f6f6f6; padding: 8px; font-size: 13px; overflow-x: auto; }
";

/// Marks each plot with what the browser drew (its width and shapes), and logs an error for a plot
/// that has data but drew nothing: the report's browser test reads both.
const CHECK_SCRIPT: &str = "
(function () {
  var plots = document.querySelectorAll('svg[data-plot]');
  plots.forEach(function (svg) {
    var box = svg.getBoundingClientRect();
    var shapes = svg.querySelectorAll('polyline, circle').length;
    svg.setAttribute('data-rendered-width', String(Math.round(box.width)));
    svg.setAttribute('data-rendered-shapes', String(shapes));
    if (Number(svg.getAttribute('data-points')) > 0 && (box.width <= 0 || shapes === 0)) {
      console.error('plot ' + svg.getAttribute('data-plot') + ' has data but drew nothing');
    }
  });
  document.body.setAttribute('data-plots-checked', String(plots.length));
})();
";

fn verdict_html(passed: bool) -> String {
    format!("<span class=\"{}\">{}</span>", if passed { "pass" } else { "fail" }, verdict(passed))
}

fn latency_row_html(out: &mut String, name: &str, requests: u64, errors: u64, l: &LatencySummary) {
    let _ = write!(
        out,
        "<tr><td>{}</td><td class=n>{requests}</td><td class=n>{errors}</td><td class=n>{}</td><td class=n>{}</td>\
         <td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
        escape(name),
        format_ms(l.mean_ms),
        format_ms(l.p50_ms),
        format_ms(l.p90_ms),
        format_ms(l.p99_ms),
        format_ms(l.p999_ms),
        format_ms(l.max_ms),
    );
}

/// The report as one self-contained HTML page: the verdicts first, then the figures, the plots and
/// the settings.
pub fn render_html(report: &FloodReport) -> String {
    let m = &report.measurements;
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>flood {} - {}</title><style>{STYLE}</style>\
         </head><body><h1>Flood <code>{}</code> {}</h1>",
        escape(&report.scenario),
        if report.passed { "passed" } else { "failed" },
        escape(&report.scenario),
        verdict_html(report.passed),
    );
    if !report.story.is_empty() {
        let _ = write!(out, "<p class=story>{}</p>", escape(&report.story));
    }
    let requested = m.requested_rate.map_or_else(|| "closed model".to_owned(), rate);
    let facts = [
        ("driver", escape(&report.driver)),
        ("targets", escape(&report.targets.join(", "))),
        ("started", escape(&report.started_at)),
        ("duration", format!("{:.1} s", m.duration_s)),
        ("requests", m.requests.to_string()),
        ("arrivals requested", requested),
        ("arrivals achieved", rate(m.achieved_rate)),
        ("errors", format!("{} ({})", m.errors, share(m.errors, m.requests))),
    ];
    out.push_str("<table class=facts>");
    for (name, value) in facts {
        let _ = write!(out, "<tr><th>{name}</th><td>{value}</td></tr>");
    }
    out.push_str("</table>");

    out.push_str("<h2>Thresholds</h2>");
    if report.thresholds.is_empty() {
        out.push_str("<p>No thresholds were set.</p>");
    } else {
        out.push_str("<table class=thresholds><tr><th>verdict</th><th>threshold</th><th>measured</th></tr>");
        for t in &report.thresholds {
            let _ = write!(
                out,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                verdict_html(t.passed),
                escape(&t.threshold),
                escape(&t.actual)
            );
        }
        out.push_str("</table>");
    }
    out.push_str("<h2>Invariants</h2>");
    if report.invariants.is_empty() {
        out.push_str("<p>No invariants were checked.</p>");
    } else {
        out.push_str("<table class=invariants><tr><th>verdict</th><th>invariant</th><th>detail</th></tr>");
        for check in &report.invariants {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                verdict_html(check.passed),
                escape(&check.name),
                escape(&check.detail)
            );
        }
        out.push_str("</table>");
    }

    out.push_str(
        "<h2>Latency</h2><p>From each request's intended send time to its answer (coordinated omission \
         corrected): a stalled system shows here, not as a slower sender.</p><table class=latency><tr><th>operation</th>\
         <th class=n>requests</th><th class=n>errors</th><th class=n>mean</th><th class=n>p50</th><th class=n>p90</th>\
         <th class=n>p99</th><th class=n>p99.9</th><th class=n>max</th></tr>",
    );
    latency_row_html(&mut out, "all", m.requests, m.errors, &m.latency);
    for (name, op) in &m.operations {
        latency_row_html(&mut out, name, op.requests, op.errors, &op.latency);
    }
    out.push_str("</table>");
    if !m.errors_by_kind.is_empty() {
        out.push_str("<h2>Errors by kind</h2><table class=errors><tr><th>kind</th><th class=n>count</th></tr>");
        for (kind, count) in &m.errors_by_kind {
            let _ = write!(out, "<tr><td>{}</td><td class=n>{count}</td></tr>", escape(kind));
        }
        out.push_str("</table>");
    }
    if !m.figures.is_empty() || !m.latencies.is_empty() {
        out.push_str("<h2>The scenario's own measures</h2>");
    }
    if !m.figures.is_empty() {
        out.push_str("<table class=figures><tr><th>figure</th><th class=n>value</th><th>unit</th></tr>");
        for (name, figure) in &m.figures {
            let _ = write!(
                out,
                "<tr><td>{}</td><td class=n>{}</td><td>{}</td></tr>",
                escape(name),
                trim_number(figure.value),
                escape(&figure.unit)
            );
        }
        out.push_str("</table>");
    }
    if !m.latencies.is_empty() {
        out.push_str(
            "<table class=own-latencies><tr><th>distribution</th><th class=n>count</th><th class=n>errors</th>\
             <th class=n>mean</th><th class=n>p50</th><th class=n>p90</th><th class=n>p99</th><th class=n>p99.9</th>\
             <th class=n>max</th></tr>",
        );
        for (name, l) in &m.latencies {
            latency_row_html(&mut out, name, l.count, 0, l);
        }
        out.push_str("</table>");
    }

    out.push_str("<h2>Plots</h2>");
    for plot in plots(m) {
        let _ = write!(out, "<figure>{}</figure>", plot.svg);
    }
    let settings = serde_json::to_string_pretty(&report.settings).unwrap_or_else(|e| format!("unprintable: {e}"));
    let _ =
        write!(out, "<h2>Settings</h2><pre>{}</pre><script>{CHECK_SCRIPT}</script></body></html>", escape(&settings));
    out
}

/// Writes `dir/report.json` (the data) and `dir/report.html` (the page), creating `dir`.
pub fn write_report(dir: &Path, report: &FloodReport) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(report).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("report.json"), json)?;
    std::fs::write(dir.join("report.html"), render_html(report))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::flood::measure::{Outcome, Recorder};

    fn report() -> FloodReport {
        let recorder = Recorder::new();
        let start = recorder.started();
        for i in 0..200u64 {
            let intended = start + Duration::from_millis(i * 10);
            recorder.requested(intended);
            let outcome = if i % 50 == 0 { Outcome::Error("429 busy".into()) } else { Outcome::Ok };
            recorder.record("place_order", intended, intended + Duration::from_millis(2), outcome);
        }
        recorder.figure("lag_drain_seconds", 1.25, "s");
        FloodReport {
            scenario: "rush<hour>".into(),
            story: "Morning & rush".into(),
            driver: "actors".into(),
            targets: vec!["memory".into()],
            started_at: "2026-12-01T20:00:00Z".into(),
            settings: serde_json::json!({"rate": 100}),
            measurements: recorder.finish(Some(100.0)),
            thresholds: vec![ThresholdResult { threshold: "p99<1ms".into(), actual: "2.001 ms".into(), passed: false }],
            invariants: vec![Check { name: "exactly once".into(), passed: true, detail: "200 of 200".into() }],
            passed: false,
        }
    }

    #[test]
    fn the_terminal_summary_names_the_verdicts_and_figures() {
        let text = terminal_summary(&report());
        assert!(text.starts_with("flood rush<hour>: FAILED"), "{text}");
        assert!(text.contains("FAIL p99<1ms"), "{text}");
        assert!(text.contains("PASS exactly once"), "{text}");
        assert!(text.contains("429 busy: 4"), "{text}");
        assert!(text.contains("place_order"), "{text}");
        assert!(text.contains("lag_drain_seconds") && text.contains("1.25"), "{text}");
        assert!(text.contains("requested 100.0/s"), "{text}");
    }

    #[test]
    fn the_html_stands_alone_and_escapes_what_it_quotes() {
        let html = render_html(&report());
        assert!(html.contains("rush&lt;hour&gt;") && !html.contains("rush<hour>"));
        assert!(html.contains("Morning &amp; rush"));
        for external in ["<link", "src=", "href=", "@import", "url("] {
            assert!(!html.contains(external), "{external} in the report");
        }
        for plot in ["latency", "throughput", "errors", "spectrum"] {
            assert!(html.contains(&format!("data-plot=\"{plot}\"")), "{plot}");
        }
    }

    #[test]
    fn the_report_is_written_as_json_and_html() {
        let dir = tempfile::tempdir().unwrap();
        write_report(&dir.path().join("out"), &report()).unwrap();
        let json = std::fs::read_to_string(dir.path().join("out/report.json")).unwrap();
        let back: FloodReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back.measurements.requests, 200);
        assert!(!back.passed);
        assert!(std::fs::read_to_string(dir.path().join("out/report.html")).unwrap().starts_with("<!doctype html>"));
    }
}
