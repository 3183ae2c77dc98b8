# CloudCafe on AWS: the ALB in front of `cloudcafe serve` on ECS Fargate, the journal on Aurora
# PostgreSQL, the read models on DynamoDB, DocumentDB, Redshift and ElastiCache Redis, the outbox to
# Kinesis and SQS, and the dashboards and alarms the code renders. README.md ("Deploying to AWS")
# says how to run it; the modules are split by concern.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:the names are sorted and only the first three are used, so a new zone (the next letter) changes nothing
  state = "available"
}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  azs        = slice(data.aws_availability_zones.available.names, 0, 3)
}

module "network" {
  source = "./modules/network"

  environment        = var.environment
  aws_region         = var.aws_region
  vpc_cidr           = var.vpc_cidr
  azs                = local.azs
  single_nat_gateway = var.single_nat_gateway
  container_port     = local.container_port
  kms_key_arn        = module.data.kms_key_arn
  log_retention_days = var.log_retention_days
}

module "data" {
  source = "./modules/data"

  environment                = var.environment
  aws_region                 = var.aws_region
  account_id                 = local.account_id
  names                      = local.names
  lease_tables               = local.lease_tables
  vpc_id                     = module.network.vpc_id
  database_subnets           = module.network.database_subnets
  database_subnet_group_name = module.network.database_subnet_group_name
  aurora_security_group_id   = module.network.aurora_security_group_id
  redis_security_group_id    = module.network.redis_security_group_id
  documentdb_security_group  = module.network.documentdb_security_group_id
  redshift_security_group_id = module.network.redshift_security_group_id
  aurora_instance_class      = var.aurora_instance_class
  aurora_instances           = var.aurora_instances
  aurora_storage_type        = var.aurora_storage_type
  cache_node_type            = var.cache_node_type
  cache_nodes                = var.cache_nodes
  documentdb_instance_class  = var.documentdb_instance_class
  documentdb_instances       = var.documentdb_instances
  analytics_on_redshift      = var.analytics_on_redshift
  redshift_node_type         = var.redshift_node_type
  redshift_nodes             = var.redshift_nodes
  deletion_protection        = var.deletion_protection
}

module "messaging" {
  source = "./modules/messaging"

  names            = local.names
  kinesis_shards   = var.kinesis_shards
  analytics_shards = var.analytics_shards
  kms_key_arn      = module.data.kms_key_arn
}

module "edge" {
  source = "./modules/edge"

  names                = local.names
  vpc_id               = module.network.vpc_id
  public_subnets       = module.network.public_subnets
  security_group_id    = module.network.alb_security_group_id
  certificate_arn      = var.certificate_arn
  container_port       = local.container_port
  health_check_path    = local.health_check_path
  deregistration_delay = local.deregistration_delay
  deletion_protection  = var.deletion_protection
}

module "compute" {
  source = "./modules/compute"

  environment           = var.environment
  aws_region            = var.aws_region
  names                 = local.names
  image_tag             = var.image_tag
  kms_key_arn           = module.data.kms_key_arn
  private_subnets       = module.network.private_subnets
  security_group_id     = module.network.tasks_security_group_id
  target_group_arn      = module.edge.target_group_arn
  target_resource_label = "${module.edge.load_balancer_arn_suffix}/${module.edge.target_group_arn_suffix}"
  container_port        = local.container_port
  health_check_path     = local.health_check_path
  stop_timeout          = local.stop_timeout
  task_cpu              = var.task_cpu
  task_memory           = var.task_memory
  tasks_min             = var.tasks_min
  tasks_max             = var.tasks_max
  requests_per_target   = var.requests_per_target
  log_retention_days    = var.log_retention_days
  task_role_statements  = local.task_role_statements
  notification_sender   = var.notification_sender

  # What `cloudcafe serve` is told (see node_environment in modules/compute/main.tf).
  journal_url              = "postgres://${module.data.journal_user}@${module.data.aurora_endpoint}:5432/${module.data.journal_database}"
  redis_url                = "rediss://${module.data.redis_endpoint}:6379"
  documentdb_url           = "mongodb://${module.data.documentdb_user}@${module.data.documentdb_endpoint}:27017/?replicaSet=rs0&readPreference=secondaryPreferred&retryWrites=false"
  analytics_url            = var.analytics_on_redshift ? "postgres://${module.data.redshift_user}@${module.data.redshift_endpoint}:5439/${module.data.redshift_database}" : null
  auth_key_secret_arn      = module.data.auth_key_secret_arn
  redis_secret_arn         = module.data.redis_secret_arn
  documentdb_secret_arn    = module.data.documentdb_secret_arn
  redshift_secret_arn      = module.data.redshift_secret_arn
  aurora_master_secret_arn = module.data.aurora_master_secret_arn
  aurora_endpoint          = module.data.aurora_endpoint
  journal_database         = module.data.journal_database
  journal_user             = module.data.journal_user
  journal_admin_user       = module.data.journal_admin_user
  jwks_url                 = var.jwks_url
  jwt_issuer               = var.jwt_issuer
  jwt_audience             = var.jwt_audience
}

module "chaos" {
  source = "./modules/chaos"

  environment        = var.environment
  aws_region         = var.aws_region
  account_id         = local.account_id
  names              = local.names
  kms_key_arn        = module.data.kms_key_arn
  log_retention_days = var.log_retention_days
}

module "observability" {
  source = "./modules/observability"

  environment     = var.environment
  cloudwatch_dir  = local.cloudwatch_dir
  alarm_topic_arn = var.alarm_topic_arn
  # The rendered files name the load balancer with a placeholder id; this is the real one.
  load_balancer_dimension = module.edge.load_balancer_arn_suffix
}

# The domain notification emails come from, as an SES identity (Easy DKIM: publish the records of
# the output ses_dkim_tokens in the domain's DNS, and leave the SES sandbox, before customers get mail).
resource "aws_sesv2_email_identity" "notifications" {
  email_identity = local.notification_domain
}
