# A VPC over three availability zones (public subnets for the load balancer, private ones for the
# tasks, database subnets for Aurora, ElastiCache, DocumentDB and Redshift), and one security group
# per part that lets in only what that part needs.

locals {
  # /20s: 4096 addresses per subnet, room for many tasks (Fargate takes one address per task).
  public_subnets   = [for i in range(3) : cidrsubnet(var.vpc_cidr, 4, i)]
  private_subnets  = [for i in range(3) : cidrsubnet(var.vpc_cidr, 4, i + 4)]
  database_subnets = [for i in range(3) : cidrsubnet(var.vpc_cidr, 4, i + 8)]

  # What the tasks reach inside the VPC, by security group and port.
  stores = {
    aurora     = 5432
    redis      = 6379
    documentdb = 27017
    redshift   = 5439
  }
  store_groups = {
    aurora     = aws_security_group.aurora.id
    redis      = aws_security_group.redis.id
    documentdb = aws_security_group.documentdb.id
    redshift   = aws_security_group.redshift.id
  }
}

module "vpc" {
  #checkov:skip=CKV_TF_1:a registry module pinned to one exact release; the registry serves each release as an immutable tag, and a git commit source would lose its version checks
  source  = "terraform-aws-modules/vpc/aws"
  version = "5.8.1"

  name = "cloudcafe-${var.environment}"
  cidr = var.vpc_cidr
  azs  = var.azs

  public_subnets   = local.public_subnets
  private_subnets  = local.private_subnets
  database_subnets = local.database_subnets

  create_database_subnet_group       = true
  create_database_subnet_route_table = true

  # The tasks reach the AWS APIs (DynamoDB, Kinesis, SQS, ECR, Secrets Manager, CloudWatch) through NAT.
  enable_nat_gateway     = true
  single_nat_gateway     = var.single_nat_gateway
  one_nat_gateway_per_az = !var.single_nat_gateway

  enable_dns_hostnames = true
  enable_dns_support   = true

  # No rule in the default security group: every part has its own below.
  manage_default_security_group  = true
  default_security_group_ingress = []
  default_security_group_egress  = []

  enable_flow_log                                 = true
  create_flow_log_cloudwatch_log_group            = true
  create_flow_log_cloudwatch_iam_role             = true
  flow_log_max_aggregation_interval               = 60
  flow_log_cloudwatch_log_group_retention_in_days = var.log_retention_days
  flow_log_cloudwatch_log_group_kms_key_id        = var.kms_key_arn
}

# The load balancer: HTTPS and HTTP (redirected) from anywhere, and only to the tasks' port.
resource "aws_security_group" "alb" {
  #checkov:skip=CKV2_AWS_5:attached through a module input (modules/edge: the ALB), which checkov does not follow offline
  name        = "cloudcafe-alb-${var.environment}"
  description = "CloudCafe load balancer: HTTP and HTTPS in, the tasks' port out"
  vpc_id      = module.vpc.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  security_group_id = aws_security_group.alb.id
  description       = "HTTPS from clients"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_ingress_rule" "alb_http" {
  #checkov:skip=CKV_AWS_260:port 80 only answers with a redirect to HTTPS (modules/edge), so clients that type the bare name still arrive
  security_group_id = aws_security_group.alb.id
  description       = "HTTP from clients, redirected to HTTPS"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
}

resource "aws_vpc_security_group_egress_rule" "alb_to_tasks" {
  security_group_id            = aws_security_group.alb.id
  description                  = "Requests and health checks to the nodes"
  referenced_security_group_id = aws_security_group.tasks.id
  ip_protocol                  = "tcp"
  from_port                    = var.container_port
  to_port                      = var.container_port
}

# The tasks: in from the load balancer on their port; out to the stores and to the AWS APIs (443).
resource "aws_security_group" "tasks" {
  #checkov:skip=CKV2_AWS_5:attached through a module input (modules/compute: the ECS service), which checkov does not follow offline
  name        = "cloudcafe-tasks-${var.environment}"
  description = "CloudCafe nodes: the load balancer in, the stores and the AWS APIs out"
  vpc_id      = module.vpc.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "tasks_from_alb" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "Requests and health checks from the load balancer"
  referenced_security_group_id = aws_security_group.alb.id
  ip_protocol                  = "tcp"
  from_port                    = var.container_port
  to_port                      = var.container_port
}

resource "aws_vpc_security_group_egress_rule" "tasks_to_stores" {
  for_each = local.stores

  security_group_id            = aws_security_group.tasks.id
  description                  = "To ${each.key}"
  referenced_security_group_id = local.store_groups[each.key]
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
}

