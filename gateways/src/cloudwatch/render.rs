//! Dashboards and alarms as the JSON CloudWatch takes: a dashboard body per dashboard
//! (`PutDashboard`'s `DashboardBody`, the documented structure: `widgets` of type `metric` whose
//! `properties.metrics` are `[namespace, name, dimension, value, …, {options}]` arrays or
//! `[{"expression": …, "id": …}]` entries), and the alarms as `PutMetricAlarm` /
//! `PutCompositeAlarm` inputs with the API's field names, so that Terraform reads them as they are
//! (`jsondecode(file("deploy/cloudwatch/alarms.json"))`).
//!
//! How a query becomes CloudWatch's:
//! - Every custom metric is published with the `Environment` dimension besides the catalog's own
//!   dimensions ([`ENVIRONMENT_DIMENSION`]); a query is rendered with `Environment` = the deployment's.
//! - A query that names every dimension of its metric is a plain metric (a `metrics` array entry; in
//!   an alarm `Namespace`/`MetricName`/`Dimensions` or a `MetricStat`).
//! - A query that leaves dimensions open must combine the metric's series, which CloudWatch only
//!   does in an expression. On a dashboard: `SUM(SEARCH('{ns,dims} MetricName="…" Dim="v"', 'Sum',
//!   60))` (`MAX` for maxima, …; a percentile cannot be combined, so it is the `SEARCH` alone, one line
//!   per series). In an alarm, where `SEARCH` is refused: a Metrics Insights query, `SELECT
//!   SUM("Requests") FROM SCHEMA("CloudCafe/Gateway", Environment, Route, StatusClass) WHERE …`
//!   (a percentile over open dimensions is an error there).
//! - A rate per second is the period's sum divided by `PERIOD(m)` (by the period for a `SEARCH`).
//!
//! Output is deterministic: keys sorted at every level, two-space indentation, a trailing newline.

use std::path::{Path, PathBuf};

use events::metric::ENVIRONMENT_DIMENSION;
use serde_json::{json, Map, Value};

use super::alarms::{self, Alarm, CompositeAlarm, Input, Signal};
use super::dashboard::PERIOD_SECS;
use super::dashboard::{self, Dashboard, Deployment, ExternalQuery, LineSeries, MetricQuery, Stat, View, Widget};

/// Where the rendering or writing failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{context}: {metric} has no dimension {dimension}")]
    UnknownDimension { context: String, metric: String, dimension: String },
    #[error("{context}: the {stat} of {metric} cannot be combined over the dimensions left open ({open})")]
    Uncombinable { context: String, metric: String, stat: &'static str, open: String },
    #[error("{context}: a widget needs at least one line")]
    EmptyWidget { context: String },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The file a dashboard is written to, under the output directory.
pub fn dashboard_file(dashboard: &Dashboard) -> PathBuf {
    Path::new("dashboards").join(format!("{}.json", dashboard.name))
}

/// The alarms' file, under the output directory.
pub const ALARMS_FILE: &str = "alarms.json";
/// The composite alarms' file, under the output directory.
pub const COMPOSITE_ALARMS_FILE: &str = "composite-alarms.json";

/// Writes every dashboard body to `dashboards/<name>.json` and the alarms to `alarms.json` and
/// `composite-alarms.json` under `out_dir`, and removes dashboard files no dashboard has any more.
/// Returns the files written, relative paths joined to `out_dir`.
pub fn write_all(d: &Deployment, out_dir: &Path) -> Result<Vec<PathBuf>, RenderError> {
    let files = render_all(d)?;
    let boards = out_dir.join("dashboards");
    std::fs::create_dir_all(&boards).map_err(|source| RenderError::Write { path: boards.clone(), source })?;
    let mut written = Vec::new();
    for (relative, text) in &files {
        let path = out_dir.join(relative);
        std::fs::write(&path, text).map_err(|source| RenderError::Write { path: path.clone(), source })?;
        written.push(path);
    }
    let stale = std::fs::read_dir(&boards).map_err(|source| RenderError::Write { path: boards.clone(), source })?;
    for entry in stale.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "json") && !written.contains(&path) {
            std::fs::remove_file(&path).map_err(|source| RenderError::Write { path: path.clone(), source })?;
        }
    }
    Ok(written)
}

