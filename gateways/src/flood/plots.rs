//! The report's plots, drawn by plotters into inline SVG (no bitmap, no font files: the browser lays
//! out the text). Every plot's `<svg>` carries `data-plot="NAME"` and `data-points="N"`, the count
//! of data points drawn, so a browser test can tell a plot that drew its data from an empty frame;
//! a plot with no data says so in words instead of drawing empty axes.

use plotters::prelude::*;

use super::measure::Measurements;

const WIDTH: u32 = 960;
const HEIGHT: u32 = 340;

/// One plot, ready to inline into HTML.
#[derive(Clone, Debug)]
pub struct Plot {
    /// Stable name, also the `data-plot` attribute: "latency", "throughput", "errors", "spectrum",
    /// "series-NAME".
    pub name: String,
    pub title: String,
    /// Data points drawn (0: the SVG says there was no data).
    pub points: usize,
    pub svg: String,
}

/// Every plot of the report, in reading order: latency over time, throughput over time, errors over
/// time, the latency percentile spectrum, then one per scenario series.
pub fn plots(m: &Measurements) -> Vec<Plot> {
    let mut plots = vec![latency_over_time(m), throughput_over_time(m), errors_over_time(m), spectrum(m)];
    for (name, points) in &m.series {
        let line = Line { label: name.clone(), color: PALETTE[0], points: points.clone() };
        plots.push(chart(
            &format!("series-{name}"),
            &format!("{name} over time"),
            "seconds",
            name,
            vec![line],
            Scale::Linear,
        ));
    }
    plots
}

const PALETTE: [RGBColor; 4] =
    [RGBColor(31, 119, 180), RGBColor(44, 160, 44), RGBColor(255, 127, 14), RGBColor(214, 39, 40)];

struct Line {
    label: String,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

/// How the y values are laid out. `Log` draws log10 of milliseconds (a spike of seconds and a median
/// of a millisecond on one plot) and labels the axis in time; values under 1 µs sit at 1 µs.
#[derive(Clone, Copy, PartialEq)]
enum Scale {
    Linear,
    LogMs,
}

/// A time in milliseconds, short.
pub fn format_ms(ms: f64) -> String {
    if ms >= 10_000.0 {
        format!("{:.0} s", ms / 1000.0)
    } else if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else if ms >= 1.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{:.0} µs", ms * 1000.0)
    }
}

fn latency_over_time(m: &Measurements) -> Plot {
    let busy: Vec<_> = m.seconds.iter().filter(|s| s.completed > 0).collect();
    let line = |label: &str, color, pick: fn(&super::measure::SecondBucket) -> f64| Line {
        label: label.to_owned(),
        color,
        points: busy.iter().map(|s| (s.t_s, pick(s))).collect(),
    };
    let lines = vec![
        line("p50", PALETTE[1], |s| s.p50_ms),
        line("p90", PALETTE[0], |s| s.p90_ms),
        line("p99", PALETTE[2], |s| s.p99_ms),
        line("max", PALETTE[3], |s| s.max_ms),
    ];
    chart("latency", "Latency per second (from the intended send time)", "seconds", "latency", lines, Scale::LogMs)
}

fn throughput_over_time(m: &Measurements) -> Plot {
    let lines = vec![
        Line {
            label: "requested/s".into(),
            color: PALETTE[0],
            points: m.seconds.iter().map(|s| (s.t_s, s.requested as f64)).collect(),
        },
        Line {
            label: "completed/s".into(),
            color: PALETTE[1],
            points: m.seconds.iter().map(|s| (s.t_s, s.completed as f64)).collect(),
        },
    ];
    let lines = if m.seconds.iter().any(|s| s.requested > 0 || s.completed > 0) { lines } else { Vec::new() };
    chart("throughput", "Throughput: requested vs completed per second", "seconds", "requests/s", lines, Scale::Linear)
}

fn errors_over_time(m: &Measurements) -> Plot {
    let lines = if m.errors > 0 {
        vec![Line {
            label: "errors/s".into(),
            color: PALETTE[3],
            points: m.seconds.iter().map(|s| (s.t_s, s.errors as f64)).collect(),
        }]
    } else {
        Vec::new()
    };
    chart("errors", "Errors per second", "seconds", "errors/s", lines, Scale::Linear)
}

/// x of a percentile on the spectrum plot: -log10(1 - p), so 90, 99, 99.9, 99.99 are evenly spaced.
fn nines(percentile: f64) -> f64 {
    -(1.0 - percentile / 100.0).max(1e-9).log10()
}

