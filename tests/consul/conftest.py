"""Fixtures: the in-test Consul and what is built over it (tests/consulkit.py)."""

from consulkit import client, consul, pacing, sleeps, watchers

__all__ = ["client", "consul", "pacing", "sleeps", "watchers"]
