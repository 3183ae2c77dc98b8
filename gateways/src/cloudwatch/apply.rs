//! Puts the rendered dashboards and alarms into CloudWatch (`PutDashboard`, `PutMetricAlarm`,
//! `PutCompositeAlarm`): exactly the JSON [`render`](super::render) writes, read field by field, so
//! what `cloudcafe dashboard apply` sets up is what Terraform would from `deploy/cloudwatch/`.
//! Metric alarms go first: a composite alarm may only name alarms that exist.

use aws_sdk_cloudwatch::config::http::HttpResponse;
use aws_sdk_cloudwatch::error::SdkError;
use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, Metric, MetricDataQuery, MetricStat, Statistic};
use aws_sdk_cloudwatch::Client;
use serde_json::Value;

use super::dashboard::{self, Deployment};
use super::render::{self, RenderError};

/// Why applying failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Render(#[from] RenderError),
    /// A rendered field the applier does not know: render and apply disagree.
    #[error("{context}: the field {field} is not one this applier sends")]
    UnknownField { context: String, field: String },
    #[error("{context}: {field} is not a {expected}")]
    BadField { context: String, field: String, expected: &'static str },
    #[error("{what} failed")]
    Call {
        what: String,
        /// The HTTP status of the answer, when there was one.
        status: Option<u16>,
        #[source]
        source: Box<aws_sdk_cloudwatch::Error>,
    },
}

/// What was put.
#[derive(Debug, Default)]
pub struct Applied {
    pub dashboards: Vec<String>,
    pub alarms: Vec<String>,
    pub composite_alarms: Vec<String>,
    /// What `PutDashboard` said about a body it accepted (dashboard name, message).
    pub warnings: Vec<(String, String)>,
}

/// Puts every dashboard, then every metric alarm, then the composite alarm(s) of `d`.
pub async fn apply(client: &Client, d: &Deployment) -> Result<Applied, ApplyError> {
    let mut applied = Applied::default();
    put_dashboards(client, d, &mut applied).await?;
    put_alarms(client, d, &mut applied).await?;
    put_composite_alarms(client, d, &mut applied).await?;
    Ok(applied)
}

/// Puts every dashboard of `d`.
pub async fn put_dashboards(client: &Client, d: &Deployment, applied: &mut Applied) -> Result<(), ApplyError> {
    for board in dashboard::all(d) {
        let body = render::to_text(&render::dashboard_body(d, &board)?);
        let out = client
            .put_dashboard()
            .dashboard_name(&board.name)
            .dashboard_body(body)
            .send()
            .await
            .map_err(|e| call(format!("PutDashboard {}", board.name), e))?;
        for m in out.dashboard_validation_messages() {
            applied.warnings.push((board.name.clone(), m.message().unwrap_or_default().to_owned()));
        }
        applied.dashboards.push(board.name);
    }
    Ok(())
}

/// Puts every metric alarm of `d`.
pub async fn put_alarms(client: &Client, d: &Deployment, applied: &mut Applied) -> Result<(), ApplyError> {
    for alarm in render::alarm_inputs(d)? {
        applied.alarms.push(put_metric_alarm(client, &alarm).await?);
    }
    Ok(())
}

/// Puts the composite alarm(s) of `d` (after the alarms they name).
pub async fn put_composite_alarms(client: &Client, d: &Deployment, applied: &mut Applied) -> Result<(), ApplyError> {
    for composite in render::composite_inputs(d) {
        applied.composite_alarms.push(put_composite_alarm(client, &composite).await?);
    }
    Ok(())
}

fn call<E>(what: String, e: SdkError<E, HttpResponse>) -> ApplyError
where
    aws_sdk_cloudwatch::Error: From<SdkError<E, HttpResponse>>,
{
    let status = e.raw_response().map(|r| r.status().as_u16());
    ApplyError::Call { what, status, source: Box::new(aws_sdk_cloudwatch::Error::from(e)) }
}