fn spectrum(m: &Measurements) -> Plot {
    let points: Vec<(f64, f64)> = m.spectrum.iter().map(|&(p, ms)| (nines(p), ms)).collect();
    let lines = if points.is_empty() {
        Vec::new()
    } else {
        vec![Line { label: "all requests".into(), color: PALETTE[2], points }]
    };
    chart("spectrum", "Latency by percentile", "percentile", "latency", lines, Scale::LogMs)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn empty(name: &str, title: &str) -> Plot {
    let svg = format!(
        "<svg data-plot=\"{name}\" data-points=\"0\" class=\"plot empty\" width=\"{WIDTH}\" height=\"60\" \
         viewBox=\"0 0 {WIDTH} 60\" xmlns=\"http://www.w3.org/2000/svg\"><text x=\"12\" y=\"36\" \
         font-family=\"sans-serif\" font-size=\"15\" fill=\"#555\">{title}: no data</text></svg>",
        name = escape(name),
        title = escape(title),
    );
    Plot { name: name.to_owned(), title: title.to_owned(), points: 0, svg }
}

/// A range that plotters can draw: never empty, a little room above.
fn span(values: impl Iterator<Item = f64> + Clone, from_zero: bool) -> (f64, f64) {
    let low = values.clone().fold(f64::INFINITY, f64::min);
    let high = values.fold(f64::NEG_INFINITY, f64::max);
    let low = if from_zero { low.min(0.0) } else { low };
    if !low.is_finite() || !high.is_finite() {
        return (0.0, 1.0);
    }
    if high - low < 1e-9 {
        return (low - 0.5, high + 0.5);
    }
    (low, high)
}

fn chart(name: &str, title: &str, x_desc: &str, y_desc: &str, mut lines: Vec<Line>, scale: Scale) -> Plot {
    lines.retain(|l| !l.points.is_empty());
    let points: usize = lines.iter().map(|l| l.points.len()).sum();
    if points == 0 {
        return empty(name, title);
    }
    if scale == Scale::LogMs {
        for line in &mut lines {
            for point in &mut line.points {
                point.1 = point.1.max(0.001).log10();
            }
        }
    }
    let mut svg = String::new();
    match draw(&mut svg, title, x_desc, y_desc, &lines, scale, name == "spectrum") {
        Ok(()) => {
            let tagged = format!("<svg data-plot=\"{}\" data-points=\"{points}\" class=\"plot\" ", escape(name));
            Plot { name: name.to_owned(), title: title.to_owned(), points, svg: svg.replacen("<svg ", &tagged, 1) }
        }
        Err(e) => {
            let mut plot = empty(name, &format!("{title} (could not draw: {e})"));
            plot.title = title.to_owned();
            plot
        }
    }
}

fn draw(
    svg: &mut String,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    lines: &[Line],
    scale: Scale,
    percentile_axis: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let (x_low, x_high) = span(lines.iter().flat_map(|l| l.points.iter().map(|p| p.0)), true);
    let (x_low, x_high) = if percentile_axis { (0.0, x_high.ceil().max(1.0)) } else { (x_low, x_high) };
    let (y_low, y_high) = match scale {
        Scale::Linear => {
            let (low, high) = span(lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)), true);
            (low, high * 1.08)
        }
        Scale::LogMs => {
            let (low, high) = span(lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)), false);
            (low.floor(), high.ceil().max(low.floor() + 1.0))
        }
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(78)
        .build_cartesian_2d(x_low..x_high, y_low..y_high)?;
    let x_format = |x: &f64| {
        if percentile_axis {
            let p = 100.0 * (1.0 - 10f64.powf(-x));
            let decimals = (x.ceil() as i64 - 2).clamp(0, 6) as usize;
            format!("{p:.decimals$}")
        } else {
            format!("{x}")
        }
    };
    let y_format = |y: &f64| match scale {
        Scale::Linear => {
            if y.abs() >= 10_000.0 {
                format!("{:.0}k", y / 1000.0)
            } else {
                format!("{y}")
            }
        }
        Scale::LogMs => format_ms(10f64.powf(*y)),
    };
    let x_labels = if percentile_axis { (x_high as usize) + 1 } else { 10 };
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_labels(x_labels)
        .y_labels(8)
        .x_label_formatter(&x_format)
        .y_label_formatter(&y_format)
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    for line in lines {
        let color = line.color;
        chart
            .draw_series(LineSeries::new(line.points.iter().copied(), color.stroke_width(2)))?
            .label(line.label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        // Few points make short or invisible lines: mark each one.
        if line.points.len() <= 40 {
            chart.draw_series(line.points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .label_font(("sans-serif", 13))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::flood::measure::{Outcome, Recorder};

    fn attribute(svg: &str, name: &str) -> Option<String> {
        let start = svg.find(&format!("{name}=\""))? + name.len() + 2;
        Some(svg[start..].split('"').next()?.to_owned())
    }

    #[test]
    fn every_plot_is_tagged_with_its_points_and_an_empty_one_says_so() {
        let recorder = Recorder::new();
        let start = recorder.started();
        for i in 0..300u64 {
            let intended = start + Duration::from_millis(i * 10);
            recorder.requested(intended);
            recorder.record("op", intended, intended + Duration::from_millis(1 + i % 7), Outcome::Ok);
        }
        recorder.observe("lag", 3.0);
        let m = recorder.finish(Some(100.0));
        let plots = plots(&m);
        let names: Vec<&str> = plots.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["latency", "throughput", "errors", "spectrum", "series-lag"]);
        for plot in &plots {
            assert!(plot.svg.starts_with("<svg data-plot=\""), "{}", &plot.svg[..80.min(plot.svg.len())]);
            assert_eq!(attribute(&plot.svg, "data-plot").as_deref(), Some(plot.name.as_str()));
            assert_eq!(attribute(&plot.svg, "data-points"), Some(plot.points.to_string()));
        }
        let errors = &plots[2];
        assert_eq!(errors.points, 0, "no errors were recorded");
        assert!(errors.svg.contains("no data"));
        assert_eq!(plots[0].points, 4 * m.seconds.iter().filter(|s| s.completed > 0).count());
        assert!(plots[0].svg.contains("<text"), "labels are SVG text");
        for label in ["\n90\n", "\n99\n"] {
            assert!(plots[3].svg.contains(label), "the spectrum's axis reads in percentiles: {label:?}");
        }
    }

    #[test]
    fn percentiles_sit_evenly_by_nines() {
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(nines(0.0), 0.0);
    }
}
