# The daemon's configuration, installed by `make install` as /etc/reconciler/config.hcl
# (kept when it exists). Every *.hcl and *.json file in /etc/reconciler is read, in name
# order; `systemctl reload reconciler` applies changes (see the README for which settings
# need a restart).

log_level    = "INFO"
bind_address = "127.0.0.1" # the API on loopback only; serve it elsewhere with tls and a token
port         = 8558

# Terraform workspaces and the daemon's own state (events, parse cache, git clones).
working_dir = "/var/lib/reconciler/sync-tasks"

# The task files: the service may write only under /var/lib/reconciler, which is where
# API changes are written back. For a git repository use a source "git" block instead.
source "directory" {
  path        = "/var/lib/reconciler/tasks"
  allow_empty = true # the directory starts empty
}

# Every API call but /v1/health needs `Authorization: Bearer <token>`: whoever has the
# token can run Terraform modules as the service's user. `make install` wrote a random one
# here, readable by root and the reconciler group; the CLI on this host finds it by itself.
api_token_file = "/etc/reconciler/token"
