variable "environment" {
  type = string
}

variable "aws_region" {
  type = string
}

variable "names" {
  description = "The deployment's resource names (locals.tf)."
  type        = map(string)
}

variable "image_tag" {
  type = string
}

variable "kms_key_arn" {
  type = string
}

variable "private_subnets" {
  type = list(string)
}

variable "security_group_id" {
  type = string
}

variable "target_group_arn" {
  type = string
}

variable "target_resource_label" {
  description = "app/<alb>/<id>/targetgroup/<tg>/<id>: what ALBRequestCountPerTarget scales on."
  type        = string
}

variable "container_port" {
  type = number
}

variable "health_check_path" {
  type = string
}

variable "stop_timeout" {
  description = "Seconds between SIGTERM and SIGKILL when a task stops."
  type        = number
}

variable "task_cpu" {
  type = number
}

variable "task_memory" {
  type = number
}

variable "tasks_min" {
  type = number
}

variable "tasks_max" {
  type = number
}

variable "requests_per_target" {
  type = number
}

variable "log_retention_days" {
  type = number
}

variable "task_role_statements" {
  description = "The task role's statements: [{ sid, effect (Allow unless Deny), actions, resources }]."
  type = list(object({
    sid       = string
    effect    = optional(string, "Allow")
    actions   = list(string)
    resources = list(string)
  }))
}

variable "journal_url" {
  type = string
}

variable "redis_url" {
  type = string
}

variable "documentdb_url" {
  type = string
}

variable "analytics_url" {
  description = "The Redshift cluster's URL; null: the analytics model stays in the journal's database."
  type        = string
  default     = null
}

variable "auth_key_secret_arn" {
  type = string
}

variable "redis_secret_arn" {
  type = string
}

variable "documentdb_secret_arn" {
  type = string
}

variable "redshift_secret_arn" {
  type    = string
  default = null
}

variable "aurora_master_secret_arn" {
  type = string
}

variable "aurora_endpoint" {
  type = string
}

variable "journal_database" {
  type = string
}

variable "journal_user" {
  type = string
}

variable "jwks_url" {
  type    = string
  default = null
}

variable "jwt_issuer" {
  type    = string
  default = null
}

variable "jwt_audience" {
  type    = string
  default = null
}

variable "journal_admin_user" {
  type = string
}

variable "notification_sender" {
  description = "The verified SES address notification emails come from."
  type        = string
}
