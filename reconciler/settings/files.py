"""Which configuration files the -config-file / -config-dir arguments name, and parsing them.

CTS rules (cts-spec 2.2): one ordered list of files and directories; a directory is read
non-recursively, `*.hcl` and `*.json` only, in lexical order; a file given directly that is
empty or has another extension is skipped; the format comes from the extension.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler._core.errors import ConfigError, Location, Problem
from reconciler.settings.schema import TOP, json_schema
from reconciler.settings.sources import SOURCE_KINDS
from reconciler.taskfiles.hcl import Body, parse
from reconciler.taskfiles.jsonsyntax import Schema, parse_json
from reconciler.taskfiles.load import MAX_TASK_FILE_BYTES, TASK_FILE_SCHEMA

EXTENSIONS = (".hcl", ".json")

CONFIG_JSON_SCHEMA: Schema = {
    **json_schema(TOP),
    "terraform_provider": (1, {}),
    "service": (0, {}),
    # The nested blocks of every kind of source (a git source's author).
    "source": (
        1,
        {k: v for kind in SOURCE_KINDS.values() for k, v in json_schema(kind.spec).items()},
    ),
    "task": TASK_FILE_SCHEMA["task"],
}


@dataclass(frozen=True)
class ConfigFile:
    name: str  # as shown in problems: the argument, or the argument joined with the entry
    path: Path  # absolute

    @property
    def directory(self) -> Path:
        return self.path.parent


def find_config_files(
    paths: Sequence[str | Path], problems: list[Problem], warnings: list[Problem]
) -> list[ConfigFile]:
    found: list[ConfigFile] = []
    for arg in paths:
        name = os.fspath(arg)
        try:
            info = os.stat(name)
        except OSError as exc:
            problems.append(Problem(_os_message(exc), location=Location(name)))
            continue
        mode = info.st_mode
        if stat.S_ISDIR(mode):
            found.extend(_directory_files(name, problems))
        elif not stat.S_ISREG(mode):
            problems.append(Problem("not a regular file or a directory", location=Location(name)))
        elif not name.endswith(EXTENSIONS):
            warnings.append(
                Problem(
                    "skipped: configuration files end in .hcl or .json", location=Location(name)
                )
            )
        elif info.st_size == 0:
            warnings.append(Problem("skipped: the file is empty", location=Location(name)))
        else:
            found.append(ConfigFile(name, Path(name).absolute()))
    return found


def _directory_files(directory: str, problems: list[Problem]) -> list[ConfigFile]:
    try:
        entries = sorted(os.listdir(directory))
    except OSError as exc:
        problems.append(Problem(_os_message(exc), location=Location(directory)))
        return []
    out = []
    for entry in entries:
        full = os.path.join(directory, entry)
        if not entry.endswith(EXTENSIONS) or not os.path.isfile(full):
            continue
        if os.path.getsize(full) == 0:
            continue
        out.append(ConfigFile(full, Path(full).absolute()))
    return out


def parse_config_file(file: ConfigFile, problems: list[Problem]) -> Body | None:
    try:
        with file.path.open("rb") as f:
            data = f.read(MAX_TASK_FILE_BYTES + 1)
    except OSError as exc:
        problems.append(Problem(_os_message(exc), location=Location(file.name)))
        return None
    if len(data) > MAX_TASK_FILE_BYTES:
        problems.append(
            Problem(
                f"file is larger than {MAX_TASK_FILE_BYTES} bytes, the limit for a "
                "configuration file",
                location=Location(file.name, 1),
            )
        )
        return None
    try:
        if file.name.endswith(".json"):
            return parse_json(data, file.name, CONFIG_JSON_SCHEMA)
        return parse(data, file.name)
    except ConfigError as exc:
        problems.extend(exc.problems)
    except RecursionError:
        problems.append(Problem("file is nested too deeply", location=Location(file.name, 1)))
    return None


def _os_message(exc: OSError) -> str:
    return exc.strerror.lower() if exc.strerror else str(exc)
