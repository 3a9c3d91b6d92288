"""The client commands' arguments, flags and task files, checked before any request: CTS's
messages and exit codes (13 wrong arguments or a missing required flag, 14 a flag that
does not parse, 11 a task file that cannot be sent or a daemon that cannot be reached).

Every command here points at a port where nothing listens: an answer other than the one
expected would show up as a connection error.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from clikit import ok, run_cli
from helpers import free_port

CLOSED = {"RECONCILER_ADDRESS": f"http://127.0.0.1:{free_port()}"}


@pytest.mark.parametrize("command", ["enable", "disable", "delete"])
def test_a_task_command_needs_exactly_one_task_name(command: str) -> None:
    none = run_cli("task", command, env=CLOSED)
    assert none.returncode == 13
    assert "==> Error: this command requires one argument: [options] <task name>" in none.stderr
    assert "No arguments were passed to the command" in none.stderr
    assert f"For additional help try 'reconciler task {command} --help'" in none.stderr

    two = run_cli("task", command, "a", "b", env=CLOSED)
    assert two.returncode == 13
    assert "2 arguments were passed to the command: 'a, b'" in two.stderr

    # Flags after the name are arguments, as in CTS.
    late = run_cli("task", command, "a", "-auto-approve", env=CLOSED)
    assert late.returncode == 13
    assert "All flags are required to appear before positional arguments if set" in late.stderr


def test_flags_that_do_not_parse_exit_14() -> None:
    unknown = run_cli("task", "enable", "-nope", "a", env=CLOSED)
    assert unknown.returncode == 14
    assert "flag provided but not defined: -nope" in unknown.stderr
    assert "Usage: reconciler task enable [-help] [options] <task name>" in unknown.stderr
    bad_bool = run_cli("task", "list", "-ssl-verify=maybe", env=CLOSED)
    assert bad_bool.returncode == 14
    assert 'invalid boolean value "maybe" for -ssl-verify' in bad_bool.stderr
    no_value = run_cli("task", "create", "-task-file", env=CLOSED)
    assert no_value.returncode == 14 and "flag needs an argument: -task-file" in no_value.stderr
    # The client commands read no configuration file.
    config = run_cli("task", "list", "-config-file=config.hcl", env=CLOSED)
    assert config.returncode == 14


def test_commands_and_subcommands() -> None:
    assert run_cli("task", env=CLOSED).returncode == 13
    unknown = run_cli("task", "frobnicate", env=CLOSED)
    assert unknown.returncode == 14 and "unknown subcommand 'task frobnicate'" in unknown.stderr
    helped = ok(run_cli("task", "delete", "-help", env=CLOSED))
    assert "Usage: reconciler task delete [-help] [options] <task name>" in helped.stdout
    assert "-auto-approve [Default: false]" in helped.stdout
    assert "-http-addr [Default: http://localhost:8558]" in helped.stdout
    status = run_cli("status", "a", "b", env=CLOSED)
    assert status.returncode == 13
    assert "takes at most one argument" in status.stderr
    # start and validate still want their configuration.
    start = run_cli("start")
    assert start.returncode == 13 and "no config file provided" in start.stderr


def test_create_needs_a_task_file() -> None:
    result = run_cli("task", "create", env=CLOSED)
    assert result.returncode == 13
    assert "==> Error: unable to create request" in result.stderr
    assert "no task file provided" in result.stderr
    stray = run_cli("task", "create", "task.hcl", env=CLOSED)
    assert stray.returncode == 13 and "use -task-file=<file>" in stray.stderr


def test_connection_refused_is_one_clear_line() -> None:
    address = CLOSED["RECONCILER_ADDRESS"]
    for args in (("task", "list"), ("task", "disable", "web"), ("status",)):
        result = run_cli(*args, env=CLOSED)
        assert result.returncode == 11, result
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert f"cannot connect to the daemon at {address}: connection refused" in lines[0]
        assert "Traceback" not in result.stderr


def write(tmp_path: Path, text: str, name: str = "task.hcl") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


TASK = 'task {{\n  name = "{name}"\n  module = "./m"\n{extra}}}\n'
SERVICES = '  condition "services" {\n    names = ["web"]\n  }\n'


def create(path: str) -> subprocess.CompletedProcess[str]:
    return run_cli("task", "create", f"-task-file={path}", "-auto-approve", env=CLOSED)


def test_a_task_file_with_two_tasks_or_none_is_refused(tmp_path: Path) -> None:
    two = write(
        tmp_path, TASK.format(name="a", extra=SERVICES) + TASK.format(name="b", extra=SERVICES)
    )
    result = create(two)
    assert result.returncode == 11
    assert "==> Error: unable to create request" in result.stderr
    assert f"task file '{two}' cannot contain more than 1 task, contains 2 tasks" in result.stderr
    empty = write(tmp_path, "# nothing\n", "empty.hcl")
    result = create(empty)
    assert result.returncode == 11
    assert "does not contain a task, must contain at least one task" in result.stderr


def test_an_invalid_or_missing_task_file_names_the_problem(tmp_path: Path) -> None:
    broken = write(tmp_path, 'task {\n  name = "b"\n  module = "./m"\n  enabled = "maybe"\n}\n')
    result = create(broken)
    assert result.returncode == 11
    assert "unable to read task file" in result.stderr
    assert f"{broken}:4" in result.stderr and "enabled" in result.stderr
    missing = create(str(tmp_path / "nope.hcl"))
    assert missing.returncode == 11
    assert "No such file or directory" in missing.stderr


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            '  source = "./old"\n' + SERVICES,
            [
                "the 'source' field in the task block is no longer supported",
                '|  +   module =  "./old"',
            ],
        ),
        (
            '  services = ["web", "api"]\n',
            [
                "the 'services' field in the task block is no longer supported",
                '  condition "services" {',
                'names=["web","api"]',
            ],
        ),
        (
            '  condition "services" {\n    names = ["web"]\n    source_includes_var = false\n  }\n',
            [
                "the 'source_includes_var' field in the task's 'condition \"services\"' block",
                "|  +     use_as_module_input = false",
            ],
        ),
        (
            SERVICES + '  source_input "consul-kv" {\n    path = "k"\n  }\n',
            ["the 'source_input' block in the task is no longer supported"],
        ),
    ],
)
def test_deprecated_fields_are_refused_with_the_upgrade(
    tmp_path: Path, extra: str, expected: list[str]
) -> None:
    text = TASK.format(name="old", extra=extra)
    if "source =" in extra:  # instead of module
        text = text.replace('  module = "./m"\n', "")
    result = create(write(tmp_path, text))
    assert result.returncode == 11, result
    assert "==> Error: unable to create request" in result.stderr
    for fragment in expected:
        assert fragment in result.stderr
    assert "connect" not in result.stderr  # refused before any request


def test_a_task_file_setting_working_dir_is_refused(tmp_path: Path) -> None:
    result = create(
        write(tmp_path, TASK.format(name="w", extra='  working_dir = "x"\n' + SERVICES))
    )
    assert result.returncode == 11
    assert "sets working_dir, which cannot be sent to the daemon" in result.stderr


def test_an_unreadable_variable_file_is_reported(tmp_path: Path) -> None:
    extra = '  variable_files = ["missing.tfvars"]\n' + SERVICES
    result = create(write(tmp_path, TASK.format(name="v", extra=extra)))
    assert result.returncode == 11
    assert "missing.tfvars cannot be read" in result.stderr


def test_approval_needs_an_open_standard_input() -> None:
    result = run_cli("task", "delete", "web", env=CLOSED)  # stdin is empty
    assert result.returncode == 11
    assert "Error asking for approval" in result.stderr
    assert "Only 'yes' will be accepted to approve" in result.stdout
