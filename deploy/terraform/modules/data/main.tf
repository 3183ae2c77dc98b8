# The stores: Aurora PostgreSQL (the journal, the storefront model), DynamoDB (the payment ledger,
# the projection offsets, the consumers' leases; the node creates its read models' tables itself),
# ElastiCache Redis, DocumentDB and Redshift; one customer-managed key for all of them; the secrets
# the nodes are given.

locals {
  journal_database   = "cloudcafe"
  journal_user       = "cloudcafe_app"
  journal_admin_user = "cloudcafe_admin"
  redshift_database  = "analytics"
  redshift_user      = "cloudcafe"
}

# A key policy's Resource "*" means the key itself; the account's IAM policies decide who else may use it.
data "aws_iam_policy_document" "data_key" {
  #checkov:skip=CKV_AWS_111:a key policy: "*" is this key, and only the account root is granted administration
  #checkov:skip=CKV_AWS_356:a key policy: "*" is this key
  #checkov:skip=CKV_AWS_109:a key policy: "*" is this key, and only the account root is granted administration
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::${var.account_id}:root"]
    }
  }

  statement {
    sid       = "CloudWatchLogsEncrypts"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${var.aws_region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:aws:logs:${var.aws_region}:${var.account_id}:log-group:*"]
    }
  }
}

resource "aws_kms_key" "data" {
  description             = "CloudCafe ${var.environment}: the journal, read models, streams, queues, secrets and logs"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.data_key.json
}

resource "aws_kms_alias" "data" {
  name          = "alias/cloudcafe-${var.environment}"
  target_key_id = aws_kms_key.data.key_id
}

# ---- Aurora PostgreSQL: the journal and the storefront read model ----

module "aurora" {
  #checkov:skip=CKV_TF_1:a registry module pinned to one exact release; the registry serves each release as an immutable tag, and a git commit source would lose its version checks
  source  = "terraform-aws-modules/rds-aurora/aws"
  version = "9.13.0"

  name           = var.names.aurora_cluster
  engine         = "aurora-postgresql"
  engine_version = "16.6"
  instance_class = var.aurora_instance_class
  instances      = { for i in range(var.aurora_instances) : "node-${i + 1}" => {} }

  vpc_id                 = var.vpc_id
  db_subnet_group_name   = var.database_subnet_group_name
  create_db_subnet_group = false
  create_security_group  = false
  vpc_security_group_ids = [var.aurora_security_group_id]

  database_name               = local.journal_database
  master_username             = local.journal_admin_user
  manage_master_user_password = true
  # The nodes log in with IAM tokens (--pg-iam-auth), never with a stored password.
  iam_database_authentication_enabled = true

  storage_type      = var.aurora_storage_type
  storage_encrypted = true
  kms_key_id        = aws_kms_key.data.arn

  # Disaster recovery: 7 days of point-in-time restore, a final snapshot, no accidental deletion.
  backup_retention_period   = 7
  preferred_backup_window   = "03:00-04:00"
  copy_tags_to_snapshot     = true
  skip_final_snapshot       = false
  final_snapshot_identifier = "${var.names.aurora_cluster}-final"
  deletion_protection       = var.deletion_protection

  enabled_cloudwatch_logs_exports = ["postgresql"]
  performance_insights_enabled    = true
  performance_insights_kms_key_id = aws_kms_key.data.arn
  monitoring_interval             = 60
  auto_minor_version_upgrade      = true
  apply_immediately               = false
}

# ---- DynamoDB: the tables whose names never change ----
# The read models' own tables (`active-orders`, `store-inventory`) come in generations the node
# creates and deletes as it rebuilds (modules/../iam.tf grants it that for their name prefixes);
# a lost read model is rebuilt from the journal (`cloudcafe replay`), not restored.

module "payments_table" {
  #checkov:skip=CKV_TF_1:a registry module pinned to one exact release; the registry serves each release as an immutable tag, and a git commit source would lose its version checks
  source  = "terraform-aws-modules/dynamodb-table/aws"
  version = "4.0.0"

  name         = var.names.payments_table
  hash_key     = "event_id"
  billing_mode = "PAY_PER_REQUEST"
  attributes   = [{ name = "event_id", type = "S" }]

  # The ledger records what the payment processor did at the card processor: it cannot be rebuilt
  # from the journal, so it can be restored to any second of the last 35 days.
  point_in_time_recovery_enabled     = true
  server_side_encryption_enabled     = true
  server_side_encryption_kms_key_arn = aws_kms_key.data.arn
  deletion_protection_enabled        = var.deletion_protection
}

