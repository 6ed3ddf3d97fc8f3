terraform {
  required_version = ">= 1.5"

  required_providers {
    hcloud = {
      source = "hetznercloud/hcloud"
      # 1.58 takes `location` on Primary IPs (the `datacenter` attribute is deprecated).
      version = "~> 1.58"
    }
  }
}
