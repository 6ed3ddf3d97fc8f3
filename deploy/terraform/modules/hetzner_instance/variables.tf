variable "name" {
  type        = string
  description = "Name of the server, and prefix of every other resource (firewall, volume, IPs, SSH key)."
  default     = "inferhub"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,40}$", var.name))
    error_message = "name: lower-case letters, digits and dashes, starting with a letter."
  }
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

variable "ssh_public_key" {
  type        = string
  description = "OpenSSH public key (the content of e.g. ~/.ssh/id_ed25519.pub) allowed to log in as root."
}

variable "ssh_allowed_cidrs" {
  type        = list(string)
  description = "Source networks allowed to reach SSH (port 22), in the Hetzner firewall and in ufw on the machine. Your own address, e.g. [\"203.0.113.7/32\"]."

  validation {
    condition     = length(var.ssh_allowed_cidrs) > 0 && alltrue([for cidr in var.ssh_allowed_cidrs : can(cidrhost(cidr, 0))])
    error_message = "ssh_allowed_cidrs: at least one network, each in CIDR notation (203.0.113.7/32, 2001:db8::/48)."
  }
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

  validation {
    condition     = var.volume_size >= 10
    error_message = "volume_size: at least 10 GB (the Hetzner minimum)."
  }
}

variable "domain" {
  type        = string
  description = "Public DNS name of the gateway (you point its A/AAAA records at the outputs); Let's Encrypt issues its certificate."

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]*[a-z0-9])?\\.)+[a-z]{2,}$", var.domain))
    error_message = "domain: a lower-case DNS name such as inferhub.example.com."
  }
}

variable "acme_email" {
  type        = string
  description = "Contact address given to Let's Encrypt (expiry notices)."

  validation {
    condition     = can(regex("^[^@\\s]+@[^@\\s]+$", var.acme_email))
    error_message = "acme_email: an e-mail address."
  }
}

variable "inferhub_repository" {
  type        = string
  description = "Git URL the machine clones Inferhub from (deploy/vps/ and the Dockerfile)."

  validation {
    condition     = can(regex("^(https://|git@)[A-Za-z0-9@:/._~+-]+$", var.inferhub_repository))
    error_message = "inferhub_repository: an https:// or git@ URL."
  }
}

variable "inferhub_ref" {
  type        = string
  description = "Pinned release tag (v1.2.3) or full commit SHA checked out on the machine. Changing it replaces the server and keeps the volume."

  validation {
    condition     = can(regex("^([0-9a-f]{40}|v[0-9]+\\.[0-9]+\\.[0-9]+[0-9A-Za-z.+-]*)$", var.inferhub_ref))
    error_message = "inferhub_ref: a release tag like v0.1.0 or a 40-character commit SHA, not a branch."
  }
}

variable "inferhub_image" {
  type        = string
  description = "Prebuilt image to pull instead of building deploy/docker/Dockerfile on the machine (about 10 minutes on cx23). Empty: build."
  default     = ""

  validation {
    condition     = can(regex("^[A-Za-z0-9./:@_-]*$", var.inferhub_image))
    error_message = "inferhub_image: an image reference such as registry.example.com/inferhub:0.1.0."
  }
}

variable "inferhub_api_key" {
  type        = string
  description = "Bootstrap admin key (INFERHUB_API_KEY): python3 -c \"import secrets; print('ih-' + secrets.token_urlsafe(32))\"."
  sensitive   = true

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{32,}$", var.inferhub_api_key)) && !strcontains(var.inferhub_api_key, "CHANGE-ME")
    error_message = "inferhub_api_key: at least 32 characters of A-Z a-z 0-9 _ -, and not the placeholder of terraform.tfvars.example."
  }
}

variable "inferhub_secret_key" {
  type        = string
  description = "Master key encrypting upstream credentials (INFERHUB_SECRET_KEY, a Fernet key): inferhub secrets generate. Keep a copy: the volume does not hold it."
  sensitive   = true

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{43}=$", var.inferhub_secret_key)) && !strcontains(var.inferhub_secret_key, "CHANGE-ME")
    error_message = "inferhub_secret_key: a Fernet key (44 characters of urlsafe base64), as printed by `inferhub secrets generate`."
  }
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

  validation {
    condition     = contains(["debug", "info", "warning", "error"], var.log_level)
    error_message = "log_level: debug, info, warning or error."
  }
}

variable "labels" {
  type        = map(string)
  description = "Labels put on every resource."
  default     = {}
}
