output "fis_role_arn" {
  value = aws_iam_role.fis.arn
}

output "fis_log_group" {
  value = aws_cloudwatch_log_group.fis.name
}