/// One `PutMetricAlarm` input, as rendered; returns the alarm's name.
pub async fn put_metric_alarm(client: &Client, input: &Value) -> Result<String, ApplyError> {
    let fields = Fields::of(input, "an alarm")?;
    let name = fields.str("AlarmName")?;
    let context = name.clone();
    let f = Fields { context: context.clone(), ..fields };
    let mut put = client.put_metric_alarm();
    for (key, value) in f.map {
        put = match key.as_str() {
            "AlarmName" => put.alarm_name(f.str(key)?),
            "AlarmDescription" => put.alarm_description(f.str(key)?),
            "ActionsEnabled" => put.actions_enabled(f.bool(key)?),
            "AlarmActions" => put.set_alarm_actions(Some(f.strings(key)?)),
            "OKActions" => put.set_ok_actions(Some(f.strings(key)?)),
            "ComparisonOperator" => put.comparison_operator(ComparisonOperator::from(f.str(key)?.as_str())),
            "EvaluationPeriods" => put.evaluation_periods(f.int(key)?),
            "DatapointsToAlarm" => put.datapoints_to_alarm(f.int(key)?),
            "Threshold" => put.threshold(f.float(key)?),
            "TreatMissingData" => put.treat_missing_data(f.str(key)?),
            "Namespace" => put.namespace(f.str(key)?),
            "MetricName" => put.metric_name(f.str(key)?),
            "Dimensions" => put.set_dimensions(Some(dimensions(value, &context)?)),
            "Period" => put.period(f.int(key)?),
            "Statistic" => put.statistic(Statistic::from(f.str(key)?.as_str())),
            "ExtendedStatistic" => put.extended_statistic(f.str(key)?),
            "Metrics" => {
                let queries = value.as_array().ok_or_else(|| bad(&context, key, "list"))?;
                put.set_metrics(Some(queries.iter().map(|q| metric_data_query(q, &context)).collect::<Result<_, _>>()?))
            }
            other => return Err(ApplyError::UnknownField { context, field: other.to_owned() }),
        };
    }
    put.send().await.map_err(|e| call(format!("PutMetricAlarm {name}"), e))?;
    Ok(name)
}

/// One `PutCompositeAlarm` input, as rendered; returns the alarm's name.
pub async fn put_composite_alarm(client: &Client, input: &Value) -> Result<String, ApplyError> {
    let fields = Fields::of(input, "a composite alarm")?;
    let name = fields.str("AlarmName")?;
    let f = Fields { context: name.clone(), ..fields };
    let mut put = client.put_composite_alarm();
    for key in f.map.keys() {
        put = match key.as_str() {
            "AlarmName" => put.alarm_name(f.str(key)?),
            "AlarmDescription" => put.alarm_description(f.str(key)?),
            "AlarmRule" => put.alarm_rule(f.str(key)?),
            "ActionsEnabled" => put.actions_enabled(f.bool(key)?),
            "AlarmActions" => put.set_alarm_actions(Some(f.strings(key)?)),
            "OKActions" => put.set_ok_actions(Some(f.strings(key)?)),
            other => return Err(ApplyError::UnknownField { context: name, field: other.to_owned() }),
        };
    }
    put.send().await.map_err(|e| call(format!("PutCompositeAlarm {name}"), e))?;
    Ok(name)
}

fn metric_data_query(q: &Value, context: &str) -> Result<MetricDataQuery, ApplyError> {
    let f = Fields::of(q, context)?;
    let mut b = MetricDataQuery::builder();
    for (key, value) in f.map {
        b = match key.as_str() {
            "Id" => b.id(f.str(key)?),
            "Expression" => b.expression(f.str(key)?),
            "Label" => b.label(f.str(key)?),
            "Period" => b.period(f.int(key)?),
            "ReturnData" => b.return_data(f.bool(key)?),
            "MetricStat" => b.metric_stat(metric_stat(value, context)?),
            other => return Err(ApplyError::UnknownField { context: context.to_owned(), field: other.to_owned() }),
        };
    }
    Ok(b.build())
}

fn metric_stat(v: &Value, context: &str) -> Result<MetricStat, ApplyError> {
    let f = Fields::of(v, context)?;
    let mut b = MetricStat::builder();
    for (key, value) in f.map {
        b = match key.as_str() {
            "Period" => b.period(f.int(key)?),
            "Stat" => b.stat(f.str(key)?),
            "Metric" => {
                let m = Fields::of(value, context)?;
                let mut metric = Metric::builder();
                for (key, value) in m.map {
                    metric = match key.as_str() {
                        "Namespace" => metric.namespace(m.str(key)?),
                        "MetricName" => metric.metric_name(m.str(key)?),
                        "Dimensions" => metric.set_dimensions(Some(dimensions(value, context)?)),
                        other => {
                            return Err(ApplyError::UnknownField {
                                context: context.to_owned(),
                                field: other.to_owned(),
                            })
                        }
                    };
                }
                b.metric(metric.build())
            }
            other => return Err(ApplyError::UnknownField { context: context.to_owned(), field: other.to_owned() }),
        };
    }
    Ok(b.build())
}

