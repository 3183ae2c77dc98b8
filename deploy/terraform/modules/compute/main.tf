# `cloudcafe serve` on ECS Fargate: the image's repository, the cluster, the service behind the
# load balancer with its autoscaling, its logs, its task role (iam.tf at the root says what it may
# touch) and its secrets, and the one-off task that creates the journal's database user.

locals {
  image = "${aws_ecr_repository.cloudcafe.repository_url}:${var.image_tag}"
  # The RDS global CA bundle, baked into the image (Dockerfile): Aurora's and DocumentDB's
  # certificates chain to it; Redshift's and ElastiCache's to the system's roots.
  rds_ca_bundle = "/etc/cloudcafe/rds-global-bundle.pem"

  # What `cloudcafe serve` reads from its environment (its flags' `env` names; `cloudcafe serve
  # --help` lists them). A test checks every name here against the binary.
  node_environment = merge(
    {
      CLOUDCAFE_LISTEN      = "0.0.0.0:${var.container_port}"
      CLOUDCAFE_ENVIRONMENT = var.environment
      CLOUDCAFE_LOG_FORMAT  = "json"
      # Metrics as Embedded Metric Format lines on stdout: the awslogs driver carries them to
      # CloudWatch Logs, which extracts the metrics; no PutMetricData call, no extra permission.
      CLOUDCAFE_CLOUDWATCH = "emf"
      RUST_LOG             = "info"

      CLOUDCAFE_JOURNAL          = var.journal_url
      CLOUDCAFE_PG_SSLMODE       = "verify-full"
      CLOUDCAFE_PG_SSL_ROOT_CERT = local.rds_ca_bundle
      CLOUDCAFE_PG_IAM_AUTH      = "true"

      CLOUDCAFE_REDIS_URL = var.redis_url

      CLOUDCAFE_DYNAMODB_ENV       = var.environment
      CLOUDCAFE_DOCUMENTDB_URL     = var.documentdb_url
      CLOUDCAFE_DOCUMENTDB_CA_FILE = local.rds_ca_bundle

      CLOUDCAFE_KINESIS_STREAM     = var.names.kinesis_stream
      CLOUDCAFE_PROJECTIONS_FROM   = "kinesis"
      CLOUDCAFE_LEASE_TABLE_PREFIX = var.names.lease_table_prefix
      CLOUDCAFE_PAYMENT_QUEUE      = var.names.payment_queue
      CLOUDCAFE_PAYMENT_DLQ        = var.names.payment_dlq
      CLOUDCAFE_PAYMENTS_TABLE     = var.names.payments_table

      # The analytics events are published either way; the analytics model follows their stream when
      # it lives in Redshift, and the journal when it lives in the journal's database.
      CLOUDCAFE_ANALYTICS_STREAM = var.names.analytics_stream
      CLOUDCAFE_ANALYTICS_FROM   = var.analytics_url == null ? "journal" : "kinesis"

      CLOUDCAFE_NOTIFICATION_QUEUE  = var.names.notification_queue
      CLOUDCAFE_NOTIFICATION_DLQ    = var.names.notification_dlq
      CLOUDCAFE_NOTIFICATIONS_TABLE = var.names.notifications_table
      CLOUDCAFE_NOTIFICATION_SENDER = var.notification_sender

      # Behind the ALB the client's address is the last X-Forwarded-For entry.
      CLOUDCAFE_TRUST_FORWARDED_FOR = "true"
    },
    # Without a Redshift cluster the analytics model lives in the journal's database.
    # (tomap on both sides: a conditional's two objects must have one type.)
    var.analytics_url == null ? tomap({}) : tomap({
      CLOUDCAFE_ANALYTICS_URL     = var.analytics_url
      CLOUDCAFE_ANALYTICS_SSLMODE = "verify-full"
    }),
    var.jwks_url == null ? tomap({}) : tomap({
      CLOUDCAFE_JWKS_URL   = var.jwks_url
      CLOUDCAFE_JWT_ISSUER = var.jwt_issuer
    }),
    var.jwt_audience == null ? tomap({}) : tomap({
      CLOUDCAFE_JWT_AUDIENCE = var.jwt_audience
    }),
  )

  # Secrets Manager values ECS injects as environment variables at the task's start.
  node_secrets = merge(
    {
      CLOUDCAFE_REDIS_PASSWORD      = var.redis_secret_arn
      CLOUDCAFE_DOCUMENTDB_PASSWORD = var.documentdb_secret_arn
    },
    var.redshift_secret_arn == null ? tomap({}) : tomap({ CLOUDCAFE_ANALYTICS_PASSWORD = var.redshift_secret_arn }),
    var.jwks_url == null ? tomap({ CLOUDCAFE_AUTH_KEY = var.auth_key_secret_arn }) : tomap({}),
  )
}

resource "aws_ecr_repository" "cloudcafe" {
  name                 = var.names.ecr_repository
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = var.kms_key_arn
  }
}

resource "aws_ecr_lifecycle_policy" "cloudcafe" {
  repository = aws_ecr_repository.cloudcafe.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Keep the newest 30 images"
      selection = {
        tagStatus   = "any"
        countType   = "imageCountMoreThan"
        countNumber = 30
      }
      action = { type = "expire" }
    }]
  })
}

module "cluster" {
  #checkov:skip=CKV_TF_1:a registry module pinned to one exact release; the registry serves each release as an immutable tag, and a git commit source would lose its version checks
  source  = "terraform-aws-modules/ecs/aws//modules/cluster"
  version = "5.12.1"

