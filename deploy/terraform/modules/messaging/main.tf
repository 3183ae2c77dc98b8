# The way events leave the journal: every event to the Kinesis stream `order-events` (the outbox,
# read back by the Kinesis-fed read models), the events analytics needs to the Kinesis stream
# `analytics-events` (partitioned by store, read back by the analytics model when it lives in
# Redshift), one payment request per order to the SQS FIFO queue `payment-requests.fifo`, whose
# dead-letter queue takes a request after 3 receives, and one notification per order confirmed,
# payment declined, order ready and refund to the standard queue `notification-queue` (dead-letter
# queue after 3 receives too).

resource "aws_kinesis_stream" "order_events" {
  name             = var.names.kinesis_stream
  shard_count      = var.kinesis_shards
  retention_period = 168

  stream_mode_details {
    stream_mode = "PROVISIONED"
  }

  encryption_type = "KMS"
  kms_key_id      = var.kms_key_arn

  shard_level_metrics = ["IncomingRecords", "IteratorAgeMilliseconds", "WriteProvisionedThroughputExceeded"]
}

resource "aws_kinesis_stream" "analytics_events" {
  name             = var.names.analytics_stream
  shard_count      = var.analytics_shards
  retention_period = 168

  stream_mode_details {
    stream_mode = "PROVISIONED"
  }

  encryption_type = "KMS"
  kms_key_id      = var.kms_key_arn

  shard_level_metrics = ["IncomingRecords", "IteratorAgeMilliseconds", "WriteProvisionedThroughputExceeded"]
}

module "payment_queue" {
  #checkov:skip=CKV_TF_1:a registry module pinned to one exact release; the registry serves each release as an immutable tag, and a git commit source would lose its version checks
  source  = "terraform-aws-modules/sqs/aws"
  version = "4.2.1"

  name                        = var.names.payment_queue
  fifo_queue                  = true
  content_based_deduplication = false
  # The payment processor extends a request's invisibility while it handles it (--payment-visibility-secs).
  visibility_timeout_seconds = 30
  receive_wait_time_seconds  = 20
  message_retention_seconds  = 1209600

  kms_master_key_id                 = var.kms_key_arn
  kms_data_key_reuse_period_seconds = 300

  create_dlq = true
  dlq_name   = var.names.payment_dlq
  # The code's sqs::DEFAULT_MAX_RECEIVE_COUNT: the node sets the same policy when it starts.
  redrive_policy = {
    maxReceiveCount = 3
  }
  dlq_message_retention_seconds = 1209600
  dlq_kms_master_key_id         = var.kms_key_arn
}

module "notification_queue" {
  #checkov:skip=CKV_TF_1:a registry module pinned to one exact release; the registry serves each release as an immutable tag, and a git commit source would lose its version checks
  source  = "terraform-aws-modules/sqs/aws"
  version = "4.2.1"

  # A standard queue: notifications need no order, and the worker deduplicates on the event id.
  name = var.names.notification_queue
  # The worker extends a notification's invisibility while it delivers (--notification-visibility-secs).
  visibility_timeout_seconds = 30
  receive_wait_time_seconds  = 20
  message_retention_seconds  = 345600

  kms_master_key_id                 = var.kms_key_arn
  kms_data_key_reuse_period_seconds = 300

  create_dlq = true
  dlq_name   = var.names.notification_dlq
  # The code's notifications::DEFAULT_MAX_RECEIVE_COUNT.
  redrive_policy = {
    maxReceiveCount = 3
  }
  dlq_message_retention_seconds = 1209600
  dlq_kms_master_key_id         = var.kms_key_arn
}
