# Every variable is checked by modules/hetzner_instance (validation blocks there).

variable "name" {
  type        = string
  description = "Name of the server, and prefix of every other resource (firewall, volume, IPs, SSH key)."
  default     = "inferhub"
}

variable "server_type" {
  type        = string
  description = "Hetzner server type. cx23 (2 vCPU, 4 GB, 40 GB disk) runs the embedded SmolLM2 and MiniLM models and builds the image; cx33 (4 vCPU, 8 GB) answers faster."
  default     = "cx23"
}

variable "image" {
  type        = string
  description = "OS image. The user data installs Ubuntu's docker.io and docker-compose-v2 packages: keep an Ubuntu 24.04 image."
  default     = "ubuntu-24.04"
}

variable "location" {
  type        = string
  description = "Hetzner location of the server, its volume and its IPs (nbg1, fsn1, hel1; cx types are EU-only)."
  default     = "nbg1"
}

variable "ssh_public_key_file" {
  type        = string
  description = "Path of the OpenSSH public key allowed to log in as root."
  default     = "~/.ssh/id_ed25519.pub"
}

variable "ssh_allowed_cidrs" {
  type        = list(string)
  description = "Source networks allowed to reach SSH (port 22), in the Hetzner firewall and in ufw on the machine. Your own address, e.g. [\"203.0.113.7/32\"]."
}

variable "ipv4_enabled" {
  type        = bool
  description = "Give the server a primary IPv4 address (a Primary IP kept across server replacements; billed while it exists)."
  default     = true
}

variable "ipv6_enabled" {
  type        = bool
  description = "Give the server a primary IPv6 /64 (a Primary IP kept across server replacements)."
  default     = true
}

variable "volume_size" {
  type        = number
  description = "Size in GB of the volume holding INFERHUB_HOME (embedded PostgreSQL, master key file, certificates). It outlives the server."
  default     = 20
}

variable "domain" {
  type        = string
  description = "Public DNS name of the gateway (you point its A/AAAA records at the outputs); Let's Encrypt issues its certificate."
}

variable "acme_email" {
  type        = string
  description = "Contact address given to Let's Encrypt (expiry notices)."
}

variable "inferhub_repository" {
  type        = string
  description = "Git URL the machine clones Inferhub from (deploy/vps/ and the Dockerfile)."
}

variable "inferhub_ref" {
  type        = string
  description = "Pinned release tag (v1.2.3) or full commit SHA checked out on the machine. Changing it replaces the server and keeps the volume."
}

variable "inferhub_image" {
  type        = string
  description = "Prebuilt image to pull instead of building deploy/docker/Dockerfile on the machine (about 10 minutes on cx23). Empty: build."
  default     = ""
}

variable "inferhub_api_key" {
  type        = string
  description = "Bootstrap admin key (INFERHUB_API_KEY): python3 -c \"import secrets; print('ih-' + secrets.token_urlsafe(32))\"."
  sensitive   = true
}

variable "inferhub_secret_key" {
  type        = string
  description = "Master key encrypting upstream credentials (INFERHUB_SECRET_KEY, a Fernet key): inferhub secrets generate. Keep a copy: the volume does not hold it."
  sensitive   = true
}

variable "local_chat_threads" {
  type        = number
  description = "CPU threads of the embedded chat model (INFERHUB_LOCAL_CHAT_THREADS); at most the server's vCPUs."
  default     = 2
}

variable "log_level" {
  type        = string
  description = "INFERHUB_LOG_LEVEL."
  default     = "info"
}

variable "labels" {
  type        = map(string)
  description = "Labels put on every resource."
  default     = {}
}
