# What the cluster stands on, on AWS: buckets for films/datasets/runs/episodes/MLflow artifacts,
# and the node role that lets Ray nodes (ray-up.yaml) or pods (IRSA) read and write them.
# `terraform init && terraform apply -var prefix=studio`
terraform {
  required_providers {
    aws = { source = "hashicorp/aws", version = ">= 5.0" }
  }
}

variable "prefix" { type = string }
variable "region" {
  type    = string
  default = "us-east-1"
}

provider "aws" { region = var.region }

locals {
  buckets = ["films", "datasets", "runs", "episodes", "mlflow"]
}

resource "aws_s3_bucket" "b" {
  for_each = toset(local.buckets)
  bucket   = "${var.prefix}-${each.key}"
}

resource "aws_s3_bucket_versioning" "datasets" {
  bucket = aws_s3_bucket.b["datasets"].id
  versioning_configuration { status = "Enabled" }
}

data "aws_iam_policy_document" "assume_ec2" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "node" {
  name               = "lcmftn-ray-node"
  assume_role_policy = data.aws_iam_policy_document.assume_ec2.json
}

data "aws_iam_policy_document" "s3" {
  statement {
    actions   = ["s3:ListBucket"]
    resources = [for b in aws_s3_bucket.b : b.arn]
  }
  statement {
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = [for b in aws_s3_bucket.b : "${b.arn}/*"]
  }
}

resource "aws_iam_role_policy" "s3" {
  role   = aws_iam_role.node.id
  policy = data.aws_iam_policy_document.s3.json
}

resource "aws_iam_instance_profile" "node" {
  name = "lcmftn-ray-node"
  role = aws_iam_role.node.name
}
