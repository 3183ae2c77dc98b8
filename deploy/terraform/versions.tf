terraform {
  required_version = ">= 1.6.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.80"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
    tls = {
      source  = "hashicorp/tls"
      version = "~> 4.0"
    }
  }

  # The state of a shared deployment belongs in S3 with locking, e.g.
  #   terraform init -backend-config="bucket=<state bucket>" -backend-config="key=cloudcafe/prod.tfstate" \
  #     -backend-config="region=us-east-1" -backend-config="use_lockfile=true"
  backend "s3" {}
}

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = {
      Project     = "cloudcafe"
      Environment = var.environment
    }
  }
}
