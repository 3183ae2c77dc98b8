//! Samples as CloudWatch Embedded Metric Format (EMF) documents: one JSON object per line, which the
//! CloudWatch agent or the ECS `awslogs` driver turns into metrics without an API call from the node.
//!
//! One document per namespace and combination of dimension values: its root holds the dimension
//! values and one member per metric, and its `_aws.CloudWatchMetrics` directive names them (at most
//! [`MAX_METRICS_PER_DIRECTIVE`] per directive; more make more documents). Every document's
//! dimension set starts with `Environment`. A counter's member is its increase over the interval, a
//! gauge's its value, a histogram's `{"Values", "Counts", "Count", "Sum", "Min", "Max"}` (at most
//! [`MAX_VALUES`] values; neighbours merged beyond). Values CloudWatch refuses (NaN, ±∞) and empty
//! histograms are left out.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::UNIX_EPOCH;

use events::metric::ENVIRONMENT_DIMENSION;
use serde_json::{json, Map, Value as Json};

use super::sample::{Sample, Value};

/// The EMF specification's limit of metrics per directive.
pub const MAX_METRICS_PER_DIRECTIVE: usize = 100;
/// The EMF specification's limit of values per metric.
pub const MAX_VALUES: usize = 100;

/// Dimension names and values, `Environment` first.
type Dimensions = Vec<(&'static str, String)>;
/// A metric's name, unit and value in a document.
type Member = (&'static str, &'static str, Json);

/// The EMF documents of a sample, for the deployment `environment`.
pub fn documents(sample: &Sample, environment: &str) -> Vec<Json> {
    let timestamp = sample.at.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
    let mut groups: BTreeMap<(&str, Dimensions), Vec<Member>> = BTreeMap::new();
    for series in &sample.series {
        let Some(value) = member(&series.value) else { continue };
        let mut dimensions = vec![(ENVIRONMENT_DIMENSION, environment.to_owned())];
        dimensions.extend(series.dimensions.iter().map(|(d, v)| (*d, v.clone())));
        groups.entry((series.metric.namespace, dimensions)).or_default().push((
            series.metric.cloudwatch_name,
            series.metric.unit.cloudwatch(),
            value,
        ));
    }
    let mut out = Vec::new();
    for ((namespace, dimensions), metrics) in groups {
        for chunk in metrics.chunks(MAX_METRICS_PER_DIRECTIVE) {
            let mut root = Map::new();
            for (name, value) in &dimensions {
                // An empty dimension value is refused by CloudWatch: name the absence instead.
                let value = if value.is_empty() { "none" } else { value.as_str() };
                root.insert((*name).to_owned(), Json::String(value.to_owned()));
            }
            let directive_metrics: Vec<Json> =
                chunk.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit})).collect();
            for (name, _, value) in chunk {
                root.insert((*name).to_owned(), value.clone());
            }
            let names: Vec<&str> = dimensions.iter().map(|(d, _)| *d).collect();
            root.insert(
                "_aws".to_owned(),
                json!({
                    "Timestamp": timestamp,
                    "CloudWatchMetrics": [{
                        "Namespace": namespace,
                        "Dimensions": [names],
                        "Metrics": directive_metrics,
                    }],
                }),
            );
            out.push(Json::Object(root));
        }
    }
    out
}

/// A series' value as an EMF member, or `None` when there is nothing CloudWatch would take.
fn member(value: &Value) -> Option<Json> {
    match value {
        Value::Count(v) | Value::Gauge(v) => v.is_finite().then(|| json!(v)),
        Value::Distribution(d) => {
            let d = d.coarsened(MAX_VALUES);
            if d.count() == 0 || d.values.iter().any(|v| !v.is_finite()) {
                return None;
            }
            Some(json!({
                "Values": d.values,
                "Counts": d.counts,
                "Count": d.count(),
                "Sum": d.sum(),
                "Min": d.min(),
                "Max": d.max(),
            }))
        }
    }
}

/// Writes each document as one line (one `write` per line, so lines from several writers do not
/// interleave) to stdout or a file.
pub struct EmfWriter {
    out: Box<dyn Write + Send>,
}

impl EmfWriter {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        EmfWriter { out }
    }

    /// Writes the sample's documents; answers how many metric values were written.
    pub fn write(&mut self, sample: &Sample, environment: &str) -> std::io::Result<usize> {
        let mut written = 0;
        for document in documents(sample, environment) {
            written += document["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().map_or(0, Vec::len);
            let mut line = serde_json::to_vec(&document).map_err(std::io::Error::other)?;
            line.push(b'\n');
            self.out.write_all(&line)?;
        }
        self.out.flush()?;
        Ok(written)
    }
}

