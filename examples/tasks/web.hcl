# Writes one line per instance of the web and api services.
task {
  name        = "web"
  description = "Writes the service name, id, and IP address to a file"
  module      = "../modules/print-services"

  condition "services" {
    names = ["web", "api"]
  }
}
