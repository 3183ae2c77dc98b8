//! Metrics (through the `metrics` facade, into Prometheus text at `/metrics` and into the sampler
//! behind the CloudWatch export and the node's dashboard page) and HTTP request instrumentation.
//!
//! Every label value comes from a bounded set, whatever clients send: `method` is one of the
//! methods the API knows (`GET`, `POST`, `PUT`, `DELETE`, `PATCH`, `HEAD`, `OPTIONS`) or `other`,
//! `route` is the pattern of the matched route (`/api/orders/{order_id}`) or `unmatched`, and
//! `status` is a three-digit status code.

use std::sync::OnceLock;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use events::metric;
use metrics::SharedString;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_util::layers::FanoutBuilder;

use crate::cloudwatch::sample::{Sampler, SamplingRecorder};

/// The process-wide recorders: Prometheus for `/metrics`, the sampler for CloudWatch and the
/// dashboard page.
struct Installed {
    prometheus: PrometheusHandle,
    sampler: Sampler,
}

fn installed() -> &'static Installed {
    static INSTALLED: OnceLock<Installed> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let prometheus = PrometheusBuilder::new()
            .set_buckets(&[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 100.0, 1000.0,
            ])
            .expect("valid buckets")
            .build_recorder();
        let handle = prometheus.handle();
        let (sampling, sampler) = SamplingRecorder::new();
        let fanout = FanoutBuilder::default().add_recorder(prometheus).add_recorder(sampling).build();
        if metrics::set_global_recorder(fanout).is_err() {
            tracing::warn!("a metrics recorder was already installed");
        }
        metric::describe_all();
        Installed { prometheus: handle, sampler }
    })
}

/// Installs the process-wide metrics recorders once and returns the Prometheus handle.
pub fn metrics_handle() -> PrometheusHandle {
    installed().prometheus.clone()
}

/// The sampler of the process-wide recorder (installing it if needed). Each sample drains the one
/// before: one ticker takes them ([`crate::cloudwatch::history::Ticker`]) and shares them.
pub fn sampler() -> Sampler {
    installed().sampler.clone()
}

/// Counts requests by method, route and status and times them, with bounded label values.
pub async fn record_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = method_label(req.method());
    // The pattern of a route of the app (a bounded set), never the path a client sent.
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    let response = next.call(req).await?;
    let status = response.status().as_u16();
    let class = match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    let status_label: SharedString = status.to_string().into();
    let route: SharedString = route.into();
    metric::HTTP_REQUESTS
        .counter(&[("method", method.into()), ("route", route.clone()), ("status", status_label), ("class", class.into())])
        .increment(1);
    metric::HTTP_REQUEST_DURATION
        .histogram(&[("method", SharedString::from(method)), ("route", route)])
        .record(started.elapsed().as_secs_f64());
    Ok(response)
}

/// A request's method as a metric label: a known method, or `other` for any a client made up.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_share_one_label() {
        assert_eq!(method_label(&Method::POST), "POST");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
        assert_eq!(method_label(&Method::TRACE), "other");
    }
}
