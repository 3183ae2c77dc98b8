output "kms_key_arn" {
  value = aws_kms_key.data.arn
}

output "aurora_endpoint" {
  value = module.aurora.cluster_endpoint
}

output "aurora_resource_id" {
  description = "The cluster's resource id: IAM database authentication names it in rds-db:connect."
  value       = module.aurora.cluster_resource_id
}

output "aurora_master_secret_arn" {
  description = "The RDS-managed secret of the master user (used once, by the bootstrap task)."
  value       = module.aurora.cluster_master_user_secret[0].secret_arn
}

output "journal_database" {
  value = local.journal_database
}

output "journal_admin_user" {
  description = "The master user: only the bootstrap task logs in as it."
  value       = local.journal_admin_user
}

output "journal_user" {
  description = "The database user the nodes log in as, with IAM tokens."
  value       = local.journal_user
}

output "redis_endpoint" {
  value = module.cache.replication_group_primary_endpoint_address
}

output "redis_secret_arn" {
  value = aws_secretsmanager_secret.node["redis-auth-token"].arn
}

output "documentdb_endpoint" {
  value = aws_docdb_cluster.documents.endpoint
}

output "documentdb_user" {
  value = aws_docdb_cluster.documents.master_username
}

output "documentdb_secret_arn" {
  value = aws_secretsmanager_secret.node["documentdb-password"].arn
}

output "redshift_endpoint" {
  value = try(module.redshift[0].cluster_hostname, null)
}

output "redshift_database" {
  value = local.redshift_database
}

output "redshift_user" {
  value = local.redshift_user
}

output "redshift_secret_arn" {
  value = try(aws_secretsmanager_secret.node["redshift-password"].arn, null)
}

output "auth_key_secret_arn" {
  value = aws_secretsmanager_secret.node["auth-key"].arn
}
