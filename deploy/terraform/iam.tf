# What the node's task role may do: exactly the tables, streams, queues, database user and metrics
# `cloudcafe serve` touches, by the names in locals.tf. A test reads these statements and fails when
# one names something this configuration does not create (or the node does not create itself).
locals {
  arn_prefix = {
    dynamodb = "arn:${local.partition}:dynamodb:${var.aws_region}:${local.account_id}:table"
    kinesis  = "arn:${local.partition}:kinesis:${var.aws_region}:${local.account_id}:stream"
    sqs      = "arn:${local.partition}:sqs:${var.aws_region}:${local.account_id}"
    rds_db   = "arn:${local.partition}:rds-db:${var.aws_region}:${local.account_id}:dbuser"
    ses      = "arn:${local.partition}:ses:${var.aws_region}:${local.account_id}:identity"
  }

  # What a node does with a queue it publishes to and works from: sends, receives with visibility
  # kept while handling, deletes, and keeps the redrive policy as the code states it.
  queue_actions = [
    "sqs:ChangeMessageVisibility",
    "sqs:CreateQueue",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
    "sqs:ReceiveMessage",
    "sqs:SendMessage",
    "sqs:SetQueueAttributes",
  ]

  # What a node does with a stream it publishes to and whose Kinesis-fed models it runs: puts
  # records, and reads the shards its leases give it. The streams exist (messaging module), so the
  # node's create-if-absent only describes them.
  stream_actions = [
    "kinesis:DescribeStreamSummary",
    "kinesis:GetRecords",
    "kinesis:GetShardIterator",
    "kinesis:ListShards",
    "kinesis:PutRecords",
  ]

  task_role_statements = [
    {
      # The read models' generations: the node creates a generation's tables, switches TTL on,
      # and deletes a generation once a rebuild promoted the next one.
      sid = "ReadModelTables"
      actions = [
        "dynamodb:BatchWriteItem",
        "dynamodb:ConditionCheckItem",
        "dynamodb:CreateTable",
        "dynamodb:DeleteItem",
        "dynamodb:DeleteTable",
        "dynamodb:DescribeTable",
        "dynamodb:DescribeTimeToLive",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:Query",
        "dynamodb:Scan",
        "dynamodb:UpdateItem",
        "dynamodb:UpdateTimeToLive",
      ]
      resources = [
        "${local.arn_prefix.dynamodb}/${local.names.active_orders_tables}*",
        "${local.arn_prefix.dynamodb}/${local.names.store_inventory_tables}*",
      ]
    },
    {
      # The generations' bookkeeping, the payment ledger, the notification deliveries and the
      # Kinesis consumers' leases.
      sid = "BookkeepingTables"
      actions = [
        "dynamodb:DeleteItem",
        "dynamodb:DescribeTable",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:Query",
        "dynamodb:Scan",
        "dynamodb:UpdateItem",
      ]
      resources = concat(
        [
          "${local.arn_prefix.dynamodb}/${local.names.offsets_table}",
          "${local.arn_prefix.dynamodb}/${local.names.payments_table}",
          "${local.arn_prefix.dynamodb}/${local.names.notifications_table}",
        ],
        [for table in values(local.lease_tables) : "${local.arn_prefix.dynamodb}/${table}"],
      )
    },
    {
      # The outbox publishes every event; the consumers read the shards the leases give them.
      sid       = "OrderEventsStream"
      actions   = local.stream_actions
      resources = ["${local.arn_prefix.kinesis}/${local.names.kinesis_stream}"]
    },
    {
      # The outbox publishes the events analytics needs; the analytics model's consumer reads them
      # (as OrderEventsStream).
      sid       = "AnalyticsEventsStream"
      actions   = local.stream_actions
      resources = ["${local.arn_prefix.kinesis}/${local.names.analytics_stream}"]
    },
    {
      # The outbox sends payment requests; the payment processor receives them; the node keeps the
      # queues' redrive policy as the code states it (CreateQueue answers with the existing queue).
      sid     = "PaymentQueues"
      actions = local.queue_actions
      resources = [
        "${local.arn_prefix.sqs}:${local.names.payment_queue}",
        "${local.arn_prefix.sqs}:${local.names.payment_dlq}",
      ]
    },
    {
      # The notifier sends notifications; the notification worker receives them (as PaymentQueues).
      sid     = "NotificationQueues"
      actions = local.queue_actions
      resources = [
        "${local.arn_prefix.sqs}:${local.names.notification_queue}",
        "${local.arn_prefix.sqs}:${local.names.notification_dlq}",
      ]
    },
    {
      # Notification emails, from the verified domain only.
      sid       = "NotificationEmails"
      actions   = ["ses:SendEmail"]
      resources = ["${local.arn_prefix.ses}/${local.notification_domain}"]
    },
    {
      # Text messages go to phone numbers, which have no ARN: IAM knows a direct SMS publish only
      # as resource "*". The next statement takes every topic out of it, so this grants SMS alone.
      sid       = "NotificationTextMessages"
      actions   = ["sns:Publish"]
      resources = ["*"]
    },
    {
      sid       = "NoTopicPublishing"
      effect    = "Deny"
      actions   = ["sns:Publish"]
      resources = ["arn:${local.partition}:sns:*:*:*"]
    },
    {
      # IAM database authentication to the journal (--pg-iam-auth): tokens for one database user.
      sid       = "JournalLogin"
      actions   = ["rds-db:connect"]
      resources = ["${local.arn_prefix.rds_db}:${module.data.aurora_resource_id}/${module.data.journal_user}"]
    },
    {
      # The encryption key of the tables, stream and queues above.
      sid       = "DataKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [module.data.kms_key_arn]
    },
  ]
}
