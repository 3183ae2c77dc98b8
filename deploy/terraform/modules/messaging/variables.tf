variable "names" {
  description = "The deployment's resource names (locals.tf)."
  type        = map(string)
}

variable "kinesis_shards" {
  type = number
}

variable "analytics_shards" {
  type = number
}

variable "kms_key_arn" {
  type = string
}
