//! Logs: the format a node writes them in ([`LogFormat`], installed once by the binary with
//! [`init`]) and the span every HTTP request runs in ([`request_span`]), which gives each line a
//! command logs the command's correlation id as `trace_id`.
//!
//! `text` (the default) is `tracing_subscriber`'s human-readable format, for a terminal. `json` is
//! one JSON object per line, for CloudWatch Logs Insights (ECS's `awslogs` driver ships stdout as
//! it is, and Logs Insights discovers the fields of JSON lines by itself):
//!
//! ```json
//! {"timestamp":"2026-12-02T01:30:00.123Z","level":"DEBUG","service":"orders",
//!  "trace_id":"0193…","customer_id":"alice","message":"order placed","order_id":"…","target":"gateways::http::orders"}
//! ```
//!
//! - `timestamp`: RFC 3339 UTC with milliseconds; `level`: `TRACE`…`ERROR`.
//! - `service`: see [`service_of`]; `cloudcafe` outside requests (projections, outbox, payment
//!   processor, start-up).
//! - `trace_id`: the correlation id of the command (the `X-Correlation-Id` its answer carries, and
//!   the `correlation_id` of every event it wrote), on every line logged while the command is
//!   handled; absent from requests that are not commands.
//! - `customer_id`: where the handler knows the customer (orders, loyalty).
//! - `message` (empty if the event has none), then the event's own fields and the fields of the spans it happened in (flattened
//!   to the top level: an inner span's field wins over an outer one's, the event's over any span's),
//!   then `target` (the module that logged it).
//!
//! A field named like one the formatter writes itself (`timestamp`, `level`, `target`) is written
//! as `fields.<name>` rather than lost or duplicated.
//!
//! Which lines are written is `RUST_LOG`'s (default `info`). Nothing is logged at `info` per order
//! (a node places thousands a second): at `debug`, each order placed or refused logs one line, so
//! a Logs Insights query `filter trace_id = "<X-Correlation-Id>"` finds what became of it.

use std::fmt;
use std::io::Write;
use std::str::FromStr;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Instrument, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The `service` of a line logged outside any request.
pub const SERVICE: &str = "cloudcafe";

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines, for a terminal.
    #[default]
    Text,
    /// One JSON object per line, for CloudWatch Logs Insights (see the module's documentation).
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format {other:?}: text or json")),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// Installs the process-wide subscriber: lines `filter` lets through, in `format`, on stdout.
/// Called once, by the binary, after it has read its command line.
pub fn init(format: LogFormat, filter: EnvFilter, sink: LogSink) {
    let registry = tracing_subscriber::registry().with(filter);
    match (format, sink) {
        (LogFormat::Text, LogSink::Stdout) => registry.with(tracing_subscriber::fmt::layer().with_target(false)).init(),
        (LogFormat::Text, LogSink::Stderr) => {
            registry.with(tracing_subscriber::fmt::layer().with_target(false).with_writer(std::io::stderr)).init()
        }
        (LogFormat::Json, LogSink::Stdout) => registry.with(JsonLayer::new(std::io::stdout)).init(),
        (LogFormat::Json, LogSink::Stderr) => registry.with(JsonLayer::new(std::io::stderr)).init(),
    }
}

/// Where log lines go: a server's stdout (what ECS's log driver ships), or a command's stderr, so that
/// what the command prints on stdout (a JSON verdict, a table, a path) stays readable by a program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogSink {
    Stdout,
    Stderr,
}

/// The service a request belongs to, from its path: the aggregate or resource it addresses
/// (`orders`, `inventory`, `loyalty`, `payments`, `menu`, `analytics`, `stores`), `admin` for
/// the operator's routes, else [`SERVICE`].
///
/// Per request rather than one name for the process: one node serves every service, and the
/// dashboards are per service (orders, inventory, payments, ...), so on-call looking at the
/// payments dashboard filters the logs with `service = "payments"` the same way. Derived from the
/// path's prefix (a `&'static str`, no allocation), so it costs nothing on the order path.
pub fn service_of(path: &str) -> &'static str {
    let Some(rest) = path.strip_prefix("/api/") else {
        return if path.starts_with("/admin/") { "admin" } else { SERVICE };
    };
    match rest.split('/').next().unwrap_or_default() {
        "orders" | "customers" => "orders",
        "inventory" => "inventory",
        "loyalty" => "loyalty",
        "payments" => "payments",
        "menu" => "menu",
        "analytics" => "analytics",
        "stores" => "stores",
        _ => SERVICE,
    }
}

