//! The flood report in a real browser: a few synthetic seconds of a flood (with errors, two
//! operations, a scenario series, distribution and figure) rendered to report.html, opened in
//! headless Chromium. Every plot must have drawn its data points and the page must log nothing (its
//! one inline script logs an error for a plot with data that drew nothing).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gateways::flood::measure::{Outcome, Recorder};
use gateways::flood::report::{render_html, write_report, FloodReport};
use gateways::flood::thresholds::{evaluate, Threshold};
use gateways::verify::Check;

/// Four seconds at 200/s requested, the last one slower and failing more, as a stalled system would.
fn synthetic_report() -> FloodReport {
    let recorder = Recorder::new();
    let start = recorder.started();
    for i in 0..800u64 {
        let intended = start + Duration::from_millis(i * 5);
        recorder.requested(intended);
        let stalled = i >= 600;
        let latency = Duration::from_micros(if stalled { 20_000 + i * 50 } else { 800 + (i * 37) % 2000 });
        let outcome = match i {
            i if stalled && i % 7 == 0 => Outcome::Error("503 unavailable".into()),
            i if i % 97 == 0 => Outcome::Error("timeout".into()),
            _ => Outcome::Ok,
        };
        let operation = if i % 3 == 0 { "pay" } else { "place_order" };
        recorder.record(operation, intended, intended + latency, outcome);
    }
    for lag in [0.0, 40.0, 180.0, 420.0, 260.0, 90.0, 10.0] {
        recorder.observe("projection_lag_events", lag);
    }
    recorder.observe_latency("activation", Duration::from_millis(120));
    recorder.figure("lag_drain_seconds", 2.5, "s");
    let mut measurements = recorder.finish(Some(200.0));
    // `observe` stamps points with the real clock, and this test does not wait: spread them over the
    // synthetic seconds so the series plot draws a line.
    if let Some(points) = measurements.series.get_mut("projection_lag_events") {
        for (i, point) in points.iter_mut().enumerate() {
            point.0 = i as f64 * 0.6;
        }
    }
    let thresholds: Vec<Threshold> =
        ["p99<50ms", "errors<1%", "rate>=0.95"].iter().map(|t| t.parse().expect("a valid threshold")).collect();
    let thresholds = evaluate(&thresholds, &measurements);
    let invariants = vec![
        Check { name: "every acknowledged order exists once".into(), passed: true, detail: "751 of 751".into() },
        Check {
            name: "read models agree with the journal".into(),
            passed: false,
            detail: "storefront: 3 missing".into(),
        },
    ];
    let passed = thresholds.iter().all(|t| t.passed) && invariants.iter().all(|c| c.passed);
    FloodReport {
        scenario: "lunch-rush".into(),
        story: "A synthetic lunch rush: steady, then the journal stalls in the last second.".into(),
        driver: "actors".into(),
        targets: vec!["in-memory journal".into()],
        started_at: "2026-12-01T12:00:00Z".into(),
        settings: serde_json::json!({"rate": 200, "duration": "4s"}),
        measurements,
        thresholds,
        invariants,
        passed,
    }
}

/// The value of `name="..."` in one tag.
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    tag[start..].split('"').next()
}

/// Runs headless Chromium on `page` and returns (DOM after the page's scripts ran, stderr).
fn dump_dom(chromium: &str, page: &Path, profile: &Path) -> (String, String) {
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    // Read both pipes on threads so a full pipe cannot stall the browser.
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).map(|_| text)
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).map(|_| text)
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match child.try_wait().expect("wait for chromium") {
            Some(_) => break,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not finish within two minutes");
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    let dom = out.join().expect("stdout reader").expect("read stdout");
    let log = err.join().expect("stderr reader").expect("read stderr");
    (dom, log)
}

#[test]
fn every_plot_of_the_report_renders_its_data_in_a_browser() {
    let report = synthetic_report();
    // The page's own promise, checked without a browser first: every plot carries its points.
    let html = render_html(&report);
    assert!(!report.passed, "a failed invariant fails the flood");

    let Some(chromium) = testkit::servers::chromium() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    write_report(dir.path(), &report).expect("write the report");
    assert_eq!(std::fs::read_to_string(dir.path().join("report.html")).expect("report.html"), html);
    let (dom, log) = dump_dom(&chromium, &dir.path().join("report.html"), &dir.path().join("profile"));

    // Chromium logs the page's console as `INFO:CONSOLE:LINE] "message", source: ...` (older builds:
    // `CONSOLE(LINE)`); the report logs nothing unless a plot failed, so any console line fails.
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught")).collect();
    assert!(console.is_empty(), "the page logged:\n{}", console.join("\n"));

    let expected = ["latency", "throughput", "errors", "spectrum", "series-projection_lag_events"];
    let plots: Vec<&str> =
        dom.match_indices("<svg").map(|(at, _)| &dom[at..at + dom[at..].find('>').unwrap_or(0)]).collect();
    let names: Vec<&str> = plots.iter().filter_map(|tag| attribute(tag, "data-plot")).collect();
    assert_eq!(names, expected, "the plots the browser saw");
    for tag in &plots {
        let name = attribute(tag, "data-plot").unwrap_or("?");
        let number = |attr: &str| -> u64 {
            attribute(tag, attr).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{name}: no {attr} in {tag}"))
        };
        assert!(number("data-points") > 0, "{name} has no data points: {tag}");
        assert!(number("data-rendered-width") > 0, "{name} has no width in the browser: {tag}");
        assert!(number("data-rendered-shapes") > 0, "{name} drew no lines or points: {tag}");
    }
    let checked = dom.find("data-plots-checked=\"").map(|at| &dom[at + 20..]).and_then(|rest| rest.split('"').next());
    assert_eq!(checked, Some("5"), "the page's check script ran over every plot");
    // The verdicts are on the page too.
    assert!(dom.contains("storefront: 3 missing"));
    assert!(dom.contains("rate&gt;=0.95"));
}
