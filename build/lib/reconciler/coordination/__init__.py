"""Coordination between daemons: high availability on etcd."""
