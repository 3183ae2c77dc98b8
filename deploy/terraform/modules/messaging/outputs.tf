output "order_events_stream_arn" {
  value = aws_kinesis_stream.order_events.arn
}

output "analytics_events_stream_arn" {
  value = aws_kinesis_stream.analytics_events.arn
}

output "payment_queue_arn" {
  value = module.payment_queue.queue_arn
}

output "payment_dlq_arn" {
  value = module.payment_queue.dead_letter_queue_arn
}

output "notification_queue_arn" {
  value = module.notification_queue.queue_arn
}

output "notification_dlq_arn" {
  value = module.notification_queue.dead_letter_queue_arn
}
