variable "environment" {
  type = string
}

variable "aws_region" {
  type = string
}

variable "vpc_cidr" {
  type = string
}

variable "azs" {
  description = "Three availability zones."
  type        = list(string)
}

variable "single_nat_gateway" {
  type = bool
}

variable "container_port" {
  description = "The port the nodes listen on: the only port the load balancer reaches them on."
  type        = number
}

variable "kms_key_arn" {
  description = "Encrypts the flow log group."
  type        = string
}

variable "log_retention_days" {
  type = number
}