/// Runs each request in an `info` span `request` with `service` ([`service_of`]) and two empty
/// fields the handlers fill in: `trace_id` ([`record_correlation`]) and `customer_id`
/// ([`record_customer`]). Every line logged while the request is handled carries them.
///
/// Cheap: when `info` is off, the span is disabled and costs a level check; when on, the
/// subscriber keeps the span's three fields until the response is sent.
pub async fn request_span(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let span = tracing::info_span!(
        "request",
        service = service_of(req.path()),
        trace_id = tracing::field::Empty,
        customer_id = tracing::field::Empty,
    );
    let response = span.in_scope(|| next.call(req));
    response.instrument(span).await
}

/// The causation of a command arriving over HTTP: a new root, whose correlation id (the
/// `X-Correlation-Id` of the answer) is recorded as the current request's `trace_id`.
pub fn command_causation() -> events::Causation {
    let causation = events::Causation::new_root();
    record_correlation(&causation.correlation_id);
    causation
}

/// Records `correlation_id` as the current request's `trace_id` (no-op outside a request span).
pub fn record_correlation(correlation_id: &uuid::Uuid) {
    tracing::Span::current().record("trace_id", tracing::field::display(correlation_id));
}

/// Records the customer the current request is about (no-op outside a request span).
pub fn record_customer(customer_id: &str) {
    tracing::Span::current().record("customer_id", customer_id);
}

/// Writes events as JSON lines (see the module's documentation) to `W`'s writers, one
/// `write_all` per line so that lines from several threads do not interleave.
pub struct JsonLayer<W> {
    make_writer: W,
}

impl<W> JsonLayer<W>
where
    W: for<'w> MakeWriter<'w> + 'static,
{
    pub fn new(make_writer: W) -> Self {
        JsonLayer { make_writer }
    }
}