/// Every file of [`write_all`] as (path relative to the output directory, text), in a fixed order.
pub fn render_all(d: &Deployment) -> Result<Vec<(PathBuf, String)>, RenderError> {
    let mut files = Vec::new();
    for dashboard in dashboard::all(d) {
        files.push((dashboard_file(&dashboard), to_text(&dashboard_body(d, &dashboard)?)));
    }
    files.push((PathBuf::from(ALARMS_FILE), to_text(&Value::Array(alarm_inputs(d)?))));
    files.push((PathBuf::from(COMPOSITE_ALARMS_FILE), to_text(&Value::Array(composite_inputs(d)))));
    Ok(files)
}

/// Pretty JSON with sorted keys and a trailing newline.
pub fn to_text(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(&sorted(value.clone())).expect("a JSON value always serializes");
    text.push('\n');
    text
}

/// The value with every object's keys in order, whatever order `serde_json::Map` keeps.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect::<Map<_, _>>())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

// ---- Metrics as CloudWatch selects them ----

/// A metric, its full dimension set, and what a query pins of it.
struct Selection<'a> {
    namespace: &'static str,
    name: &'static str,
    /// Every dimension the metric is published with, `Environment` first for ours.
    schema: Vec<&'static str>,
    /// The dimensions a query names, in schema order.
    pinned: Vec<(&'static str, String)>,
    /// A dimension that may take any of these values.
    any_of: Option<(&'static str, &'a [String])>,
    stat: Stat,
}

impl<'a> Selection<'a> {
    fn custom(q: &MetricQuery, d: &Deployment, context: &str) -> Result<Self, RenderError> {
        let mut named = vec![(ENVIRONMENT_DIMENSION, d.environment.clone())];
        named.extend(q.dimensions.iter().filter(|(n, _)| *n != ENVIRONMENT_DIMENSION).cloned());
        let mut schema = vec![ENVIRONMENT_DIMENSION];
        schema.extend(q.metric.dimensions.iter().map(|(_, dimension)| *dimension));
        Selection::new(q.metric.namespace, q.metric.cloudwatch_name, schema, named, q.stat, context)
    }

    fn aws(q: &ExternalQuery, context: &str) -> Result<Self, RenderError> {
        let schema = q.metric.dimensions.to_vec();
        Selection::new(q.metric.namespace, q.metric.name, schema, q.dimensions.clone(), q.stat, context)
    }

    fn input(input: &'a Input, d: &Deployment, context: &str) -> Result<Self, RenderError> {
        match input {
            Input::Metric(q) => Selection::custom(q, d, context),
            Input::External(q) => Selection::aws(q, context),
            Input::ExternalAnyOf { query, dimension, values } => {
                let mut s = Selection::aws(query, context)?;
                s.check(dimension, context)?;
                s.any_of = Some((dimension, values.as_slice()));
                Ok(s)
            }
        }
    }

    fn new(
        namespace: &'static str,
        name: &'static str,
        schema: Vec<&'static str>,
        named: Vec<(&'static str, String)>,
        stat: Stat,
        context: &str,
    ) -> Result<Self, RenderError> {
        let mut s = Selection { namespace, name, schema, pinned: Vec::new(), any_of: None, stat };
        for (dimension, _) in &named {
            s.check(dimension, context)?;
        }
        s.pinned = s
            .schema
            .iter()
            .filter_map(|dim| named.iter().find(|(n, _)| n == dim).map(|(n, v)| (*n, v.clone())))
            .collect();
        Ok(s)
    }

    fn check(&self, dimension: &str, context: &str) -> Result<(), RenderError> {
        if self.schema.contains(&dimension) {
            Ok(())
        } else {
            Err(RenderError::UnknownDimension {
                context: context.to_owned(),
                metric: format!("{} {}", self.namespace, self.name),
                dimension: dimension.to_owned(),
            })
        }
    }

    /// The dimensions neither pinned nor restricted.
    fn open(&self) -> Vec<&'static str> {
        self.schema
            .iter()
            .copied()
            .filter(|dim| !self.pinned.iter().any(|(n, _)| n == dim) && self.any_of.is_none_or(|(a, _)| a != *dim))
            .collect()
    }

