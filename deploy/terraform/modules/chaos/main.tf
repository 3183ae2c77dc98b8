# What the chaos experiments' AWS plans (`cloudcafe chaos render aws`, chaos/aws/) need in the
# account: the role AWS FIS assumes to inject their faults, and the log group it writes their logs
# to. The plans find their targets by the tags this configuration puts on them (`Project`,
# `Environment` everywhere; `Component = cache` on the replication group, `Component =
# broker-endpoint` on the Kinesis and SQS interface endpoints).

data "aws_iam_policy_document" "fis_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["fis.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [var.account_id]
    }
  }
}

resource "aws_iam_role" "fis" {
  name               = var.names.fis_role
  assume_role_policy = data.aws_iam_policy_document.fis_trust.json
}

# AWS's own policies for the FIS actions the plans use: ECS tasks (kill a process, latency, packet
# loss, a black-holed port, stop a task), the Aurora failover, the VPC endpoints' disruption, and
# the SSM documents the ECS task actions run through.
resource "aws_iam_role_policy_attachment" "fis_managed" {
  for_each = toset([
    "AWSFaultInjectionSimulatorECSAccess",
    "AWSFaultInjectionSimulatorRDSAccess",
    "AWSFaultInjectionSimulatorNetworkAccess",
    "AWSFaultInjectionSimulatorSSMAccess",
  ])

  role       = aws_iam_role.fis.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/${each.value}"
}

data "aws_iam_policy_document" "fis" {
  statement {
    sid       = "CacheAzPower"
    actions   = ["elasticache:InterruptClusterAzPower"]
    resources = ["arn:aws:elasticache:${var.aws_region}:${var.account_id}:replicationgroup:${var.names.cache_cluster}"]
  }

  statement {
    #checkov:skip=CKV_AWS_356:FIS resolves targets by tag: the describe and tag-read calls take no resource ARN
    #checkov:skip=CKV_AWS_111:read-only describe and tag calls, which take no resource ARN
    sid       = "FindTargetsAndStopConditions"
    actions   = ["elasticache:DescribeReplicationGroups", "tag:GetResources", "cloudwatch:DescribeAlarms"]
    resources = ["*"]
  }

  statement {
    #checkov:skip=CKV_AWS_356:CloudWatch Logs' delivery calls take no resource ARN
    #checkov:skip=CKV_AWS_111:FIS needs log delivery set up to write its experiment logs; the calls take no resource ARN
    sid       = "ExperimentLogDelivery"
    actions   = ["logs:CreateLogDelivery", "logs:DescribeLogGroups", "logs:DescribeResourcePolicies", "logs:PutResourcePolicy"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "fis" {
  name   = "cloudcafe-fis-${var.environment}"
  role   = aws_iam_role.fis.id
  policy = data.aws_iam_policy_document.fis.json
}

resource "aws_cloudwatch_log_group" "fis" {
  name              = var.names.fis_log_group
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}