# One item per notification delivered (the notification worker claims, then marks it sent): what
# was told to customers, which the journal cannot tell again.
module "notifications_table" {
  #checkov:skip=CKV_TF_1:a registry module pinned to one exact release; the registry serves each release as an immutable tag, and a git commit source would lose its version checks
  source  = "terraform-aws-modules/dynamodb-table/aws"
  version = "4.0.0"

  name         = var.names.notifications_table
  hash_key     = "event_id"
  billing_mode = "PAY_PER_REQUEST"
  attributes   = [{ name = "event_id", type = "S" }]

  point_in_time_recovery_enabled     = true
  server_side_encryption_enabled     = true
  server_side_encryption_kms_key_arn = aws_kms_key.data.arn
  deletion_protection_enabled        = var.deletion_protection
}

module "offsets_table" {
  #checkov:skip=CKV_TF_1:a registry module pinned to one exact release; the registry serves each release as an immutable tag, and a git commit source would lose its version checks
  source  = "terraform-aws-modules/dynamodb-table/aws"
  version = "4.0.0"

  name         = var.names.offsets_table
  hash_key     = "name"
  billing_mode = "PAY_PER_REQUEST"
  attributes   = [{ name = "name", type = "S" }]

  point_in_time_recovery_enabled     = true
  server_side_encryption_enabled     = true
  server_side_encryption_kms_key_arn = aws_kms_key.data.arn
  deletion_protection_enabled        = var.deletion_protection
}

module "lease_tables" {
  #checkov:skip=CKV_TF_1:a registry module pinned to one exact release; the registry serves each release as an immutable tag, and a git commit source would lose its version checks
  source   = "terraform-aws-modules/dynamodb-table/aws"
  version  = "4.0.0"
  for_each = var.lease_tables

  name         = each.value
  hash_key     = "shard_id"
  billing_mode = "PAY_PER_REQUEST"
  attributes   = [{ name = "shard_id", type = "S" }]

  point_in_time_recovery_enabled     = true
  server_side_encryption_enabled     = true
  server_side_encryption_kms_key_arn = aws_kms_key.data.arn
}

# ---- ElastiCache Redis: the read-through cache and the shared rate limits ----

resource "random_password" "redis" {
  length  = 48
  special = false
}

module "cache" {
  #checkov:skip=CKV_TF_1:a registry module pinned to one exact release; the registry serves each release as an immutable tag, and a git commit source would lose its version checks
  source  = "terraform-aws-modules/elasticache/aws"
  version = "1.6.0"

  replication_group_id = var.names.cache_cluster
  description          = "CloudCafe cache and rate limits"
  engine               = "redis"
  engine_version       = "7.1"
  node_type            = var.cache_node_type
  num_cache_clusters   = var.cache_nodes

  automatic_failover_enabled = var.cache_nodes > 1
  multi_az_enabled           = var.cache_nodes > 1

  # The nodes speak rediss:// with the AUTH token (CLOUDCAFE_REDIS_PASSWORD).
  transit_encryption_enabled = true
  auth_token                 = random_password.redis.result
  at_rest_encryption_enabled = true
  kms_key_arn                = aws_kms_key.data.arn

  vpc_id                = var.vpc_id
  subnet_ids            = var.database_subnets
  create_security_group = false
  security_group_ids    = [var.redis_security_group_id]

  create_parameter_group = true
  parameter_group_family = "redis7"
  # The cache is never the only copy of anything: evict, never refuse a write.
  parameters = [{ name = "maxmemory-policy", value = "allkeys-lru" }]

  snapshot_retention_limit = 1
  apply_immediately        = false

  # How the chaos plans' FIS templates find the replication group (memorydb-restart).
  tags = { Component = "cache" }
}

# ---- DocumentDB: the menu and order documents ----

resource "random_password" "documentdb" {
  length  = 40
  special = false
}

resource "aws_docdb_subnet_group" "documents" {
  name       = var.names.documentdb_cluster
  subnet_ids = var.database_subnets
}

resource "aws_docdb_cluster_parameter_group" "documents" {
  family      = "docdb5.0"
  name        = var.names.documentdb_cluster
  description = "CloudCafe documents: TLS required, audit logs on"

  parameter {
    name  = "tls"
    value = "enabled"
  }

  parameter {
    name  = "audit_logs"
    value = "enabled"
  }
}

