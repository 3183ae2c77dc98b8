output "ecr_repository_url" {
  value = aws_ecr_repository.cloudcafe.repository_url
}

output "bootstrap_task_definition" {
  value = aws_ecs_task_definition.journal_bootstrap.family
}

output "service_name" {
  value = module.service.name
}
