//! The node's own dashboard: the overview dashboard on-call watches in CloudWatch
//! ([`crate::cloudwatch::dashboard::overview`]), the same widgets and lines, drawn from the node's
//! own metrics as its [`History`](crate::cloudwatch::history::History) keeps them, for a person with
//! a node and no AWS account.
//!
//! - `GET /admin/dashboard`: the page, a shell of HTML, CSS and one script (no external resource,
//!   SVG drawn in plain JavaScript) that holds no data. A browser navigating to it cannot send the
//!   admin token as a bearer header, so the shell is open ([`super::auth::OPEN_ADMIN_PAGES`]) and the
//!   token travels in the URL's fragment, `/admin/dashboard#token=<admin token>`: a fragment never
//!   leaves the browser (not in the request, the node's logs, a proxy's logs or a `Referer`). The
//!   script keeps it in the tab's `sessionStorage`, takes it out of the address bar, and sends it as
//!   `Authorization: Bearer` on every data request; without one it asks for it.
//! - `GET /admin/dashboard/data`: the widgets with their lines' points (JSON), behind the token like
//!   every other admin route. The page fetches it every sample interval (between 1 and 10 s).
//!
//! The page marks what it drew for the browser test (`gateways/tests/it/dashboard_page.rs`): each
//! widget's `data-points` (points of its node lines) and `data-shapes` (lines, dots and figures
//! drawn), and the body's `data-errors`, the script errors and `console.error` calls it caught,
//! which it also lists on the page.

use std::sync::{Arc, OnceLock};

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::errors::ApiError;
use super::schema::{Internal, Unauthorized};
use super::ApiState;
use crate::cloudwatch::dashboard::{self, Dashboard, Deployment, LineSeries, View};
use crate::cloudwatch::history::{evaluate, Evaluated, History, Point};

/// The environment a node's own page is for: the `Environment` of its dashboard's queries.
pub const ENVIRONMENT: &str = "local";

/// The dashboard the page draws: the overview, for a deployment in [`ENVIRONMENT`].
pub fn overview() -> &'static Dashboard {
    static OVERVIEW: OnceLock<Dashboard> = OnceLock::new();
    OVERVIEW.get_or_init(|| dashboard::overview(&Deployment::for_environment(ENVIRONMENT)))
}

/// What `GET /admin/dashboard/data` answers.
#[derive(Serialize, ToSchema)]
#[schema(as = DashboardData)]
pub struct DashboardJson {
    /// The CloudWatch dashboard's name (`CloudCafe-Overview-local`).
    pub name: String,
    pub title: String,
    pub environment: &'static str,
    /// The last sample's interval in seconds, `null` before the first sample.
    pub sample_seconds: Option<f64>,
    /// Samples kept now, and at most.
    pub samples: usize,
    pub capacity: usize,
    /// Samples the history lost by falling behind the sampler (gaps in the lines).
    pub missed_samples: u64,
    pub widgets: Vec<WidgetJson>,
}

/// One widget, in the dashboard's order.
#[derive(Serialize, ToSchema)]
#[schema(as = DashboardWidget)]
pub struct WidgetJson {
    pub title: String,
    /// `timeSeries` (lines over time) or `singleValue` (each line's latest value).
    #[schema(value_type = String, pattern = "^(timeSeries|singleValue)$")]
    pub view: &'static str,
    /// The y axis' label.
    pub unit: String,
    pub lines: Vec<LineJson>,
}

/// One line of a widget.
#[derive(Serialize, ToSchema)]
#[schema(as = DashboardLine)]
pub struct LineJson {
    pub label: String,
    /// What it plots, as CloudWatch names it (`CloudCafe/Actors Commands Sum per second`).
    pub metric: String,
    /// An AWS service metric: only CloudWatch has it, `points` is empty.
    pub aws_only: bool,
    /// `[unix milliseconds, value]`, oldest first, one per sample that had data for the line.
    #[schema(value_type = Vec<Vec<f64>>)]
    pub points: Vec<Point>,
}

