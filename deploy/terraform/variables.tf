variable "environment" {
  description = "The deployment's name (prod, staging, dev): the suffix of every resource name and the Environment dimension of the metrics."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{1,11}$", var.environment))
    error_message = "environment is 2 to 12 lower-case letters and digits, starting with a letter (it ends up in DynamoDB, SQS and Redshift names)."
  }
}

variable "aws_region" {
  description = "The region of the whole deployment."
  type        = string
  default     = "us-east-1"
}

variable "vpc_cidr" {
  description = "The VPC's address range; the subnets are carved out of it (3 AZs x public, private, database)."
  type        = string
  default     = "10.40.0.0/16"
}

variable "single_nat_gateway" {
  description = "One NAT gateway for the VPC (dev) instead of one per AZ (prod)."
  type        = bool
  default     = false
}

variable "image_tag" {
  description = "The tag of the cloudcafe image in the ECR repository this configuration creates (tags are immutable: roll a new image by a new tag)."
  type        = string
}

variable "certificate_arn" {
  description = "The ACM certificate of the HTTPS listener (in aws_region)."
  type        = string
}

variable "alarm_topic_arn" {
  description = "The SNS topic the alarms notify (replaces the placeholder topic in deploy/cloudwatch/)."
  type        = string
}

variable "cloudwatch_dir" {
  description = "The directory of the rendered dashboards and alarms. The committed deploy/cloudwatch/ is rendered for prod; for another environment run `cloudcafe dashboard render --env <env> --out <dir>` and point this at <dir>."
  type        = string
  default     = null
}

variable "task_cpu" {
  description = "Fargate CPU units per task (1024 = 1 vCPU)."
  type        = number
  default     = 1024
}

variable "task_memory" {
  description = "Fargate memory per task, MiB."
  type        = number
  default     = 2048
}

variable "tasks_min" {
  description = "Fewest running tasks (autoscaling floor; also the starting count)."
  type        = number
  default     = 2
}

variable "tasks_max" {
  description = "Most running tasks (autoscaling ceiling)."
  type        = number
  default     = 10
}

variable "requests_per_target" {
  description = "The ALB requests per target per minute the request-count scaling policy keeps."
  type        = number
  default     = 6000
}

variable "aurora_instance_class" {
  description = "Aurora PostgreSQL instance class (writer and readers)."
  type        = string
  default     = "db.r6g.large"
}

variable "aurora_storage_type" {
  description = "Aurora storage: aurora-iopt1 (I/O-Optimized: no charge per I/O, the cheaper choice once I/O passes about a quarter of the bill, as a journal's appends do) or aurora (standard)."
  type        = string
  default     = "aurora-iopt1"
}

variable "aurora_instances" {
  description = "Aurora instances: 1 writer plus readers (a failover target needs at least 2)."
  type        = number
  default     = 2
}

variable "cache_node_type" {
  description = "ElastiCache Redis node type."
  type        = string
  default     = "cache.r6g.large"
}

variable "cache_nodes" {
  description = "ElastiCache Redis nodes: 1 primary plus replicas (automatic failover needs at least 2)."
  type        = number
  default     = 2
}

variable "documentdb_instance_class" {
  description = "DocumentDB instance class."
  type        = string
  default     = "db.r6g.large"
}

variable "documentdb_instances" {
  description = "DocumentDB instances."
  type        = number
  default     = 2
}

variable "analytics_on_redshift" {
  description = "Keep the analytics model in its own Redshift cluster. False: the nodes keep it in the journal's database (schema cloudcafe_analytics), which saves the largest line of a small deployment's bill."
  type        = bool
  default     = true
}

variable "redshift_node_type" {
  description = "Redshift node type."
  type        = string
  default     = "ra3.xlplus"
}

variable "redshift_nodes" {
  description = "Redshift nodes."
  type        = number
  default     = 2
}

variable "kinesis_shards" {
  description = "Shards of the order-events stream (the Kinesis consumers share them by leases)."
  type        = number
  default     = 4
}

variable "analytics_shards" {
  description = "Shards of the analytics-events stream (partitioned by store; the analytics model's consumers share them by leases). The node's --analytics-shards default."
  type        = number
  default     = 2
}

variable "log_retention_days" {
  description = "Days the nodes' logs are kept in CloudWatch Logs."
  type        = number
  default     = 30
}

variable "jwks_url" {
  description = "An identity provider's JWKS URL (Amazon Cognito: https://cognito-idp.<region>.amazonaws.com/<pool>/.well-known/jwks.json). Null: the nodes verify tokens with the deployment's own signing key, kept in Secrets Manager."
  type        = string
  default     = null
}

variable "jwt_issuer" {
  description = "The iss a token must have with jwks_url."
  type        = string
  default     = null
}

variable "jwt_audience" {
  description = "The aud a token must have (Cognito ID tokens: the app client's id). Null: the node's default."
  type        = string
  default     = null
}

variable "deletion_protection" {
  description = "Deletion protection on the ALB and the databases (turn off only to tear a dev deployment down)."
  type        = bool
  default     = true
}

variable "notification_sender" {
  description = "The address customers' notification emails come from (SES); its domain is verified as an SES identity (publish the DKIM records of the output ses_dkim_tokens)."
  type        = string
  default     = "orders@cloudcafe.example"

  validation {
    condition     = length(split("@", var.notification_sender)) == 2
    error_message = "notification_sender is an email address."
  }
}
