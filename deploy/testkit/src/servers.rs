//! Servers for integration tests. Each is switched on by one environment variable, which
//! `deploy/local/test.sh` sets after starting the server. Unset, the test says it is skipped (and
//! returns early on `None`), except under `CI=true`, where that is a failure.

use crate::under_ci;

fn switch(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ if under_ci() => panic!("CI=true but {var} is not set: run the tests through deploy/local/test.sh"),
        _ => {
            eprintln!("SKIPPED: {var} is not set (deploy/local/test.sh sets it)");
            None
        }
    }
}

/// PostgreSQL: `CLOUDCAFE_TEST_PG`.
pub fn postgres_url() -> Option<String> {
    switch("CLOUDCAFE_TEST_PG")
}

/// Redis: `CLOUDCAFE_TEST_REDIS`.
pub fn redis_url() -> Option<String> {
    switch("CLOUDCAFE_TEST_REDIS")
}

/// Kinesis (kinesalite, started by `deploy/local/emulators.sh`): `CLOUDCAFE_TEST_KINESIS`.
pub fn kinesis_endpoint() -> Option<String> {
    switch("CLOUDCAFE_TEST_KINESIS")
}

/// SQS (moto, started by `deploy/local/emulators.sh`): `CLOUDCAFE_TEST_SQS`.
pub fn sqs_endpoint() -> Option<String> {
    switch("CLOUDCAFE_TEST_SQS")
}

/// SES and SNS (moto, the SQS process, started by `deploy/local/emulators.sh`; it also answers
/// `GET /cloudcafe/sent-email` and `GET /cloudcafe/sent-sms` with what was sent):
/// `CLOUDCAFE_TEST_SES_SNS`.
pub fn ses_sns_endpoint() -> Option<String> {
    switch("CLOUDCAFE_TEST_SES_SNS")
}

/// DynamoDB (moto, started by `deploy/local/emulators.sh`): `CLOUDCAFE_TEST_DYNAMODB`.
pub fn dynamodb_endpoint() -> Option<String> {
    switch("CLOUDCAFE_TEST_DYNAMODB")
}

/// CloudWatch (a moto process of its own, started by `deploy/local/emulators.sh`: moto's
/// GetMetricData scans every datum it holds): `CLOUDCAFE_TEST_CLOUDWATCH`.
pub fn cloudwatch_endpoint() -> Option<String> {
    switch("CLOUDCAFE_TEST_CLOUDWATCH")
}

/// The MongoDB wire protocol (DocumentDB; SecantusDB started by `deploy/local/emulators.sh`):
/// `CLOUDCAFE_TEST_MONGO`.
pub fn mongodb_uri() -> Option<String> {
    switch("CLOUDCAFE_TEST_MONGO")
}

/// A PostgreSQL database standing in for the Redshift cluster: `cloudcafe_redshift` on the same
/// server as `CLOUDCAFE_TEST_PG` (created if absent), or `CLOUDCAFE_TEST_REDSHIFT` if set.
pub async fn redshift_url() -> Option<String> {
    if let Ok(url) = std::env::var("CLOUDCAFE_TEST_REDSHIFT") {
        return Some(url);
    }
    let pg = postgres_url()?;
    let (client, conn) = tokio_postgres::connect(&pg, tokio_postgres::NoTls).await.expect("connect to PostgreSQL");
    tokio::spawn(conn);
    if let Err(e) = client.batch_execute("CREATE DATABASE cloudcafe_redshift").await {
        assert!(e.to_string().contains("already exists") || e.code().is_some(), "{e}");
    }
    let base = pg.rsplit_once('/').map_or(pg.as_str(), |(b, _)| b).to_owned();
    Some(format!("{base}/cloudcafe_redshift"))
}

/// A schema name no other test uses.
pub fn fresh_schema(prefix: &str) -> String {
    format!("t_{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// Headless Chromium, for tests that open a rendered page (`deploy/local/services.sh`'s
/// `ensure_chromium`): `CLOUDCAFE_TEST_CHROMIUM`, the path of the browser.
pub fn chromium() -> Option<String> {
    switch("CLOUDCAFE_TEST_CHROMIUM")
}

/// HAProxy, the local cluster's load balancer (`deploy/local/services.sh`'s `ensure_haproxy`):
/// `CLOUDCAFE_TEST_HAPROXY`, the path of the program.
pub fn haproxy() -> Option<String> {
    switch("CLOUDCAFE_TEST_HAPROXY")
}

/// Chaos Toolkit's `chaos` command (`deploy/local/emulators.sh`'s `ensure_chaostoolkit`):
/// `CLOUDCAFE_CHAOSTOOLKIT`, the path of the program.
pub fn chaostoolkit() -> Option<String> {
    switch("CLOUDCAFE_CHAOSTOOLKIT")
}
