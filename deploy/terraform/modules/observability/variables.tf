variable "environment" {
  type = string
}

variable "cloudwatch_dir" {
  description = "The rendered dashboards and alarms (`cloudcafe dashboard render`)."
  type        = string
}

variable "alarm_topic_arn" {
  type = string
}

variable "load_balancer_dimension" {
  description = "The ALB's LoadBalancer dimension (app/<name>/<id>)."
  type        = string
}
