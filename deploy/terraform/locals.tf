# Every name the code also knows, in one place. A test (`cargo test -p gateways --bin cloudcafe
# --all-features terraform`) evaluates these for environment = "prod" and compares them with the
# names the binary, the dashboards and the chaos plans use.
locals {
  names = {
    ecs_cluster         = "cloudcafe-${var.environment}"
    ecs_service         = "cloudcafe-node-${var.environment}"
    container           = "cloudcafe"
    load_balancer       = "cloudcafe-alb-${var.environment}"
    target_group        = "cloudcafe-node-${var.environment}"
    aurora_cluster      = "cloudcafe-journal-${var.environment}"
    cache_cluster       = "cloudcafe-cache-${var.environment}"
    documentdb_cluster  = "cloudcafe-documents-${var.environment}"
    redshift_cluster    = "cloudcafe-analytics-${var.environment}"
    kinesis_stream      = "cloudcafe-order-events-${var.environment}"
    analytics_stream    = "cloudcafe-analytics-events-${var.environment}"
    payment_queue       = "cloudcafe-payment-requests-${var.environment}.fifo"
    payment_dlq         = "cloudcafe-payment-requests-dlq-${var.environment}.fifo"
    payments_table      = "cloudcafe-payments-${var.environment}"
    notification_queue  = "cloudcafe-notifications-${var.environment}"
    notification_dlq    = "cloudcafe-notifications-dlq-${var.environment}"
    notifications_table = "cloudcafe-notifications-${var.environment}"
    offsets_table       = "cloudcafe-projection-offsets-${var.environment}"
    lease_table_prefix  = "cloudcafe-leases-${var.environment}"
    # The read models' tables: the node creates generation n as <prefix><n> (DynamoDB cannot rename
    # a table, so a rebuild writes a new generation and deletes the old one).
    active_orders_tables   = "cloudcafe-active-orders-${var.environment}-g"
    store_inventory_tables = "cloudcafe-store-inventory-${var.environment}-g"
    ecr_repository         = "cloudcafe"
    log_group              = "/ecs/cloudcafe-${var.environment}"
    fis_role               = "cloudcafe-fis-${var.environment}"
    fis_log_group          = "/aws/fis/cloudcafe-${var.environment}"
  }

  # The read models the Kinesis consumers feed, by the name the code gives them; one lease table each.
  # The first two follow order-events; analytics follows analytics-events, and only when it lives in
  # Redshift (CLOUDCAFE_ANALYTICS_FROM=kinesis): otherwise its lease table stays empty and idle.
  kinesis_fed_models = ["dynamodb-read-models", "documents", "analytics"]
  lease_tables       = { for model in local.kinesis_fed_models : model => "${local.names.lease_table_prefix}-${model}" }

  # The port `cloudcafe serve` listens on in the container (the Dockerfile's EXPOSE).
  container_port = 8080
  # Where the load balancer and the image's HEALTHCHECK ask.
  health_check_path = "/health"
  # Seconds the node takes to stop after SIGTERM: its HTTP server drains in-flight requests for 5 s,
  # then the followers stop at their next step. The load balancer drains a target for longer than a
  # request can take (head and body timeouts of 5 s each plus the command), and ECS waits
  # stop_timeout before SIGKILL.
  deregistration_delay = 15
  stop_timeout         = 30

  # The domain notification emails are sent from: its SES identity is created here.
  notification_domain = split("@", var.notification_sender)[1]

  cloudwatch_dir = coalesce(var.cloudwatch_dir, "${path.root}/../cloudwatch")
}