    /// Whether the selection is one metric (every dimension has one value).
    fn is_single(&self) -> bool {
        self.open().is_empty() && self.any_of.is_none()
    }

    fn dimensions_api(&self) -> Value {
        Value::Array(self.pinned.iter().map(|(n, v)| json!({"Name": n, "Value": v})).collect())
    }

    /// `[namespace, name, dim, value, …]`, for a dashboard's `metrics` array.
    fn dashboard_array(&self) -> Vec<Value> {
        let mut out = vec![json!(self.namespace), json!(self.name)];
        for (n, v) in &self.pinned {
            out.push(json!(n));
            out.push(json!(v));
        }
        out
    }

    /// `SEARCH('{ns,dims} MetricName="…" Dim="v"', 'Stat', period)`.
    fn search(&self) -> String {
        let mut terms = vec![format!("MetricName=\"{}\"", self.name)];
        terms.extend(self.pinned.iter().map(|(n, v)| format!("{n}=\"{v}\"")));
        if let Some((dimension, values)) = self.any_of {
            let alternatives: Vec<String> = values.iter().map(|v| format!("{dimension}=\"{v}\"")).collect();
            terms.push(format!("({})", alternatives.join(" OR ")));
        }
        format!(
            "SEARCH('{{\"{}\",{}}} {}', '{}', {PERIOD_SECS})",
            self.namespace,
            self.schema.join(","),
            terms.join(" "),
            self.stat.cloudwatch()
        )
    }

    /// The series combined into one line on a dashboard (a percentile: one line per series).
    fn dashboard_expression(&self) -> String {
        match search_function(self.stat) {
            Some(f) => format!("{f}({})", self.search()),
            None => self.search(),
        }
    }

    /// The series combined by a Metrics Insights query, for an alarm.
    fn insights(&self, context: &str) -> Result<String, RenderError> {
        let function = insights_function(self.stat).ok_or_else(|| RenderError::Uncombinable {
            context: context.to_owned(),
            metric: format!("{} {}", self.namespace, self.name),
            stat: self.stat.cloudwatch(),
            open: self.open().join(", "),
        })?;
        let mut conditions: Vec<String> = self.pinned.iter().map(|(n, v)| format!("{n} = '{v}'")).collect();
        if let Some((dimension, values)) = self.any_of {
            let alternatives: Vec<String> = values.iter().map(|v| format!("{dimension} = '{v}'")).collect();
            conditions.push(format!("({})", alternatives.join(" OR ")));
        }
        let mut query = format!(
            "SELECT {function}(\"{}\") FROM SCHEMA(\"{}\", {})",
            self.name,
            self.namespace,
            self.schema.join(", ")
        );
        if !conditions.is_empty() {
            query.push_str(" WHERE ");
            query.push_str(&conditions.join(" AND "));
        }
        Ok(query)
    }
}

/// The metric-math function that combines the series a `SEARCH` returns under a statistic.
fn search_function(stat: Stat) -> Option<&'static str> {
    match stat {
        Stat::Sum | Stat::SampleCount => Some("SUM"),
        Stat::Average => Some("AVG"),
        Stat::Maximum => Some("MAX"),
        Stat::Minimum => Some("MIN"),
        Stat::P50 | Stat::P99 => None,
    }
}

/// The Metrics Insights function of a statistic.
fn insights_function(stat: Stat) -> Option<&'static str> {
    match stat {
        Stat::Sum => Some("SUM"),
        Stat::SampleCount => Some("COUNT"),
        Stat::Average => Some("AVG"),
        Stat::Maximum => Some("MAX"),
        Stat::Minimum => Some("MIN"),
        Stat::P50 | Stat::P99 => None,
    }
}

// ---- Dashboards ----

/// The widgets' size on CloudWatch's 24-column grid: two per row.
const WIDGET_WIDTH: u32 = 12;
const WIDGET_HEIGHT: u32 = 6;
const HEADER_HEIGHT: u32 = 2;

