"""Exit codes, as Consul-Terraform-Sync's (command/cli.go)."""

EXIT_OK = 0
EXIT_ERROR = 11  # a task, a request or the connection failed
EXIT_INTERRUPT = 12
EXIT_MISSING_FLAGS = 13  # missing required flags or arguments
EXIT_FLAG_PARSE = 14
EXIT_CONFIG = 15
EXIT_DRIVER = 16  # Terraform unavailable
