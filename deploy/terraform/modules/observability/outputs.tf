output "dashboards" {
  value = keys(aws_cloudwatch_dashboard.rendered)
}

output "alarms" {
  value = concat(keys(aws_cloudwatch_metric_alarm.rendered), keys(aws_cloudwatch_composite_alarm.rendered))
}