fn dimensions(v: &Value, context: &str) -> Result<Vec<Dimension>, ApplyError> {
    let list = v.as_array().ok_or_else(|| bad(context, "Dimensions", "list"))?;
    list.iter()
        .map(|d| {
            let f = Fields::of(d, context)?;
            Ok(Dimension::builder().name(f.str("Name")?).value(f.str("Value")?).build())
        })
        .collect()
}

fn bad(context: &str, field: &str, expected: &'static str) -> ApplyError {
    ApplyError::BadField { context: context.to_owned(), field: field.to_owned(), expected }
}

/// The fields of one rendered object, read with their types checked.
struct Fields<'a> {
    map: &'a serde_json::Map<String, Value>,
    context: String,
}

impl<'a> Fields<'a> {
    fn of(v: &'a Value, context: &str) -> Result<Self, ApplyError> {
        let map = v.as_object().ok_or_else(|| bad(context, "(itself)", "JSON object"))?;
        Ok(Fields { map, context: context.to_owned() })
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    fn str(&self, key: &str) -> Result<String, ApplyError> {
        self.get(key).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| bad(&self.context, key, "string"))
    }

    fn bool(&self, key: &str) -> Result<bool, ApplyError> {
        self.get(key).and_then(Value::as_bool).ok_or_else(|| bad(&self.context, key, "boolean"))
    }

    fn int(&self, key: &str) -> Result<i32, ApplyError> {
        self.get(key)
            .and_then(Value::as_i64)
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| bad(&self.context, key, "32-bit integer"))
    }

    fn float(&self, key: &str) -> Result<f64, ApplyError> {
        self.get(key).and_then(Value::as_f64).ok_or_else(|| bad(&self.context, key, "number"))
    }

    fn strings(&self, key: &str) -> Result<Vec<String>, ApplyError> {
        let list = self.get(key).and_then(Value::as_array).ok_or_else(|| bad(&self.context, key, "list"))?;
        list.iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| bad(&self.context, key, "list of strings")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client that is never called: building requests needs one, sending is not tested here.
    fn client() -> Client {
        let config = aws_sdk_cloudwatch::Config::builder()
            .behavior_version(aws_sdk_cloudwatch::config::BehaviorVersion::latest())
            .region(aws_sdk_cloudwatch::config::Region::new("us-east-1"))
            .build();
        Client::from_conf(config)
    }

    #[test]
    fn every_rendered_alarm_field_is_one_the_applier_reads() {
        let d = Deployment::for_environment("prod");
        for alarm in render::alarm_inputs(&d).unwrap() {
            let metrics = alarm.get("Metrics").and_then(Value::as_array).cloned().unwrap_or_default();
            for q in &metrics {
                metric_data_query(q, "test").unwrap();
            }
            let Some(dims) = alarm.get("Dimensions") else { continue };
            assert!(!dimensions(dims, "test").unwrap().is_empty());
        }
    }

    #[tokio::test]
    async fn a_field_the_applier_does_not_know_is_refused_before_any_call() {
        let mut alarm = render::alarm_inputs(&Deployment::for_environment("prod")).unwrap().remove(0);
        alarm.as_object_mut().unwrap().insert("Unit".into(), Value::from("Count"));
        let err = put_metric_alarm(&client(), &alarm).await.unwrap_err();
        assert!(matches!(err, ApplyError::UnknownField { ref field, .. } if field == "Unit"), "{err}");
        let mut composite = render::composite_inputs(&Deployment::for_environment("prod")).remove(0);
        composite.as_object_mut().unwrap().insert("Tags".into(), Value::Array(vec![]));
        assert!(matches!(put_composite_alarm(&client(), &composite).await, Err(ApplyError::UnknownField { .. })));
    }
}
