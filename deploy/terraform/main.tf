# Inferhub on one Hetzner Cloud server: `terraform init && terraform apply` (docs/deploy/terraform.md).
# The API token comes from the HCLOUD_TOKEN environment variable, never from a file in this folder.
provider "hcloud" {}

module "inferhub" {
  source = "./modules/hetzner_instance"

  name                = var.name
  server_type         = var.server_type
  image               = var.image
  location            = var.location
  ssh_public_key      = file(pathexpand(var.ssh_public_key_file))
  ssh_allowed_cidrs   = var.ssh_allowed_cidrs
  ipv4_enabled        = var.ipv4_enabled
  ipv6_enabled        = var.ipv6_enabled
  volume_size         = var.volume_size
  domain              = var.domain
  acme_email          = var.acme_email
  inferhub_repository = var.inferhub_repository
  inferhub_ref        = var.inferhub_ref
  inferhub_image      = var.inferhub_image
  inferhub_api_key    = var.inferhub_api_key
  inferhub_secret_key = var.inferhub_secret_key
  local_chat_threads  = var.local_chat_threads
  log_level           = var.log_level
  labels              = var.labels
}
