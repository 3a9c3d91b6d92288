# Example daemon configuration: `make run` starts the daemon on this file.
log_level   = "INFO"
port        = 8558
working_dir = "../sync-tasks"   # relative to this file

buffer_period {
  enabled = true
  min     = "5s"
  max     = "20s"
}

consul {
  address = "localhost:8500"
}

driver "terraform" {
  log = true
}

# Where tasks live: every *.hcl / *.json file under this directory (relative to this file).
# Edit, add or delete files there: the daemon follows within a fraction of a second.
source "directory" {
  path = "tasks"
}
