"""Terminal output and approval prompts in CTS's layout (mitchellh/cli's PrefixedUi as
command/commands.go configures it): headlines start with "==> ", other lines with four
spaces, and only the answer `yes` approves.

Unlike CTS, which prints the detail of an error on standard output, every line of an error
goes to standard error, so that a script reading standard output sees only results.
"""

from __future__ import annotations

import sys
from typing import TextIO

from reconciler.cli.exits import EXIT_ERROR, EXIT_OK

INFO = "==> "
OUTPUT = "    "


class Ui:
    def __init__(
        self,
        out: TextIO | None = None,
        err: TextIO | None = None,
        stdin: TextIO | None = None,
    ) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.stdin = stdin or sys.stdin

    def info(self, message: str) -> None:
        print(INFO + message if message else "", file=self.out, flush=True)

    def output(self, message: str) -> None:
        print(OUTPUT + message if message else "", file=self.out, flush=True)

    def raw(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def warn(self, message: str) -> None:
        print(message, file=self.err, flush=True)

    def error(self, headline: str, *details: str) -> None:
        """`==> headline`; a single one-line detail joins it on one line, longer details
        follow, indented."""
        lines = [line for detail in details for line in detail.splitlines() or [""]]
        if len(lines) == 1 and lines[0]:
            print(f"{INFO}{headline}: {lines[0]}", file=self.err, flush=True)
            return
        print(INFO + headline, file=self.err)
        for line in lines:
            print(OUTPUT + line if line else "", file=self.err)
        self.err.flush()

    def ask(self, query: str) -> str | None:
        """The answer, without trailing white space; None when standard input is closed."""
        self.out.write(query + " ")
        self.out.flush()
        line = self.stdin.readline()
        if not line:
            return None
        return line.rstrip()

    # --- CTS's approval prompts (command/meta.go) ------------------------------------

    def approve(self, task: str, action: str) -> int | None:
        """None when approved; otherwise the exit code (0 for a "no", as CTS)."""
        self.output("Only 'yes' will be accepted to approve, enter 'no' or leave blank to reject.")
        self.output("")
        try:
            answer = self.ask("Enter a value:")
        except KeyboardInterrupt:
            answer = None
            problem = "interrupted"
        else:
            problem = "standard input is closed; use -auto-approve to skip the prompt"
        self.output("")
        if answer is None:
            self.error("Error asking for approval", problem)
            return EXIT_ERROR
        if answer != "yes":
            self.output(f"Cancelled {action} task '{task}'")
            return EXIT_OK
        return None

    def terraform_warning(self, task: str) -> None:
        self.output(f"Do you want to perform these actions for '{task}'?")
        self.output(" - This action cannot be undone.")
        self.output(" - reconciler cannot guarantee Terraform will perform")
        self.output("   these exact actions if monitored services have changed.")
        self.output("")

    def approve_create(self, task: str) -> int | None:
        self.info("Creating the task will perform the actions described above.")
        self.terraform_warning(task)
        return self.approve(task, "creating")

    def approve_update(self, task: str) -> int | None:
        self.info("Updating the task will perform the actions described above.")
        self.terraform_warning(task)
        return self.approve(task, "updating")

    def approve_enable(self, task: str) -> int | None:
        self.info("Enabling the task will perform the actions described above.")
        self.terraform_warning(task)
        return self.approve(task, "enabling")

    def approve_destroy(self, task: str) -> int | None:
        self.info(f"Do you want to destroy and delete '{task}'?")
        self.output(" - This action cannot be undone.")
        self.output(" - Terraform will destroy the resources described above.")
        self.output(" - The task, its workspace and its state are deleted afterwards.")
        return self.approve(task, "destroying")

    def approve_delete(self, task: str) -> int | None:
        self.info(f"Do you want to delete '{task}'?")
        self.output(" - This action cannot be undone.")
        self.output(" - Deleting a task will not destroy the infrastructure managed by the task.")
        self.output(" - If the task is not running, it will be deleted immediately.")
        self.output(" - If the task is running, it will be deleted once it has completed.")
        return self.approve(task, "deleting")