/// A dashboard's `DashboardBody`.
pub fn dashboard_body(d: &Deployment, dashboard: &Dashboard) -> Result<Value, RenderError> {
    let mut widgets = vec![json!({
        "type": "text",
        "x": 0,
        "y": 0,
        "width": 2 * WIDGET_WIDTH,
        "height": HEADER_HEIGHT,
        "properties": {
            "markdown": format!(
                "# {} ({})\nGenerated from CloudCafe's metric catalog by `cloudcafe dashboard render`: edit the code, not this dashboard.",
                dashboard.title, d.environment
            ),
        },
    })];
    for (i, widget) in dashboard.widgets.iter().enumerate() {
        let (column, row) = (i as u32 % 2, i as u32 / 2);
        let context = format!("{} / {}", dashboard.name, widget.title);
        widgets.push(json!({
            "type": "metric",
            "x": column * WIDGET_WIDTH,
            "y": HEADER_HEIGHT + row * WIDGET_HEIGHT,
            "width": WIDGET_WIDTH,
            "height": WIDGET_HEIGHT,
            "properties": widget_properties(d, widget, &context)?,
        }));
    }
    Ok(json!({"start": "-PT3H", "periodOverride": "inherit", "widgets": widgets}))
}

fn widget_properties(d: &Deployment, widget: &Widget, context: &str) -> Result<Value, RenderError> {
    if widget.lines.is_empty() {
        return Err(RenderError::EmptyWidget { context: context.to_owned() });
    }
    let mut metrics = Vec::new();
    for (i, line) in widget.lines.iter().enumerate() {
        let id = format!("m{i}");
        let context = format!("{context} / {}", line.label);
        match &line.series {
            LineSeries::Metric(q) => metrics.push(plot(&Selection::custom(q, d, &context)?, &id, Some(&line.label))),
            LineSeries::External(q) => metrics.push(plot(&Selection::aws(q, &context)?, &id, Some(&line.label))),
            LineSeries::PerSecond(q) => {
                let s = Selection::custom(q, d, &context)?;
                let input = format!("{id}sum");
                let expression = if s.is_single() {
                    metrics.push(plot(&s, &input, None));
                    format!("{input} / PERIOD({input})")
                } else {
                    format!("{} / {PERIOD_SECS}", s.dashboard_expression())
                };
                metrics.push(json!([{"expression": expression, "id": id, "label": line.label}]));
            }
            LineSeries::Percent { part, whole } => {
                let mut sums = Vec::new();
                for (prefix, queries) in [("part", part), ("whole", whole)] {
                    let mut ids = Vec::new();
                    for (k, q) in queries.iter().enumerate() {
                        let input = format!("{id}{prefix}{k}");
                        metrics.push(plot(&Selection::custom(q, d, &context)?, &input, None));
                        ids.push(input);
                    }
                    sums.push(ids.join(" + "));
                }
                let expression = format!("100 * ({}) / ({})", sums[0], sums[1]);
                metrics.push(json!([{"expression": expression, "id": id, "label": line.label}]));
            }
        }
    }
    let view = match widget.view {
        View::TimeSeries => "timeSeries",
        View::SingleValue => "singleValue",
    };
    Ok(json!({
        "title": widget.title,
        "region": d.region,
        "view": view,
        "stacked": false,
        "period": PERIOD_SECS,
        "stat": "Average",
        "metrics": metrics,
        "yAxis": {"left": {"label": widget.unit_label, "showUnits": false}},
        "legend": {"position": "bottom"},
    }))
}

/// One entry of a `metrics` array: the metric itself when it is one, else the expression combining
/// its series. `label: None` is an input of an expression, not drawn.
fn plot(s: &Selection<'_>, id: &str, label: Option<&str>) -> Value {
    let mut options = Map::new();
    options.insert("id".into(), json!(id));
    match label {
        Some(label) => options.insert("label".into(), json!(label)),
        None => options.insert("visible".into(), json!(false)),
    };
    if s.is_single() {
        options.insert("stat".into(), json!(s.stat.cloudwatch()));
        let mut entry = s.dashboard_array();
        entry.push(Value::Object(options));
        Value::Array(entry)
    } else {
        options.insert("expression".into(), json!(s.dashboard_expression()));
        json!([options])
    }
}

