# Example daemon configuration: `make run` starts the daemon on this file.
log_level   = "INFO"
port        = 8558
working_dir = "../sync-tasks"   # relative to this file

# A change runs the tasks that watch it once it has settled for `min` (never later than
# `max` after the first change). CTS's defaults are 5s and 20s.
buffer_period {
  enabled = true
  min     = "1s"
  max     = "5s"
}

# The embedded catalog: service instances and KV entries kept as files, watched like the
# task files. To read a Consul agent instead, replace this block with
#   consul {
#     address = "localhost:8500"
#   }
catalog "directory" {
  path = "catalog"
}

driver "terraform" {
  log = true
}

# Where tasks live: every *.hcl / *.json file under this directory (relative to this file).
# Edit, add or delete files there: the daemon follows within a fraction of a second.
source "directory" {
  path = "tasks"
}
