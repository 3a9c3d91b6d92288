"""What a module can read from its environment, through `reconciler start` and the real
Terraform: a `local-exec` dumps it. The daemon's own secrets (its API token variable,
a git token, a Consul token its backend does not use, cloud credentials no backend of
the task reads) are not there; PATH, TF_*, and what `pass_env`
names are (a provider's task_env is added to it: tests/runner/test_provider_templates.py)."""

from __future__ import annotations

import os
from pathlib import Path

from helpers import free_port, wait_for
from serverkit import reconciler_start

SECRETS = {
    "RECONCILER_API_TOKEN": "api-token-secret-1",
    "CONSUL_HTTP_TOKEN": "consul-token-secret-2",
    "GIT_TOKEN": "git-token-secret-3",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-4",
    "ETCDCTL_PASSWORD": "etcd-secret-5",
}
MODULE = """\
resource "terraform_data" "dump" {
  provisioner "local-exec" {
    command = "env > ${path.root}/../../env.txt"
  }
}
variable "services" {
  type = any
}
"""


def test_a_module_sees_no_secret_of_the_daemon(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "mod").mkdir()
    (tmp_path / "mod" / "main.tf").write_text(MODULE)
    (tmp_path / "catalog").mkdir()  # the embedded catalog: local state
    (tmp_path / "config.hcl").write_text(
        f'port = {port}\nworking_dir = "sync-tasks"\napi_token_env = "RECONCILER_API_TOKEN"\n'
        'driver "terraform" {\n  pass_env = ["PASSED_*"]\n}\n'
        'task {\n  name = "dump"\n  module = "./mod"\n'
        '  condition "schedule" {\n    cron = "0 0 1 1 *"\n  }\n}\n'
    )
    env = {**os.environ, **SECRETS, "PASSED_ONE": "passed-ok", "NOT_PASSED": "stays-out"}
    with reconciler_start(tmp_path, port, env=env):
        dump = tmp_path / "env.txt"
        wait_for(lambda: dump.exists() and "PATH=" in dump.read_text(), 100, "the dump")
    seen = dict(line.split("=", 1) for line in dump.read_text().splitlines() if "=" in line)
    for name, value in SECRETS.items():
        assert name not in seen, name
        assert value not in dump.read_text(), name
    assert "NOT_PASSED" not in seen
    assert seen["PASSED_ONE"] == "passed-ok"
    assert seen["PATH"] == os.environ["PATH"]
    assert seen.get("TF_IN_AUTOMATION") == "1"
