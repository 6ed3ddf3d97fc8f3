# Addresses and commands only: the keys are sensitive variables and appear in no output.

output "server_id" {
  description = "ID of the Hetzner server."
  value       = hcloud_server.this.id
}

output "volume_id" {
  description = "ID of the volume holding INFERHUB_HOME (to import it again after a destroy that kept it)."
  value       = hcloud_volume.data.id
}

output "ipv4_address" {
  description = "Public IPv4 address: the target of the A record of var.domain (null without IPv4)."
  value       = var.ipv4_enabled ? hcloud_primary_ip.ipv4[0].ip_address : null
}

output "ipv6_address" {
  description = "Public IPv6 address (::1 of the server's /64): the target of the AAAA record (null without IPv6)."
  value       = var.ipv6_enabled ? cidrhost(hcloud_primary_ip.ipv6[0].ip_network, 1) : null
}

output "url" {
  description = "Base URL of the gateway (OpenAI-compatible API under /v1) once DNS points at the server."
  value       = "https://${var.domain}"
}

output "ssh_command" {
  description = "SSH command for the server."
  value       = "ssh root@${var.ipv4_enabled ? hcloud_primary_ip.ipv4[0].ip_address : cidrhost(hcloud_primary_ip.ipv6[0].ip_network, 1)}"
}
