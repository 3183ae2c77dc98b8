# A small deployment to try things on: one NAT gateway, one instance of each store, 1-3 tasks.
environment        = "dev"
single_nat_gateway = true

tasks_min   = 1
tasks_max   = 3
task_cpu    = 512
task_memory = 1024

aurora_instance_class     = "db.t4g.medium"
aurora_instances          = 1
aurora_storage_type       = "aurora"
cache_node_type           = "cache.t4g.small"
cache_nodes               = 1
documentdb_instance_class = "db.t4g.medium"
documentdb_instances      = 1
# The analytics model in the journal's database: no Redshift cluster (the largest line of the bill).
analytics_on_redshift = false
kinesis_shards        = 1

log_retention_days  = 7
deletion_protection = false

# Set per account:
# image_tag       = "0.1.0"
# certificate_arn = "arn:aws:acm:us-east-1:<account>:certificate/<id>"
# alarm_topic_arn = "arn:aws:sns:us-east-1:<account>:cloudcafe-alarms-dev"
# cloudwatch_dir  = "../../deploy/cloudwatch-dev"  (cloudcafe dashboard render --env dev --out ...)