resource "aws_docdb_cluster" "documents" {
  cluster_identifier              = var.names.documentdb_cluster
  engine                          = "docdb"
  engine_version                  = "5.0.0"
  master_username                 = "cloudcafe"
  master_password                 = random_password.documentdb.result
  db_subnet_group_name            = aws_docdb_subnet_group.documents.name
  db_cluster_parameter_group_name = aws_docdb_cluster_parameter_group.documents.name
  vpc_security_group_ids          = [var.documentdb_security_group]
  storage_encrypted               = true
  kms_key_id                      = aws_kms_key.data.arn
  backup_retention_period         = 7
  preferred_backup_window         = "03:00-04:00"
  enabled_cloudwatch_logs_exports = ["audit", "profiler"]
  deletion_protection             = var.deletion_protection
  skip_final_snapshot             = false
  final_snapshot_identifier       = "${var.names.documentdb_cluster}-final"
}

resource "aws_docdb_cluster_instance" "documents" {
  count = var.documentdb_instances

  identifier                 = "${var.names.documentdb_cluster}-${count.index + 1}"
  cluster_identifier         = aws_docdb_cluster.documents.id
  instance_class             = var.documentdb_instance_class
  auto_minor_version_upgrade = true
}

# ---- Redshift: the analytics model ----

resource "random_password" "redshift" {
  length           = 40
  special          = true
  override_special = "!#%^*-_=+"
  min_upper        = 1
  min_lower        = 1
  min_numeric      = 1
}

module "redshift" {
  count = var.analytics_on_redshift ? 1 : 0

  #checkov:skip=CKV_TF_1:a registry module pinned to one exact release; the registry serves each release as an immutable tag, and a git commit source would lose its version checks
  source  = "terraform-aws-modules/redshift/aws"
  version = "6.0.0"

  cluster_identifier = var.names.redshift_cluster
  node_type          = var.redshift_node_type
  number_of_nodes    = var.redshift_nodes

  database_name   = local.redshift_database
  master_username = local.redshift_user
  # The password the nodes get as CLOUDCAFE_ANALYTICS_PASSWORD (a secret below, not rotated:
  # a new one is a new apply and a rolling restart of the tasks).
  create_random_password = false
  master_password        = random_password.redshift.result

  encrypted   = true
  kms_key_arn = aws_kms_key.data.arn

  subnet_ids             = var.database_subnets
  vpc_security_group_ids = [var.redshift_security_group_id]
  publicly_accessible    = false
  enhanced_vpc_routing   = true

  automated_snapshot_retention_period = 7
  skip_final_snapshot                 = false
  final_snapshot_identifier           = "${var.names.redshift_cluster}-final"

  logging = {
    enable               = true
    log_destination_type = "cloudwatch"
    log_exports          = ["connectionlog", "userlog", "useractivitylog"]
  }
}

# ---- The secrets the nodes are given (ECS injects them as environment variables) ----

# The Ed25519 key the nodes verify bearer tokens with (PKCS#8 PEM, as `cloudcafe token issue` reads
# it), unless the deployment uses an identity provider's JWKS.
resource "tls_private_key" "auth" {
  algorithm = "ED25519"
}

locals {
  # The secrets the nodes are given, by name: what each is for (and the variable ECS injects it as),
  # and apart from it, its value. for_each takes only the names: Terraform refuses sensitive values
  # (the generated passwords and key) in a for_each.
  secret_descriptions = merge(
    {
      auth-key            = "The key CloudCafe nodes verify bearer tokens with (CLOUDCAFE_AUTH_KEY)"
      redis-auth-token    = "ElastiCache AUTH token (CLOUDCAFE_REDIS_PASSWORD)"
      documentdb-password = "DocumentDB password (CLOUDCAFE_DOCUMENTDB_PASSWORD)"
    },
    var.analytics_on_redshift ? tomap({ redshift-password = "Redshift password (CLOUDCAFE_ANALYTICS_PASSWORD)" }) : tomap({}),
  )
  secret_values = {
    auth-key            = tls_private_key.auth.private_key_pem_pkcs8
    redis-auth-token    = random_password.redis.result
    documentdb-password = random_password.documentdb.result
    redshift-password   = random_password.redshift.result
  }
}

resource "aws_secretsmanager_secret" "node" {
  #checkov:skip=CKV2_AWS_57:the nodes read their secrets at start, so a rotation is a new value plus a new deployment (README, "Deploying to AWS"); a new signing key also ends every token the old one issued
  for_each = local.secret_descriptions

  name        = "cloudcafe/${var.environment}/${each.key}"
  description = each.value
  kms_key_id  = aws_kms_key.data.arn
}

resource "aws_secretsmanager_secret_version" "node" {
  for_each = local.secret_descriptions

  secret_id     = aws_secretsmanager_secret.node[each.key].id
  secret_string = local.secret_values[each.key]
}
