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

variable "lease_tables" {
  description = "The Kinesis consumers' lease tables, by read model."
  type        = map(string)
}

variable "vpc_id" {
  type = string
}

variable "database_subnets" {
  type = list(string)
}

variable "database_subnet_group_name" {
  type = string
}

variable "aurora_security_group_id" {
  type = string
}

variable "redis_security_group_id" {
  type = string
}

variable "documentdb_security_group" {
  type = string
}

variable "redshift_security_group_id" {
  type = string
}

variable "aurora_instance_class" {
  type = string
}

variable "aurora_storage_type" {
  type = string
}

variable "aurora_instances" {
  type = number
}

variable "cache_node_type" {
  type = string
}

variable "cache_nodes" {
  type = number
}

variable "documentdb_instance_class" {
  type = string
}

variable "documentdb_instances" {
  type = number
}

variable "analytics_on_redshift" {
  type = bool
}

variable "redshift_node_type" {
  type = string
}

variable "redshift_nodes" {
  type = number
}

variable "deletion_protection" {
  type = bool
}