/// The dashboard over the samples of `history`.
pub fn dashboard_json(dashboard: &Dashboard, history: &History) -> DashboardJson {
    let samples = history.samples();
    let widgets = dashboard
        .widgets
        .iter()
        .map(|widget| WidgetJson {
            title: widget.title.clone(),
            view: match widget.view {
                View::TimeSeries => "timeSeries",
                View::SingleValue => "singleValue",
            },
            unit: widget.unit_label.clone(),
            lines: widget
                .lines
                .iter()
                .map(|line| {
                    let (aws_only, points) = match evaluate(&line.series, &samples) {
                        Evaluated::Points(points) => (false, points),
                        Evaluated::CloudWatchOnly => (true, Vec::new()),
                    };
                    LineJson { label: line.label.clone(), metric: described(&line.series), aws_only, points }
                })
                .collect(),
        })
        .collect();
    DashboardJson {
        name: dashboard.name.clone(),
        title: dashboard.title.clone(),
        environment: ENVIRONMENT,
        sample_seconds: samples.last().map(|s| s.interval.as_secs_f64()),
        samples: samples.len(),
        capacity: history.capacity(),
        missed_samples: history.missed(),
        widgets,
    }
}

/// A line's series as CloudWatch names it, for the legend's tooltip.
fn described(series: &LineSeries) -> String {
    let query = |q: &dashboard::MetricQuery| {
        let filter: Vec<String> = q.dimensions.iter().map(|(n, v)| format!("{n}={v}")).collect();
        format!("{} {} {} [{}]", q.metric.namespace, q.metric.cloudwatch_name, q.stat.cloudwatch(), filter.join(", "))
    };
    let all = |qs: &[dashboard::MetricQuery]| qs.iter().map(query).collect::<Vec<_>>().join(" + ");
    match series {
        LineSeries::Metric(q) => query(q),
        LineSeries::PerSecond(q) => format!("{} per second", query(q)),
        LineSeries::Percent { part, whole } => format!("100 × ({}) / ({})", all(part), all(whole)),
        LineSeries::External(q) => format!("{} {} {}", q.metric.namespace, q.metric.name, q.stat.cloudwatch()),
    }
}

/// `GET /admin/dashboard`: the page (no data; it fetches `/admin/dashboard/data` with the token).
#[utoipa::path(
    get,
    path = "/admin/dashboard",
    tag = "operations",
    summary = "The node's dashboard page",
    description = "The overview dashboard drawn from this node's own metrics, refreshing itself. The page holds no \
        data and is served without the admin token, which a browser cannot send when it navigates: open it as \
        `/admin/dashboard#token=<admin token>` (a URL fragment never reaches the node or its logs) and it sends the \
        token on its requests to `/admin/dashboard/data`.",
    responses((status = 200, description = "The page", body = String, content_type = "text/html")),
)]
pub(super) async fn page() -> HttpResponse {
    // A fresh nonce per answer: only the page's own style and script run, nothing injected; the
    // icon is an empty `data:` one, so the browser asks the node for no `/favicon.ico`.
    let nonce = hex::encode(uuid::Uuid::new_v4().as_bytes());
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; \
         img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    );
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, csp))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(PAGE.replace("{{NONCE}}", &nonce))
}

/// `GET /admin/dashboard/data`: every widget of the overview with its lines' points.
#[utoipa::path(
    get,
    path = "/admin/dashboard/data",
    tag = "operations",
    summary = "The node's dashboard data",
    description = "Every widget of the overview dashboard, each line evaluated over the samples this node keeps \
        (one point per sample, as CloudWatch would over a period of one sample). Lines of AWS service metrics are \
        marked `aws_only` and have no points: only CloudWatch has them.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The widgets and their points", body = DashboardJson),
        (status = 401, response = Unauthorized),
        (status = 500, response = Internal),
    ),
)]
pub(super) async fn data(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let history = Arc::clone(&state.history);
    // Up to an hour of samples for every line: computed off the worker that answers requests.
    let body = web::block(move || dashboard_json(overview(), &history))
        .await
        .map_err(|e| ApiError::Internal(format!("the dashboard was not computed: {e}").into()))?;
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(body))
}

