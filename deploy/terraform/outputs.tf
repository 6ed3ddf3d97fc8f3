# Addresses and commands only; no key is ever an output.

output "ipv4_address" {
  description = "Point the A record of var.domain here (null without IPv4)."
  value       = module.inferhub.ipv4_address
}

output "ipv6_address" {
  description = "Point the AAAA record of var.domain here (null without IPv6)."
  value       = module.inferhub.ipv6_address
}

output "url" {
  description = "Base URL of the gateway once DNS points at the server."
  value       = module.inferhub.url
}

output "ssh_command" {
  description = "SSH command for the server."
  value       = module.inferhub.ssh_command
}

output "volume_id" {
  description = "ID of the data volume (INFERHUB_HOME), to import it again after a destroy that kept it."
  value       = module.inferhub.volume_id
}
