# The production sizing the README's cost table prices: 2-10 tasks of 1 vCPU / 2 GiB, Aurora with
# a writer and a reader, Redis and DocumentDB with a replica, a 2-node Redshift, 4 Kinesis shards.
environment = "prod"

tasks_min   = 2
tasks_max   = 10
task_cpu    = 1024
task_memory = 2048

aurora_instance_class     = "db.r6g.large"
aurora_instances          = 2
cache_node_type           = "cache.r6g.large"
cache_nodes               = 2
documentdb_instance_class = "db.r6g.large"
documentdb_instances      = 2
redshift_node_type        = "ra3.xlplus"
redshift_nodes            = 2
kinesis_shards            = 4
analytics_shards          = 2

log_retention_days = 30

# Set per account:
# image_tag       = "0.1.0"
# certificate_arn = "arn:aws:acm:us-east-1:<account>:certificate/<id>"
# alarm_topic_arn = "arn:aws:sns:us-east-1:<account>:cloudcafe-alarms-prod"
