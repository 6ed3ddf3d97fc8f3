# One Hetzner Cloud server running deploy/vps/ (Traefik on 443 with a Let's Encrypt certificate in
# front of Inferhub with its embedded PostgreSQL and models), configured by cloud-init on first
# boot. The volume and the Primary IPs outlive the server: replacing it (a new inferhub_ref, a new
# image) keeps the data and the addresses the DNS records point at.

locals {
  data_dir = "/mnt/inferhub"

  # Every value the template uses is a plain string: the template only interpolates (${name}), so
  # that its rendering can be checked without Terraform (tests/deploy/test_terraform.py).
  user_data = templatefile("${path.module}/cloud-init.yaml.tftpl", {
    domain              = var.domain
    acme_email          = var.acme_email
    inferhub_repository = var.inferhub_repository
    inferhub_ref        = var.inferhub_ref
    inferhub_image      = var.inferhub_image
    inferhub_api_key    = var.inferhub_api_key
    inferhub_secret_key = var.inferhub_secret_key
    local_chat_threads  = tostring(var.local_chat_threads)
    log_level           = var.log_level
    ssh_allowed_cidrs   = join(" ", var.ssh_allowed_cidrs)
    data_device         = "/dev/disk/by-id/scsi-0HC_Volume_${hcloud_volume.data.id}"
    data_dir            = local.data_dir
  })
}

resource "hcloud_ssh_key" "this" {
  name       = "${var.name}-admin"
  public_key = var.ssh_public_key
  labels     = var.labels
}

# Inbound: HTTPS from anywhere (the API, and Let's Encrypt's TLS-ALPN-01 challenge), SSH from the
# configured networks only. Nothing else; outbound stays open (packages, images, ACME).
resource "hcloud_firewall" "this" {
  name   = "${var.name}-firewall"
  labels = var.labels

  rule {
    description = "HTTPS: Inferhub through Traefik, and the TLS-ALPN-01 challenge"
    direction   = "in"
    protocol    = "tcp"
    port        = "443"
    source_ips  = ["0.0.0.0/0", "::/0"]
  }

  rule {
    description = "SSH from the administrators' networks"
    direction   = "in"
    protocol    = "tcp"
    port        = "22"
    source_ips  = var.ssh_allowed_cidrs
  }
}

resource "hcloud_primary_ip" "ipv4" {
  count         = var.ipv4_enabled ? 1 : 0
  name          = "${var.name}-ipv4"
  type          = "ipv4"
  location      = var.location
  assignee_type = "server"
  auto_delete   = false
  labels        = var.labels
}

resource "hcloud_primary_ip" "ipv6" {
  count         = var.ipv6_enabled ? 1 : 0
  name          = "${var.name}-ipv6"
  type          = "ipv6"
  location      = var.location
  assignee_type = "server"
  auto_delete   = false
  labels        = var.labels
}

# INFERHUB_HOME (embedded PostgreSQL, secret.key, logs) and the ACME account and certificates.
# Formatted once by Hetzner at creation; the machine only mounts it, never formats it.
resource "hcloud_volume" "data" {
  name              = "${var.name}-data"
  size              = var.volume_size
  location          = var.location
  format            = "ext4"
  delete_protection = true
  labels            = var.labels

  lifecycle {
    # `terraform destroy` stops here: see docs/deploy/terraform.md to destroy the rest and keep it.
    prevent_destroy = true
    # Only used at creation, and not reported by the API: an imported volume would otherwise be
    # planned for replacement.
    ignore_changes = [format]
  }
}

resource "hcloud_server" "this" {
  name         = var.name
  server_type  = var.server_type
  image        = var.image
  location     = var.location
  ssh_keys     = [hcloud_ssh_key.this.id]
  firewall_ids = [hcloud_firewall.this.id]
  user_data    = local.user_data
  labels       = var.labels

  public_net {
    ipv4_enabled = var.ipv4_enabled
    ipv4         = var.ipv4_enabled ? hcloud_primary_ip.ipv4[0].id : null
    ipv6_enabled = var.ipv6_enabled
    ipv6         = var.ipv6_enabled ? hcloud_primary_ip.ipv6[0].id : null
  }

  lifecycle {
    precondition {
      condition     = var.ipv4_enabled || var.ipv6_enabled
      error_message = "Enable ipv4_enabled or ipv6_enabled (or both): the server needs a public address."
    }
  }
}

# Attached after the server boots; cloud-init waits for the device before mounting it.
resource "hcloud_volume_attachment" "data" {
  volume_id = hcloud_volume.data.id
  server_id = hcloud_server.this.id
  automount = false
}