// ---- Alarms ----

/// Every metric alarm as a `PutMetricAlarm` input.
pub fn alarm_inputs(d: &Deployment) -> Result<Vec<Value>, RenderError> {
    alarms::alarms(d).iter().map(|a| alarm_input(d, a)).collect()
}

/// The composite alarm(s) as `PutCompositeAlarm` inputs.
pub fn composite_inputs(d: &Deployment) -> Vec<Value> {
    vec![composite_input(&alarms::composite(d, &alarms::alarms(d)))]
}

/// One alarm as a `PutMetricAlarm` input.
pub fn alarm_input(d: &Deployment, a: &Alarm) -> Result<Value, RenderError> {
    let mut out = Map::new();
    let mut put = |k: &str, v: Value| out.insert(k.to_owned(), v);
    put("AlarmName", json!(a.name));
    put("AlarmDescription", json!(a.description));
    put("ActionsEnabled", json!(true));
    put("AlarmActions", json!(a.actions));
    put("OKActions", json!(a.actions));
    put("ComparisonOperator", json!(a.comparison.cloudwatch()));
    put("EvaluationPeriods", json!(a.evaluation_periods));
    put("DatapointsToAlarm", json!(a.datapoints_to_alarm));
    put("Threshold", json!(a.threshold));
    put("TreatMissingData", json!(a.missing_data.cloudwatch()));
    match &a.signal {
        Signal::Single(input) => {
            let s = Selection::input(input, d, &a.name)?;
            if s.is_single() {
                put("Namespace", json!(s.namespace));
                put("MetricName", json!(s.name));
                put("Dimensions", s.dimensions_api());
                put("Period", json!(a.period_secs));
                match s.stat {
                    Stat::P50 | Stat::P99 => put("ExtendedStatistic", json!(s.stat.cloudwatch())),
                    _ => put("Statistic", json!(s.stat.cloudwatch())),
                };
            } else {
                let query = json!({
                    "Id": "q",
                    "Expression": s.insights(&a.name)?,
                    "Label": a.name,
                    "Period": a.period_secs,
                    "ReturnData": true,
                });
                put("Metrics", json!([query]));
            }
        }
        Signal::Math { inputs, expression, label } => {
            let mut metrics = Vec::new();
            for (id, input) in inputs {
                let s = Selection::input(input, d, &a.name)?;
                metrics.push(if s.is_single() {
                    json!({
                        "Id": id,
                        "MetricStat": {
                            "Metric": {"Namespace": s.namespace, "MetricName": s.name, "Dimensions": s.dimensions_api()},
                            "Period": a.period_secs,
                            "Stat": s.stat.cloudwatch(),
                        },
                        "ReturnData": false,
                    })
                } else {
                    json!({"Id": id, "Expression": s.insights(&a.name)?, "Period": a.period_secs, "ReturnData": false})
                });
            }
            metrics.push(json!({"Id": "signal", "Expression": expression, "Label": label, "ReturnData": true}));
            put("Metrics", Value::Array(metrics));
        }
    }
    Ok(Value::Object(out))
}

