output "load_balancer_dns_name" {
  description = "Point the service's DNS name (the certificate's) at this."
  value       = module.edge.dns_name
}

output "ecr_repository_url" {
  description = "Push the cloudcafe image here (docker push <url>:<tag>), then apply with image_tag = <tag>."
  value       = module.compute.ecr_repository_url
}

output "ecs_cluster" {
  value = local.names.ecs_cluster
}

output "ecs_service" {
  value = local.names.ecs_service
}

output "journal_bootstrap_task" {
  description = "Run once after the first apply: creates the journal's database user (see README)."
  value       = module.compute.bootstrap_task_definition
}

output "private_subnets" {
  value = module.network.private_subnets
}

output "tasks_security_group_id" {
  value = module.network.tasks_security_group_id
}

output "auth_key_secret_arn" {
  description = "The Ed25519 key the nodes verify bearer tokens with: `cloudcafe token issue --auth-key-file` it to make an admin token."
  value       = module.data.auth_key_secret_arn
}

output "log_group" {
  value = local.names.log_group
}

output "load_security_group_id" {
  description = "For one-off flood and verify tasks (README, \"Deploying to AWS\")."
  value       = module.network.load_security_group_id
}

output "ses_dkim_tokens" {
  description = "CNAME <token>._domainkey.<notification domain> -> <token>.dkim.amazonses.com, one per token."
  value       = aws_sesv2_email_identity.notifications.dkim_signing_attributes[0].tokens
}
