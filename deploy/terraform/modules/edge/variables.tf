variable "names" {
  description = "The deployment's resource names (locals.tf)."
  type        = map(string)
}

variable "vpc_id" {
  type = string
}

variable "public_subnets" {
  type = list(string)
}

variable "security_group_id" {
  type = string
}

variable "certificate_arn" {
  type = string
}

variable "container_port" {
  type = number
}

variable "health_check_path" {
  type = string
}

variable "deregistration_delay" {
  description = "Seconds the load balancer keeps a stopping node's in-flight requests before ECS sends it SIGTERM."
  type        = number
}

variable "deletion_protection" {
  type = bool
}

variable "access_logs_bucket" {
  description = "An S3 bucket for the load balancer's access logs (null: none)."
  type        = string
  default     = null
}