/// Writes the ticker's samples as EMF lines every `interval` until `stop` turns true.
pub async fn run(
    mut writer: EmfWriter,
    environment: String,
    interval: std::time::Duration,
    samples: tokio::sync::broadcast::Receiver<std::sync::Arc<Sample>>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    use events::metric;
    metric::EXPORT_DATUMS.register(&[("outcome", "sent")]);
    metric::EXPORT_DATUMS.register(&[("outcome", "dropped")]);
    super::sample::each_interval(samples, interval, stop, |sample| match writer.write(&sample, &environment) {
        Ok(n) => metric::EXPORT_DATUMS.counter(&[("outcome", "sent")]).increment(n as u64),
        Err(e) => {
            tracing::warn!(error = %e, "EMF lines not written; dropped");
            metric::EXPORT_DATUMS.counter(&[("outcome", "dropped")]).increment(1);
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudwatch::sample::{Distribution, Series};
    use events::metric;
    use std::time::Duration;

    fn sample(series: Vec<Series>) -> Sample {
        Sample { at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123), interval: Duration::from_secs(60), series }
    }

    #[test]
    fn a_document_names_its_dimensions_and_metrics_and_holds_their_values() {
        let s = sample(vec![
            Series {
                metric: &metric::COMMANDS,
                dimensions: vec![("Aggregate", "order".into()), ("Outcome", "ok".into())],
                value: Value::Count(12.0),
            },
            Series {
                metric: &metric::COMMAND_DURATION,
                dimensions: vec![("Aggregate", "order".into())],
                value: Value::Distribution(Distribution { values: vec![1.5, 3.0], counts: vec![10, 2] }),
            },
            Series {
                metric: &metric::FOLLOWER_LAG_SECONDS,
                dimensions: vec![("Follower", "x".into())],
                value: Value::Gauge(f64::INFINITY),
            },
        ]);
        let docs = documents(&s, "prod");
        assert_eq!(docs.len(), 2, "{docs:#?}");
        let commands = docs.iter().find(|d| d.get("Commands").is_some()).unwrap();
        assert_eq!(commands["Commands"], json!(12.0));
        assert_eq!(commands["Environment"], "prod");
        assert_eq!(commands["Outcome"], "ok");
        assert_eq!(commands["_aws"]["Timestamp"], json!(1_700_000_000_123u64));
        let directive = &commands["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "CloudCafe/Actors");
        assert_eq!(directive["Dimensions"], json!([["Environment", "Aggregate", "Outcome"]]));
        assert_eq!(directive["Metrics"], json!([{"Name": "Commands", "Unit": "Count"}]));
        let latency = docs.iter().find(|d| d.get("CommandDuration").is_some()).unwrap();
        assert_eq!(latency["CommandDuration"]["Count"], json!(12));
        assert_eq!(latency["CommandDuration"]["Sum"], json!(21.0));
        assert_eq!(latency["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"], "Milliseconds");
        assert!(docs.iter().all(|d| d.get("LagSeconds").is_none()), "an infinite gauge is left out");
    }

    #[test]
    fn every_directive_stays_within_the_formats_limits_for_the_whole_catalog() {
        let wide = Distribution { values: (1..=400).map(f64::from).collect(), counts: vec![1; 400] };
        let series: Vec<Series> = metric::CATALOG
            .iter()
            .map(|m| Series {
                metric: m,
                dimensions: m.dimensions.iter().map(|(_, d)| (*d, "same".to_owned())).collect(),
                value: if m.kind == metric::Kind::Histogram {
                    Value::Distribution(wide.clone())
                } else {
                    Value::Count(1.0)
                },
            })
            .collect();
        let docs = documents(&sample(series), "prod");
        for d in &docs {
            let metrics = d["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap();
            assert!(metrics.len() <= MAX_METRICS_PER_DIRECTIVE);
            for m in metrics {
                let member = &d[m["Name"].as_str().unwrap()];
                if let Some(values) = member.get("Values") {
                    assert!(values.as_array().unwrap().len() <= MAX_VALUES);
                    assert_eq!(member["Count"], json!(400));
                }
            }
        }
        let named: usize =
            docs.iter().map(|d| d["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap().len()).sum();
        assert_eq!(named, metric::CATALOG.len(), "every metric in one document");
    }
}
