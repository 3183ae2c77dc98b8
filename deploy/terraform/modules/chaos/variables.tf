variable "environment" {
  type = string
}

variable "aws_region" {
  type = string
}

variable "account_id" {
  type = string
}

variable "names" {
  description = "The deployment's resource names (locals.tf)."
  type        = map(string)
}

variable "kms_key_arn" {
  type = string
}

variable "log_retention_days" {
  type = number
}
