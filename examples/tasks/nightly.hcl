task {
  name        = "nightly"
  description = "Re-renders the service list every night"
  module      = "../modules/print-services"
  enabled     = false

  condition "schedule" {
    cron = "0 3 * * *"
  }

  module_input "services" {
    regexp = "^db-"
  }
}