/// The fields of a span (or an event) that have a value, in the order they were recorded; a
/// field recorded again keeps its place and takes the new value.
#[derive(Default)]
struct Fields(Vec<(&'static str, Value)>);

impl Fields {
    fn set(&mut self, name: &'static str, value: Value) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v = value,
            None => self.0.push((name, value)),
        }
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.set(field.name(), Value::String(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field.name(), Value::String(value.to_owned()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field.name(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field.name(), value.into());
    }

    /// NaN and infinities are not JSON numbers: they are written as strings (`"NaN"`, `"inf"`).
    fn record_f64(&mut self, field: &Field, value: f64) {
        let value = serde_json::Number::from_f64(value).map_or_else(|| Value::String(value.to_string()), Value::Number);
        self.set(field.name(), value);
    }

    /// An error with its sources, as `events::ErrorChain` writes them.
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.set(field.name(), Value::String(events::ErrorChain(value).to_string()));
    }
}

/// The names the formatter writes itself; a field so named is written as `fields.<name>`.
const RESERVED: &[&str] = &["timestamp", "level", "target"];

/// The fields written right after `level`, in this order, when they are there (`service` and
/// `message` always are).
const LEADING: &[&str] = &["service", "trace_id", "customer_id", "message"];

impl<S, W> Layer<S> for JsonLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        match extensions.get_mut::<Fields>() {
            Some(fields) => values.record(fields),
            None => {
                let mut fields = Fields::default();
                values.record(&mut fields);
                extensions.insert(fields);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(span_fields) = span.extensions().get::<Fields>() {
                    for &(name, ref value) in &span_fields.0 {
                        fields.set(name, value.clone());
                    }
                }
            }
        }
        event.record(&mut fields);
        let timestamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let line = json_line(&timestamp, event.metadata().level(), event.metadata().target(), &fields);
        // A log line that cannot be written has nowhere to be reported.
        let _ = self.make_writer.make_writer_for(event.metadata()).write_all(&line);
    }
}

/// One log line, newline included. serde_json writes every key and value, so any field value
/// (quotes, control characters, non-ASCII) is escaped as JSON requires.
fn json_line(timestamp: &str, level: &tracing::Level, target: &str, fields: &Fields) -> Vec<u8> {
    let mut line = Vec::with_capacity(256);
    let mut put = |key: &str, value: &dyn erased::Json| {
        line.push(if line.is_empty() { b'{' } else { b',' });
        erased::write(&mut line, &key);
        line.push(b':');
        value.write_to(&mut line);
    };
    put("timestamp", &timestamp);
    put("level", &level.as_str());
    put("service", fields.get("service").unwrap_or(&Value::String(SERVICE.into())));
    for &name in &LEADING[1..] {
        match fields.get(name) {
            Some(value) => put(name, value),
            // Every line has a message, if only an empty one, so queries can rely on it.
            None if name == "message" => put(name, &""),
            None => {}
        }
    }
    for (name, value) in &fields.0 {
        if LEADING.contains(name) {
            continue;
        }
        if RESERVED.contains(name) {
            put(&format!("fields.{name}"), value);
        } else {
            put(name, value);
        }
    }
    put("target", &target);
    line.extend_from_slice(b"}\n");
    line
}

/// Writing the line's keys and values of different types with serde_json through one closure.
mod erased {
    /// A value serde_json can write.
    pub(super) trait Json {
        fn write_to(&self, out: &mut Vec<u8>);
    }

    impl<T: serde::Serialize + ?Sized> Json for T {
        fn write_to(&self, out: &mut Vec<u8>) {
            write(out, self);
        }
    }

    /// Serializing strings and `Value`s into a `Vec` cannot fail (no I/O, string keys only).
    pub(super) fn write<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
        if serde_json::to_writer(&mut *out, value).is_err() {
            out.extend_from_slice(b"null");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::{debug, info_span, warn};
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Lines written by a [`JsonLayer`], kept for the test to read.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Captured {
        type Writer = Captured;

        fn make_writer(&'w self) -> Captured {
            self.clone()
        }
    }

    /// Runs `f` under a JSON subscriber (everything enabled) and returns what it wrote.
    fn logged_text(f: impl FnOnce()) -> String {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::registry().with(JsonLayer::new(captured.clone()));
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'), "{text}");
        text
    }

    /// Runs `f` under a JSON subscriber (everything enabled) and returns the lines it logged.
    fn logged(f: impl FnOnce()) -> Vec<serde_json::Map<String, Value>> {
        logged_text(f)
            .lines()
            .map(|l| match serde_json::from_str(l) {
                Ok(Value::Object(o)) => o,
                other => panic!("not a JSON object: {l} ({other:?})"),
            })
            .collect()
    }

    #[test]
    fn a_line_has_the_fixed_fields_first_and_the_event_fields_after() {
        let log = || debug!(order_id = "o-1", lines = 3_u64, paid = false, "order placed");
        let text = logged_text(log);
        let keys = ["timestamp", "level", "service", "message", "order_id", "lines", "paid", "target"];
        let at: Vec<usize> = keys.iter().map(|k| text.find(&format!("\"{k}\":")).expect(k)).collect();
        assert!(text.starts_with("{\"timestamp\":") && at.is_sorted(), "{text}");
        let lines = logged(log);
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(line["level"], "DEBUG");
        assert_eq!(line["service"], SERVICE);
        assert_eq!(line["message"], "order placed");
        assert_eq!((&line["order_id"], &line["lines"], &line["paid"]), (&"o-1".into(), &3.into(), &false.into()));
        assert_eq!(line["target"], module_path!());
        let timestamp = line["timestamp"].as_str().unwrap();
        let parsed = chrono::DateTime::parse_from_rfc3339(timestamp).expect("RFC 3339");
        assert_eq!(parsed.offset().local_minus_utc(), 0);
        assert!(timestamp.ends_with('Z') && timestamp.len() == "2026-12-02T01:30:00.123Z".len(), "{timestamp}");
    }

    #[test]
    fn span_fields_are_flattened_and_the_innermost_wins() {
        let lines = logged(|| {
            let request = info_span!(
                "request",
                service = "orders",
                trace_id = tracing::field::Empty,
                customer_id = tracing::field::Empty,
                step = "outer"
            );
            let _request = request.enter();
            record_correlation(&uuid::Uuid::from_u128(7));
            record_customer("alice");
            let inner = info_span!("inner", step = "inner", customer_id = "bob");
            inner.in_scope(|| warn!(step = "event", "inside both"));
            warn!("inside the request only");
        });
        assert_eq!(lines.len(), 2);
        let trace_id = uuid::Uuid::from_u128(7).to_string();
        let inner = &lines[0];
        assert_eq!(inner["service"], "orders");
        assert_eq!(inner["trace_id"], trace_id.as_str());
        assert_eq!(inner["customer_id"], "bob", "the inner span wins");
        assert_eq!(inner["step"], "event", "the event's own field wins");
        assert_eq!(inner["level"], "WARN");
        let outer = &lines[1];
        assert_eq!((&outer["customer_id"], &outer["step"]), (&"alice".into(), &"outer".into()));
        assert_eq!(outer["trace_id"], trace_id.as_str());
        assert!(!outer.contains_key("span") && !outer.contains_key("spans"));
    }

    #[test]
    fn fields_never_set_are_left_out() {
        let lines = logged(|| {
            let span = info_span!("request", trace_id = tracing::field::Empty, customer_id = tracing::field::Empty);
            span.in_scope(|| tracing::info!("no command"));
        });
        assert!(!lines[0].contains_key("trace_id") && !lines[0].contains_key("customer_id"), "{:?}", lines[0]);
        assert_eq!(lines[0]["service"], SERVICE);
    }

    #[test]
    fn a_line_without_a_message_has_an_empty_one() {
        let lines = logged(|| tracing::info!(queue_depth = 3));
        assert_eq!((&lines[0]["message"], &lines[0]["queue_depth"]), (&"".into(), &3.into()));
    }

    #[test]
    fn odd_values_are_escaped_and_reserved_names_kept_apart() {
        #[derive(Debug)]
        struct Odd;
        let nasty = "quote \" backslash \\ newline \n tab \t nul \u{0} bell \u{7} é ☕";
        let error = std::io::Error::other("disk on fire");
        let lines = logged(|| {
            tracing::error!(
                detail = nasty,
                debugged = ?Odd,
                ratio = f64::NAN,
                big = u64::MAX,
                negative = -5_i64,
                wide = 1_u128 << 100,
                error = &error as &(dyn std::error::Error + 'static),
                level = "mine",
                timestamp = 3,
                "message with \"{}\"",
                nasty
            )
        });
        let text_fields = &lines[0];
        assert_eq!(text_fields["detail"], nasty);
        assert_eq!(text_fields["message"], format!("message with \"{nasty}\""));
        assert_eq!(text_fields["debugged"], "Odd");
        assert_eq!(text_fields["ratio"], "NaN");
        assert_eq!(text_fields["big"], u64::MAX);
        assert_eq!(text_fields["negative"], -5);
        assert_eq!(text_fields["wide"], (1_u128 << 100).to_string().as_str());
        assert_eq!(text_fields["error"], "disk on fire");
        assert_eq!(text_fields["level"], "ERROR");
        assert_eq!(text_fields["fields.level"], "mine");
        assert_eq!(text_fields["fields.timestamp"], 3);
    }

    #[test]
    fn services_follow_the_path() {
        assert_eq!(service_of("/api/orders"), "orders");
        assert_eq!(service_of("/api/orders/0193"), "orders");
        assert_eq!(service_of("/api/customers/alice/orders"), "orders");
        assert_eq!(service_of("/api/payments/0193"), "payments");
        assert_eq!(service_of("/api/loyalty/alice"), "loyalty");
        assert_eq!(service_of("/api/menu/items"), "menu");
        assert_eq!(service_of("/admin/stores"), "admin");
        assert_eq!(service_of("/health"), SERVICE);
        assert_eq!(service_of("/api/brew"), SERVICE);
        assert_eq!(service_of("/api"), SERVICE);
    }

    #[test]
    fn formats_parse_from_their_names() {
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert_eq!("text".parse(), Ok(LogFormat::Text));
        assert!("yaml".parse::<LogFormat>().is_err());
        assert_eq!(LogFormat::Json.to_string(), "json");
    }
}