/// A composite alarm as a `PutCompositeAlarm` input.
pub fn composite_input(c: &CompositeAlarm) -> Value {
    json!({
        "AlarmName": c.name,
        "AlarmDescription": c.description,
        "AlarmRule": c.rule(),
        "ActionsEnabled": true,
        "AlarmActions": c.actions,
        "OKActions": c.actions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudwatch::dashboard::{external, query, Line};
    use events::metric;

    fn prod() -> Deployment {
        Deployment::for_environment("prod")
    }

    fn widget(lines: Vec<Line>) -> Widget {
        Widget { title: "t".into(), view: View::TimeSeries, lines, unit_label: "u".into() }
    }

    fn metrics_of(lines: Vec<Line>) -> Value {
        widget_properties(&prod(), &widget(lines), "test").unwrap()["metrics"].clone()
    }

    fn line(series: LineSeries) -> Line {
        Line { label: "l".into(), series }
    }

    #[test]
    fn a_fully_named_metric_is_a_plain_entry_with_the_environment() {
        let m = metrics_of(vec![line(LineSeries::Metric(query(
            &metric::COMMAND_DURATION,
            Stat::P99,
            &[("Aggregate", "order")],
        )))]);
        assert_eq!(
            m,
            json!([["CloudCafe/Actors", "CommandDuration", "Environment", "prod", "Aggregate", "order", {"id": "m0", "label": "l", "stat": "p99"}]])
        );
    }

    #[test]
    fn open_dimensions_are_combined_by_a_search() {
        let m =
            metrics_of(vec![line(LineSeries::Metric(query(&metric::COMMANDS, Stat::Sum, &[("Aggregate", "order")])))]);
        let expected = "SUM(SEARCH('{\"CloudCafe/Actors\",Environment,Aggregate,Outcome} MetricName=\"Commands\" \
                        Environment=\"prod\" Aggregate=\"order\"', 'Sum', 60))";
        assert_eq!(m, json!([[{"expression": expected, "id": "m0", "label": "l"}]]));
        // A percentile cannot be added up: one line per series.
        let m = metrics_of(vec![line(LineSeries::Metric(query(&metric::JOURNAL_APPEND_DURATION, Stat::P99, &[])))]);
        assert!(m[0][0]["expression"]
            .as_str()
            .unwrap()
            .starts_with("SEARCH('{\"CloudCafe/Journal\",Environment,Adapter}"));
        let m = metrics_of(vec![line(LineSeries::Metric(query(&metric::FOLLOWER_LAG_SECONDS, Stat::Maximum, &[])))]);
        assert!(m[0][0]["expression"].as_str().unwrap().starts_with("MAX(SEARCH("));
    }

    #[test]
    fn a_rate_divides_by_the_period() {
        let m = metrics_of(vec![line(LineSeries::PerSecond(query(&metric::CACHE_HITS, Stat::Sum, &[])))]);
        assert_eq!(
            m,
            json!([
                ["CloudCafe/Cache", "Hits", "Environment", "prod", {"id": "m0sum", "stat": "Sum", "visible": false}],
                [{"expression": "m0sum / PERIOD(m0sum)", "id": "m0", "label": "l"}]
            ])
        );
        let m = metrics_of(vec![line(LineSeries::PerSecond(query(&metric::HTTP_REQUESTS, Stat::Sum, &[])))]);
        assert!(m[0][0]["expression"].as_str().unwrap().ends_with(", 'Sum', 60)) / 60"), "{m}");
    }

    #[test]
    fn a_percentage_hides_its_inputs() {
        let m = metrics_of(vec![line(dashboard::cache_hit_rate_series())]);
        let m = m.as_array().unwrap();
        assert_eq!(m.len(), 4);
        for input in &m[..3] {
            assert_eq!(input.as_array().unwrap().last().unwrap()["visible"], json!(false));
        }
        assert_eq!(m[3][0]["expression"], json!("100 * (m0part0) / (m0whole0 + m0whole1)"));
    }

    #[test]
    fn a_dimension_the_metric_does_not_have_is_refused() {
        let l = line(LineSeries::Metric(query(&metric::COMMANDS, Stat::Sum, &[("Route", "/health")])));
        let err = widget_properties(&prod(), &widget(vec![l]), "w").unwrap_err();
        assert!(matches!(err, RenderError::UnknownDimension { ref dimension, .. } if dimension == "Route"), "{err}");
        let l = line(LineSeries::External(external(&metric::ALB_REQUESTS, Stat::Sum, &[("TableName", "x")])));
        assert!(widget_properties(&prod(), &widget(vec![l]), "w").is_err());
        assert!(matches!(widget_properties(&prod(), &widget(vec![]), "w"), Err(RenderError::EmptyWidget { .. })));
    }

    #[test]
    fn alarms_use_plain_metrics_math_and_insights_as_needed() {
        let d = prod();
        let inputs = alarm_inputs(&d).unwrap();
        let by_name =
            |what: &str| inputs.iter().find(|a| a["AlarmName"] == json!(format!("CloudCafe-prod-{what}"))).unwrap();
        let dlq = by_name("PaymentDlqNotEmpty");
        assert_eq!(dlq["Namespace"], json!("AWS/SQS"));
        assert_eq!(dlq["Dimensions"], json!([{"Name": "QueueName", "Value": d.payment_dlq}]));
        assert_eq!(dlq["Statistic"], json!("Maximum"));
        assert!(dlq.get("Metrics").is_none());
        let lag = by_name("ProjectionLag");
        assert_eq!(
            lag["Metrics"][0]["Expression"],
            json!("SELECT MAX(\"LagSeconds\") FROM SCHEMA(\"CloudCafe/Projections\", Environment, Follower) WHERE Environment = 'prod'")
        );
        let throttles = by_name("DynamoDbThrottles")["Metrics"][0]["Expression"].as_str().unwrap().to_owned();
        assert!(throttles.starts_with("SELECT SUM(\"ThrottledRequests\") FROM SCHEMA(\"AWS/DynamoDB\", TableName, Operation) WHERE (TableName = 'cloudcafe-active-orders-prod-g1' OR "), "{throttles}");
        let errors = by_name("ErrorRate")["Metrics"].as_array().unwrap().clone();
        assert_eq!(errors[0]["Expression"], json!("SELECT SUM(\"Requests\") FROM SCHEMA(\"CloudCafe/Gateway\", Environment, Route, StatusClass) WHERE Environment = 'prod' AND StatusClass = '5xx'"));
        assert_eq!(errors[2]["ReturnData"], json!(true));
        let cache = by_name("CacheHitRate")["Metrics"].as_array().unwrap().clone();
        assert_eq!(
            cache[0]["MetricStat"]["Metric"],
            json!({"Namespace": "CloudCafe/Cache", "MetricName": "Hits", "Dimensions": [{"Name": "Environment", "Value": "prod"}]})
        );
        for a in &inputs {
            assert_eq!(a["AlarmActions"], json!([d.alarm_topic_arn]));
            let returned = a
                .get("Metrics")
                .map_or(1, |m| m.as_array().unwrap().iter().filter(|q| q["ReturnData"] == json!(true)).count());
            assert_eq!(returned, 1, "{a}");
        }
    }

    #[test]
    fn a_percentile_over_open_dimensions_cannot_be_alarmed_on() {
        let d = prod();
        let mut a = alarms::alarms(&d).remove(0);
        a.signal = Signal::Single(Input::Metric(query(&metric::HTTP_REQUEST_DURATION, Stat::P99, &[])));
        assert!(matches!(alarm_input(&d, &a), Err(RenderError::Uncombinable { .. })));
        a.signal = Signal::Single(Input::Metric(query(&metric::ACTOR_ACTIVATION_DURATION, Stat::P99, &[])));
        assert_eq!(alarm_input(&d, &a).unwrap()["ExtendedStatistic"], json!("p99"));
    }

    #[test]
    fn text_is_sorted_pretty_and_ends_in_a_newline() {
        let text = to_text(&json!({"b": 1, "a": {"d": [1, {"z": 0, "y": 1}], "c": true}}));
        assert_eq!(
            text,
            "{\n  \"a\": {\n    \"c\": true,\n    \"d\": [\n      1,\n      {\n        \"y\": 1,\n        \"z\": 0\n      }\n    ]\n  },\n  \"b\": 1\n}\n"
        );
    }

    #[test]
    fn every_dashboard_renders_and_the_layout_does_not_overlap() {
        let d = prod();
        for dashboard in dashboard::all(&d) {
            let body = dashboard_body(&d, &dashboard).unwrap();
            let widgets = body["widgets"].as_array().unwrap();
            assert_eq!(widgets.len(), dashboard.widgets.len() + 1);
            let mut cells = std::collections::HashSet::new();
            for w in widgets {
                assert!(
                    cells.insert((w["x"].as_u64().unwrap(), w["y"].as_u64().unwrap())),
                    "{}: overlap",
                    dashboard.name
                );
                assert!(w["x"].as_u64().unwrap() + w["width"].as_u64().unwrap() <= 24);
            }
        }
    }
}