/// The page: `{{NONCE}}` is replaced by each answer's CSP nonce.
const PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>CloudCafe dashboard</title>
<style nonce="{{NONCE}}">
  :root { --ink: #16191f; --muted: #5f6b7a; --line: #e9ebed; --panel: #ffffff; --bg: #f2f3f3; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); background: var(--bg); }
  header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 4px 16px; padding: 12px 20px; background: #232f3e; color: #fff; }
  header h1 { margin: 0; font-size: 18px; font-weight: 600; }
  #status { color: #d5dbdb; font-size: 13px; }
  #status.bad { color: #ffb4a8; }
  #login { margin: 20px; padding: 16px; background: var(--panel); border: 1px solid var(--line); max-width: 560px; }
  #login input { width: 100%; margin: 8px 0; padding: 6px; font: inherit; }
  #errors { margin: 20px; padding: 12px; background: #fdf3f1; border: 1px solid #d13212; color: #a21a00; white-space: pre-wrap; }
  main { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 12px; padding: 12px 20px 20px; }
  .widget { background: var(--panel); border: 1px solid var(--line); border-radius: 2px; padding: 10px 12px 8px; min-width: 0; }
  .widget h2 { margin: 0 0 4px; font-size: 14px; font-weight: 600; }
  .widget h2 .unit { color: var(--muted); font-weight: 400; margin-left: 6px; }
  .widget svg { display: block; width: 100%; height: auto; }
  .widget svg text { font-size: 12px; fill: var(--muted); }
  .widget svg .grid { stroke: var(--line); stroke-width: 1; }
  .widget svg .note { font-size: 13px; }
  .figures { display: flex; flex-wrap: wrap; gap: 8px 28px; padding: 10px 2px 14px; }
  .figure .value { font-size: 30px; font-weight: 300; }
  .figure .label { color: var(--muted); }
  ul.legend { list-style: none; margin: 4px 0 0; padding: 0; display: flex; flex-wrap: wrap; gap: 2px 14px; font-size: 12px; }
  ul.legend li { display: flex; align-items: center; gap: 5px; }
  ul.legend .swatch { width: 12px; height: 3px; display: inline-block; }
  ul.legend .last { color: var(--muted); }
  ul.legend li.aws, ul.legend li.empty { color: var(--muted); font-style: italic; }
  .c0 { background: #1f77b4; } .c1 { background: #ff7f0e; } .c2 { background: #2ca02c; } .c3 { background: #d62728; }
  .c4 { background: #9467bd; } .c5 { background: #8c564b; } .c6 { background: #e377c2; } .c7 { background: #17becf; }
</style>
</head>
<body data-errors="0" data-refreshes="0">
<header><h1 id="title">CloudCafe dashboard</h1><span id="status">loading…</span></header>
<form id="login" hidden>
  <label for="token">An admin bearer token (<code>cloudcafe token issue --role admin --sub you</code>)</label>
  <input id="token" type="password" autocomplete="off" spellcheck="false">
  <button type="submit">Show the dashboard</button>
  <p>Or open <code>/admin/dashboard#token=&lt;token&gt;</code>: the part after <code>#</code> never leaves the browser.</p>
</form>
<pre id="errors" hidden></pre>
<main id="widgets"></main>
<script nonce="{{NONCE}}">
"use strict";
(function () {
  var COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
  var SVG = "http://www.w3.org/2000/svg";
  var KEY = "cloudcafe-admin-token";
  var W = 600, H = 200, LEFT = 52, RIGHT = 10, TOP = 8, BOTTOM = 22;

  // Every script error and console.error, counted on the body and listed on the page.
  var caught = [];
  function caughtError(message) {
    caught.push(String(message));
    document.body.setAttribute("data-errors", String(caught.length));
    var box = document.getElementById("errors");
    box.hidden = false;
    box.textContent = caught.join("\n");
  }
  window.addEventListener("error", function (e) { caughtError("error: " + e.message); });
  window.addEventListener("unhandledrejection", function (e) {
    caughtError("unhandled rejection: " + (e.reason && e.reason.message ? e.reason.message : e.reason));
  });
  var consoleError = console.error.bind(console);
  console.error = function () {
    caughtError(Array.prototype.join.call(arguments, " "));
    consoleError.apply(null, arguments);
  };

  var memory = null;
  function stored() {
    try { return window.sessionStorage.getItem(KEY); } catch (e) { return memory; }
  }
  function store(token) {
    memory = token;
    try {
      if (token === null) window.sessionStorage.removeItem(KEY); else window.sessionStorage.setItem(KEY, token);
    } catch (e) { /* storage refused: the token lives in this page only */ }
  }
  // `#token=...` becomes the tab's token, and leaves the address bar (and screenshots).
  function tokenFromFragment() {
    var match = /(?:^#|&)token=([^&]*)/.exec(window.location.hash);
    if (match) {
      store(decodeURIComponent(match[1]));
      window.history.replaceState(null, "", window.location.pathname + window.location.search);
    }
  }

  function status(text, bad) {
    var el = document.getElementById("status");
    el.textContent = text;
    el.className = bad ? "bad" : "";
  }
  function askForToken(why) {
    status(why, true);
    var form = document.getElementById("login");
    form.hidden = false;
    document.getElementById("token").focus();
  }
  document.getElementById("login").addEventListener("submit", function (e) {
    e.preventDefault();
    var token = document.getElementById("token").value.trim();
    if (!token) return;
    store(token);
    document.getElementById("login").hidden = true;
    refresh();
  });

  function el(tag, attrs, text) {
    var node = tag === "svg" || /^(g|line|polyline|circle|text|rect)$/.test(tag)
      ? document.createElementNS(SVG, tag) : document.createElement(tag);
    for (var k in attrs) node.setAttribute(k, String(attrs[k]));
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function number(v) {
    if (!isFinite(v)) return String(v);
    var a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toFixed(a >= 1e7 ? 0 : 1) + "M";
    if (a >= 1e4) return (v / 1e3).toFixed(a >= 1e5 ? 0 : 1) + "k";
    if (a >= 100 || v === 0) return v.toFixed(0);
    if (a >= 1) return v.toFixed(a >= 10 ? 1 : 2);
    return v.toPrecision(2);
  }
  function clock(ms) {
    var d = new Date(ms);
    return [d.getHours(), d.getMinutes(), d.getSeconds()].map(function (n) { return n < 10 ? "0" + n : n; }).join(":");
  }
  function niceStep(span) {
    var raw = span / 4, magnitude = Math.pow(10, Math.floor(Math.log10(raw))), f = raw / magnitude;
    return magnitude * (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10);
  }

  // A time series: the lines over [t0, t1], broken where a sample is missing. Returns what it drew.
  function plot(widget, t0, t1, gapMs) {
    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": widget.title });
    var local = widget.lines.filter(function (l) { return !l.aws_only; });
    var values = [];
    local.forEach(function (l) { l.points.forEach(function (p) { values.push(p[1]); }); });
    if (values.length === 0) {
      var note = local.length === 0 ? "AWS metrics: in CloudWatch only" : "no data on this node yet";
      svg.appendChild(el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", "class": "note" }, note));
      return { svg: svg, shapes: 0 };
    }
    var lo = Math.min(0, Math.min.apply(null, values)), hi = Math.max.apply(null, values);
    if (hi <= lo) hi = lo + 1;
    var step = niceStep(hi - lo);
    lo = Math.floor(lo / step) * step;
    hi = Math.ceil(hi / step) * step;
    var x = function (t) { return LEFT + (t - t0) / Math.max(1, t1 - t0) * (W - LEFT - RIGHT); };
    var y = function (v) { return TOP + (hi - v) / (hi - lo) * (H - TOP - BOTTOM); };
    for (var v = lo; v <= hi + step / 2; v += step) {
      svg.appendChild(el("line", { x1: LEFT, x2: W - RIGHT, y1: y(v), y2: y(v), "class": "grid" }));
      svg.appendChild(el("text", { x: LEFT - 6, y: y(v) + 4, "text-anchor": "end" }, number(v)));
    }
    [t0, (t0 + t1) / 2, t1].forEach(function (t, i) {
      var anchor = ["start", "middle", "end"][i];
      svg.appendChild(el("text", { x: x(t), y: H - 6, "text-anchor": anchor }, clock(t)));
    });
    var shapes = 0;
    widget.lines.forEach(function (line, i) {
      if (line.aws_only || line.points.length === 0) return;
      var color = COLORS[i % COLORS.length];
      var runs = [[]];
      line.points.forEach(function (p, j) {
        if (j > 0 && p[0] - line.points[j - 1][0] > gapMs) runs.push([]);
        runs[runs.length - 1].push(p);
      });
      runs.forEach(function (run) {
        if (run.length === 1) {
          svg.appendChild(el("circle", { cx: x(run[0][0]), cy: y(run[0][1]), r: 2.5, fill: color }));
        } else {
          var pts = run.map(function (p) { return x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1); }).join(" ");
          svg.appendChild(el("polyline", { points: pts, fill: "none", stroke: color, "stroke-width": 1.6, "stroke-linejoin": "round" }));
        }
        shapes += 1;
      });
    });
    return { svg: svg, shapes: shapes };
  }

  // A single-value widget: each node line's latest value.
  function figures(widget) {
    var box = el("div", { "class": "figures" });
    var shapes = 0;
    widget.lines.forEach(function (line) {
      if (line.aws_only) return;
      var last = line.points[line.points.length - 1];
      var figure = el("div", { "class": "figure" });
      figure.appendChild(el("div", { "class": "value" }, last ? number(last[1]) : "–"));
      figure.appendChild(el("div", { "class": "label" }, line.label));
      box.appendChild(figure);
      if (last) shapes += 1;
    });
    if (box.childNodes.length === 0) box.appendChild(el("div", { "class": "label" }, "AWS metrics: in CloudWatch only"));
    return { svg: box, shapes: shapes };
  }

  function legend(widget) {
    var ul = el("ul", { "class": "legend" });
    widget.lines.forEach(function (line, i) {
      var li = el("li", { title: line.metric });
      if (line.aws_only) {
        li.className = "aws";
        li.appendChild(el("span", {}, line.label + " — AWS metric: in CloudWatch only"));
      } else if (line.points.length === 0) {
        li.className = "empty";
        li.appendChild(el("span", { "class": "swatch c" + (i % COLORS.length) }));
        li.appendChild(el("span", {}, line.label + " — no data on this node yet"));
      } else {
        li.appendChild(el("span", { "class": "swatch c" + (i % COLORS.length) }));
        li.appendChild(el("span", {}, line.label));
        li.appendChild(el("span", { "class": "last" }, number(line.points[line.points.length - 1][1])));
      }
      ul.appendChild(li);
    });
    return ul;
  }

  function render(data) {
    document.getElementById("title").textContent = data.title;
    document.title = data.title;
    var t0 = Infinity, t1 = -Infinity;
    data.widgets.forEach(function (w) {
      w.lines.forEach(function (l) {
        l.points.forEach(function (p) { t0 = Math.min(t0, p[0]); t1 = Math.max(t1, p[0]); });
      });
    });
    var sampleMs = (data.sample_seconds || 5) * 1000;
    if (!isFinite(t0)) { t1 = Date.now(); t0 = t1 - sampleMs; }
    if (t1 - t0 < sampleMs) t0 = t1 - sampleMs;
    var main = document.getElementById("widgets");
    var sections = data.widgets.map(function (w) {
      var section = el("section", { "class": "widget", "data-widget": w.title });
      var h2 = el("h2", {}, w.title);
      h2.appendChild(el("span", { "class": "unit" }, w.unit));
      section.appendChild(h2);
      var drawn = w.view === "singleValue" ? figures(w) : plot(w, t0, t1, sampleMs * 2.5);
      section.appendChild(drawn.svg);
      section.appendChild(legend(w));
      var local = w.lines.filter(function (l) { return !l.aws_only; });
      var points = local.reduce(function (n, l) { return n + l.points.length; }, 0);
      section.setAttribute("data-lines", String(w.lines.length));
      section.setAttribute("data-node-lines", String(local.length));
      section.setAttribute("data-points", String(points));
      section.setAttribute("data-shapes", String(drawn.shapes));
      return section;
    });
    main.replaceChildren.apply(main, sections);
    var refreshes = Number(document.body.getAttribute("data-refreshes")) + 1;
    document.body.setAttribute("data-refreshes", String(refreshes));
    document.body.setAttribute("data-widgets", String(sections.length));
    var every = data.sample_seconds ? number(data.sample_seconds) + " s" : "–";
    status(data.environment + " · " + data.samples + " of " + data.capacity + " samples, one every " + every +
      (data.missed_samples ? " · " + data.missed_samples + " missed" : "") + " · updated " + clock(Date.now()), false);
  }

  var timer = null;
  var delayMs = 5000;
  function schedule() {
    if (timer !== null) clearTimeout(timer);
    timer = setTimeout(refresh, delayMs);
  }
  function refresh() {
    var token = stored();
    if (!token) { askForToken("an admin token is needed"); return; }
    fetch("/admin/dashboard/data", { headers: { "Authorization": "Bearer " + token }, cache: "no-store" })
      .then(function (res) {
        if (res.status === 401) {
          store(null);
          askForToken("the node refused this token");
          return null;
        }
        if (!res.ok) throw new Error("the node answered " + res.status);
        return res.json();
      })
      .then(function (data) {
        if (data === null) return;
        delayMs = Math.min(10000, Math.max(1000, (data.sample_seconds || 5) * 1000));
        render(data);
        schedule();
      }, function (e) {
        // The node is down or busy: say so and try again; the page itself did nothing wrong.
        status("no answer from the node (" + e.message + "), retrying", true);
        schedule();
      });
  }

  tokenFromFragment();
  refresh();
})();
</script>
</body>
</html>
"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_holds_no_data_and_runs_only_its_own_script() {
        for external in ["src=\"http", "href=\"http", "@import", "url("] {
            assert!(!PAGE.contains(external), "the page loads something: {external}");
        }
        assert_eq!(PAGE.matches("nonce=\"{{NONCE}}\"").count(), 2, "one style, one script, both with the nonce");
        assert_eq!(PAGE.matches("<script").count(), 1);
        for widget in &overview().widgets {
            assert!(!PAGE.contains(&widget.title), "the shell names no widget: {}", widget.title);
        }
    }
}