  cluster_name     = var.names.ecs_cluster
  cluster_settings = [{ name = "containerInsights", value = "enabled" }]

  fargate_capacity_providers = {
    FARGATE = {
      default_capacity_provider_strategy = { weight = 100, base = 1 }
    }
  }
}

module "service" {
  #checkov:skip=CKV_TF_1:a registry module pinned to one exact release; the registry serves each release as an immutable tag, and a git commit source would lose its version checks
  source  = "terraform-aws-modules/ecs/aws//modules/service"
  version = "5.12.1"

  name        = var.names.ecs_service
  cluster_arn = module.cluster.arn

  cpu                      = var.task_cpu
  memory                   = var.task_memory
  desired_count            = var.tasks_min
  launch_type              = "FARGATE"
  requires_compatibilities = ["FARGATE"]
  runtime_platform = {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  subnet_ids            = var.private_subnets
  create_security_group = false
  security_group_ids    = [var.security_group_id]
  assign_public_ip      = false

  # A task that does not come up healthy rolls the deployment back.
  deployment_circuit_breaker         = { enable = true, rollback = true }
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = 60
  enable_execute_command             = false

  load_balancer = {
    nodes = {
      target_group_arn = var.target_group_arn
      container_name   = var.names.container
      container_port   = var.container_port
    }
  }

  volume = {
    scratch = {}
  }

  container_definitions = {
    (var.names.container) = {
      image                    = local.image
      essential                = true
      readonly_root_filesystem = true
      # The image's own user (Dockerfile): no root in the container.
      user = "10001:10001"
      # SIGTERM (the image's STOPSIGNAL) starts the graceful stop; SIGKILL after this.
      stop_timeout = var.stop_timeout

      port_mappings = [{
        name          = "http"
        containerPort = var.container_port
        hostPort      = var.container_port
        protocol      = "tcp"
      }]

      environment = [for name, value in local.node_environment : { name = name, value = value }]
      secrets     = [for name, arn in local.node_secrets : { name = name, valueFrom = arn }]

      mount_points = [{
        sourceVolume  = "scratch"
        containerPath = "/tmp"
        readOnly      = false
      }]

      health_check = {
        command     = ["CMD", "curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:${var.container_port}${var.health_check_path}"]
        interval    = 10
        timeout     = 3
        retries     = 3
        startPeriod = 30
      }

      enable_cloudwatch_logging              = true
      create_cloudwatch_log_group            = true
      cloudwatch_log_group_name              = var.names.log_group
      cloudwatch_log_group_retention_in_days = var.log_retention_days
      cloudwatch_log_group_kms_key_id        = var.kms_key_arn
    }
  }

  # The execution role reads exactly the secrets the containers are given.
  task_exec_secret_arns = concat(values(local.node_secrets), [var.aurora_master_secret_arn])
  task_exec_iam_statements = [{
    sid       = "SecretsKey"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }]

  tasks_iam_role_name       = "cloudcafe-node-${var.environment}"
  tasks_iam_role_statements = var.task_role_statements

  autoscaling_min_capacity = var.tasks_min
  autoscaling_max_capacity = var.tasks_max
  autoscaling_policies = {
    cpu = {
      policy_type = "TargetTrackingScaling"
      target_tracking_scaling_policy_configuration = {
        predefined_metric_specification = {
          predefined_metric_type = "ECSServiceAverageCPUUtilization"
        }
        target_value       = 70
        scale_in_cooldown  = 300
        scale_out_cooldown = 60
      }
    }
    requests = {
      policy_type = "TargetTrackingScaling"
      target_tracking_scaling_policy_configuration = {
        predefined_metric_specification = {
          predefined_metric_type = "ALBRequestCountPerTarget"
          resource_label         = var.target_resource_label
        }
        target_value       = var.requests_per_target
        scale_in_cooldown  = 300
        scale_out_cooldown = 60
      }
    }
  }
}

# Run once after the first apply (README): makes the journal's database user, which logs in with IAM
# tokens only (`rds_iam`) and owns the database, so the nodes can create their tables.
resource "aws_ecs_task_definition" "journal_bootstrap" {
  family                   = "cloudcafe-journal-bootstrap-${var.environment}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 256
  memory                   = 512
  execution_role_arn       = module.service.task_exec_iam_role_arn

  container_definitions = jsonencode([{
    name                   = "bootstrap"
    image                  = "public.ecr.aws/docker/library/postgres:16-alpine"
    essential              = true
    readonlyRootFilesystem = true
    user                   = "70:70"
    command = [
      "psql", "-v", "ON_ERROR_STOP=1",
      "-c", "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${var.journal_user}') THEN CREATE ROLE ${var.journal_user} LOGIN; END IF; END $$",
      "-c", "GRANT rds_iam TO ${var.journal_user}",
      "-c", "GRANT ${var.journal_user} TO CURRENT_USER",
      "-c", "ALTER DATABASE ${var.journal_database} OWNER TO ${var.journal_user}",
    ]
    environment = [
      { name = "PGHOST", value = var.aurora_endpoint },
      { name = "PGDATABASE", value = var.journal_database },
      { name = "PGUSER", value = var.journal_admin_user },
      { name = "PGSSLMODE", value = "require" },
    ]
    secrets = [
      { name = "PGPASSWORD", valueFrom = "${var.aurora_master_secret_arn}:password::" },
    ]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = var.names.log_group
        awslogs-region        = var.aws_region
        awslogs-stream-prefix = "bootstrap"
      }
    }
  }])
}
