output "dns_name" {
  value = module.alb.dns_name
}

output "load_balancer_arn_suffix" {
  description = "The LoadBalancer dimension of the ALB's CloudWatch metrics (app/<name>/<id>)."
  value       = module.alb.arn_suffix
}

output "target_group_arn" {
  value = module.alb.target_groups["nodes"].arn
}

output "target_group_arn_suffix" {
  value = module.alb.target_groups["nodes"].arn_suffix
}
