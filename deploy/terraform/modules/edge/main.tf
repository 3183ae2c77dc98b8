# The application load balancer: HTTPS with the deployment's certificate, HTTP redirected to it, one
# rule per service path (as the plans route them; every path goes to the same nodes, so a service
# can move to its own target group later without a client noticing), and the nodes' target group,
# health-checked on /health and drained for as long as a request can take.

locals {
  # The API's services, by the path prefix the plans route on.
  service_paths = {
    orders    = "/api/orders*"
    menu      = "/api/menu*"
    inventory = "/api/inventory*"
    loyalty   = "/api/loyalty*"
    payments  = "/api/payments*"
    analytics = "/api/analytics*"
    stores    = "/api/stores*"
    customers = "/api/customers*"
    # The admin API needs an admin's token on every route but the dashboard page's empty shell.
    admin = "/admin/*"
  }
}

module "alb" {
  #checkov:skip=CKV_TF_1:a registry module pinned to one exact release; the registry serves each release as an immutable tag, and a git commit source would lose its version checks
  source  = "terraform-aws-modules/alb/aws"
  version = "9.16.0"

  name               = var.names.load_balancer
  load_balancer_type = "application"
  vpc_id             = var.vpc_id
  subnets            = var.public_subnets

  create_security_group = false
  security_groups       = [var.security_group_id]

  enable_deletion_protection = var.deletion_protection
  drop_invalid_header_fields = true
  # The nodes' own timeouts (5 s for a head, 5 s for a body) end slow requests first.
  idle_timeout = 60

  # No bucket, no access logs (an empty map is the module's "off").
  access_logs = var.access_logs_bucket == null ? tomap({}) : tomap({
    bucket  = var.access_logs_bucket
    enabled = "true"
  })

  listeners = {
    http-redirect = {
      port     = 80
      protocol = "HTTP"
      redirect = {
        port        = "443"
        protocol    = "HTTPS"
        status_code = "HTTP_301"
      }
    }

    https = {
      port            = 443
      protocol        = "HTTPS"
      certificate_arn = var.certificate_arn
      ssl_policy      = "ELBSecurityPolicy-TLS13-1-2-2021-06"

      # Anything outside the routed paths is not CloudCafe's; /metrics stays inside the VPC.
      fixed_response = {
        content_type = "application/json"
        message_body = "{\"error\":\"no such route\",\"field\":\"path\"}"
        status_code  = "404"
      }

      rules = merge(
        {
          for service, path in local.service_paths : service => {
            priority = 10 + index(keys(local.service_paths), service)
            actions = [{
              type             = "forward"
              target_group_key = "nodes"
            }]
            conditions = [{
              path_pattern = {
                values = [path]
              }
            }]
          }
        },
        {
          node = {
            priority = 100
            actions = [{
              type             = "forward"
              target_group_key = "nodes"
            }]
            conditions = [{
              path_pattern = {
                values = ["/health", "/ready", "/openapi.json"]
              }
            }]
          }
        },
      )
    }
  }

  target_groups = {
    nodes = {
      name                 = var.names.target_group
      protocol             = "HTTP"
      port                 = var.container_port
      target_type          = "ip"
      deregistration_delay = var.deregistration_delay
      # ECS registers the tasks' addresses itself.
      create_attachment = false

      health_check = {
        enabled             = true
        path                = var.health_check_path
        port                = "traffic-port"
        protocol            = "HTTP"
        matcher             = "200"
        interval            = 30
        timeout             = 5
        healthy_threshold   = 5
        unhealthy_threshold = 2
      }
    }
  }
}
