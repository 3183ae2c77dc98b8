# The dashboards and alarms exactly as `cloudcafe dashboard render` wrote them (deploy/cloudwatch/):
# they name metrics only through the code's metric catalog, so this module adds no metric of its
# own. Two placeholders of the rendered files are replaced here: the alarm topic and the id part of
# the load balancer's dimension, which AWS assigns.

locals {
  placeholder_topic = "arn:aws:sns:us-east-1:123456789012:cloudcafe-alarms-${var.environment}"
  placeholder_alb   = "app/cloudcafe-alb-${var.environment}/0000000000000000"

  rendered = {
    for name in fileset(var.cloudwatch_dir, "dashboards/CloudCafe-*-${var.environment}.json") :
    trimsuffix(basename(name), ".json") => replace(file("${var.cloudwatch_dir}/${name}"), local.placeholder_alb, var.load_balancer_dimension)
  }

  alarms_json = replace(
    replace(file("${var.cloudwatch_dir}/alarms.json"), local.placeholder_topic, var.alarm_topic_arn),
    local.placeholder_alb, var.load_balancer_dimension,
  )
  alarms = { for alarm in jsondecode(local.alarms_json) : alarm.AlarmName => alarm }

  composite_alarms = {
    for alarm in jsondecode(replace(file("${var.cloudwatch_dir}/composite-alarms.json"), local.placeholder_topic, var.alarm_topic_arn)) :
    alarm.AlarmName => alarm
  }
}

resource "aws_cloudwatch_dashboard" "rendered" {
  for_each = local.rendered

  dashboard_name = each.key
  dashboard_body = each.value
}

resource "aws_cloudwatch_metric_alarm" "rendered" {
  for_each = local.alarms

  alarm_name          = each.key
  alarm_description   = each.value.AlarmDescription
  actions_enabled     = each.value.ActionsEnabled
  alarm_actions       = each.value.AlarmActions
  ok_actions          = try(each.value.OKActions, [])
  comparison_operator = each.value.ComparisonOperator
  evaluation_periods  = each.value.EvaluationPeriods
  datapoints_to_alarm = try(each.value.DatapointsToAlarm, null)
  threshold           = each.value.Threshold
  treat_missing_data  = try(each.value.TreatMissingData, "missing")

  # An alarm on one metric...
  metric_name = try(each.value.MetricName, null)
  namespace   = try(each.value.Namespace, null)
  period      = try(each.value.Period, null)
  statistic   = try(each.value.Statistic, null)
  dimensions  = try({ for d in each.value.Dimensions : d.Name => d.Value }, null)

  # ...or on metric math over several.
  dynamic "metric_query" {
    for_each = try(each.value.Metrics, [])
    content {
      id          = metric_query.value.Id
      expression  = try(metric_query.value.Expression, null)
      label       = try(metric_query.value.Label, null)
      return_data = try(metric_query.value.ReturnData, null)
      period      = try(metric_query.value.Period, null)

      dynamic "metric" {
        for_each = try([metric_query.value.MetricStat], [])
        content {
          metric_name = metric.value.Metric.MetricName
          namespace   = metric.value.Metric.Namespace
          period      = metric.value.Period
          stat        = metric.value.Stat
          dimensions  = { for d in try(metric.value.Metric.Dimensions, []) : d.Name => d.Value }
        }
      }
    }
  }
}

resource "aws_cloudwatch_composite_alarm" "rendered" {
  for_each = local.composite_alarms

  alarm_name        = each.key
  alarm_description = each.value.AlarmDescription
  actions_enabled   = each.value.ActionsEnabled
  alarm_actions     = each.value.AlarmActions
  ok_actions        = try(each.value.OKActions, [])
  alarm_rule        = each.value.AlarmRule

  # The alarms it names first.
  depends_on = [aws_cloudwatch_metric_alarm.rendered]
}
