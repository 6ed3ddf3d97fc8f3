terraform {
  required_version = ">= 1.5"

  required_providers {
    hcloud = {
      source  = "hetznercloud/hcloud"
      version = "~> 1.58"
    }
  }

  # State stays local (terraform.tfstate, next to this file) unless you configure a backend. The
  # state holds the rendered user data, and so the admin and master keys: keep it off shared disks
  # and out of git, or use a remote backend with encryption and locking, for example
  #
  #   backend "s3" {
  #     bucket       = "my-terraform-state"
  #     key          = "inferhub/terraform.tfstate"
  #     region       = "eu-central-1"
  #     encrypt      = true
  #     use_lockfile = true
  #   }
  #
  # (Hetzner Object Storage works with the s3 backend too: docs/deploy/terraform.md).
}