resource "aws_vpc_security_group_egress_rule" "tasks_to_aws_apis" {
  security_group_id = aws_security_group.tasks.id
  description       = "HTTPS to the AWS APIs (DynamoDB, Kinesis, SQS, ECR, Secrets Manager, CloudWatch) through NAT"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

# The stores: each lets in only the tasks, on its own port, and opens nothing outward.
resource "aws_security_group" "aurora" {
  #checkov:skip=CKV2_AWS_5:attached through a module input (modules/data: Aurora), which checkov does not follow offline
  name        = "cloudcafe-aurora-${var.environment}"
  description = "CloudCafe journal (Aurora PostgreSQL): the tasks in on 5432"
  vpc_id      = module.vpc.vpc_id
}

resource "aws_security_group" "redis" {
  #checkov:skip=CKV2_AWS_5:attached through a module input (modules/data: ElastiCache), which checkov does not follow offline
  name        = "cloudcafe-redis-${var.environment}"
  description = "CloudCafe cache (ElastiCache Redis): the tasks in on 6379"
  vpc_id      = module.vpc.vpc_id
}

resource "aws_security_group" "documentdb" {
  #checkov:skip=CKV2_AWS_5:attached through a module input (modules/data: DocumentDB), which checkov does not follow offline
  name        = "cloudcafe-documentdb-${var.environment}"
  description = "CloudCafe documents (DocumentDB): the tasks in on 27017"
  vpc_id      = module.vpc.vpc_id
}

resource "aws_security_group" "redshift" {
  #checkov:skip=CKV2_AWS_5:attached through a module input (modules/data: Redshift), which checkov does not follow offline
  name        = "cloudcafe-redshift-${var.environment}"
  description = "CloudCafe analytics (Redshift): the tasks in on 5439"
  vpc_id      = module.vpc.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "stores_from_tasks" {
  for_each = local.stores

  security_group_id            = local.store_groups[each.key]
  description                  = "From the CloudCafe nodes"
  referenced_security_group_id = aws_security_group.tasks.id
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
}

# One-off tasks that load and check the deployment from inside the VPC (`cloudcafe flood --target`
# at the nodes' addresses, `cloudcafe verify` on the journal): README, "Deploying to AWS".
resource "aws_security_group" "load" {
  #checkov:skip=CKV2_AWS_5:attached by `aws ecs run-task --network-configuration`, outside Terraform
  name        = "cloudcafe-load-${var.environment}"
  description = "CloudCafe one-off flood and verify tasks: the nodes, the journal and the AWS APIs out"
  vpc_id      = module.vpc.vpc_id
}

resource "aws_vpc_security_group_egress_rule" "load_to_tasks" {
  security_group_id            = aws_security_group.load.id
  description                  = "Flood requests to the nodes"
  referenced_security_group_id = aws_security_group.tasks.id
  ip_protocol                  = "tcp"
  from_port                    = var.container_port
  to_port                      = var.container_port
}

resource "aws_vpc_security_group_ingress_rule" "tasks_from_load" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "Flood requests from the one-off load tasks"
  referenced_security_group_id = aws_security_group.load.id
  ip_protocol                  = "tcp"
  from_port                    = var.container_port
  to_port                      = var.container_port
}

resource "aws_vpc_security_group_egress_rule" "load_to_journal" {
  security_group_id            = aws_security_group.load.id
  description                  = "verify reads the journal"
  referenced_security_group_id = aws_security_group.aurora.id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

resource "aws_vpc_security_group_ingress_rule" "journal_from_load" {
  security_group_id            = aws_security_group.aurora.id
  description                  = "verify from the one-off load tasks"
  referenced_security_group_id = aws_security_group.load.id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

resource "aws_vpc_security_group_egress_rule" "load_to_aws_apis" {
  security_group_id = aws_security_group.load.id
  description       = "HTTPS to the AWS APIs (image pull, logs, IAM tokens) through NAT"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

# The brokers through interface endpoints, DynamoDB through a gateway endpoint: the nodes' busiest
# AWS traffic stays off the NAT gateways (cheaper, and one fewer hop). The chaos plan broker-outage
# finds the broker endpoints by their Component tag and cuts them.
resource "aws_security_group" "endpoints" {
  #checkov:skip=CKV2_AWS_5:attached to the interface endpoints below through a for_each, which checkov does not follow
  name        = "cloudcafe-endpoints-${var.environment}"
  description = "CloudCafe interface endpoints (Kinesis, SQS): HTTPS from the nodes and the load tasks"
  vpc_id      = module.vpc.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "endpoints_from" {
  for_each = {
    tasks = aws_security_group.tasks.id
    load  = aws_security_group.load.id
  }

  security_group_id            = aws_security_group.endpoints.id
  description                  = "HTTPS from the ${each.key}"
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
}

resource "aws_vpc_endpoint" "brokers" {
  for_each = toset(["kinesis-streams", "sqs"])

  vpc_id              = module.vpc.vpc_id
  service_name        = "com.amazonaws.${var.aws_region}.${each.value}"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = module.vpc.private_subnets
  security_group_ids  = [aws_security_group.endpoints.id]
  private_dns_enabled = true

  tags = { Component = "broker-endpoint", Name = "cloudcafe-${each.value}-${var.environment}" }
}

resource "aws_vpc_endpoint" "dynamodb" {
  vpc_id            = module.vpc.vpc_id
  service_name      = "com.amazonaws.${var.aws_region}.dynamodb"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = module.vpc.private_route_table_ids

  tags = { Name = "cloudcafe-dynamodb-${var.environment}" }
}
