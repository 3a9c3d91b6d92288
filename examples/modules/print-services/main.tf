# A module that needs no provider download: Terraform's built-in terraform_data resource
# runs a local-exec provisioner that writes one line per service instance.
terraform {
  required_version = ">= 1.4"
}

variable "services" {
  description = "Consul services monitored by the task (Consul-Terraform-Sync format)."
  type = map(object({
    id      = string
    name    = string
    address = string
    port    = number
  }))
  default = {}
}

variable "output_file" {
  type    = string
  default = "services.txt"
}

locals {
  lines = join("", [for s in values(var.services) : "${s.name} ${s.id} ${s.address}:${s.port}\n"])
}

resource "terraform_data" "services" {
  # Replaced (and the provisioner re-run) whenever the rendered list changes.
  triggers_replace = local.lines

  provisioner "local-exec" {
    command = "printf '%s' \"$LINES\" > \"$OUT\""
    environment = {
      LINES = local.lines
      OUT   = var.output_file
    }
  }
}

output "lines" {
  value = local.lines
}
