"""Load one task file (HCL or JSON) into validated task specs, or problems with file:line."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from reconciler._core.errors import ConfigError, Location, Problem
from reconciler.taskfiles.decode import BodyReader
from reconciler.taskfiles.hcl import Body, parse
from reconciler.taskfiles.jsonsyntax import Schema, parse_json
from reconciler.taskfiles.tasks import DecodedFile, decode_tasks

log = logging.getLogger(__name__)

# A task file is small; anything this big is a mistake and is rejected before parsing.
# Thousands of tasks fit, and adversarial input at the limit still loads in about a second
# (tree-sitter's error recovery costs about 3 s per MiB of "{{{{...", lark far more).
MAX_TASK_FILE_BYTES = 512 * 1024
# Beyond this many problems in one file, the rest are summarised.
MAX_PROBLEMS = 20

TASK_FILE_SCHEMA: Schema = {
    "task": (
        0,
        {
            "condition": (1, {}),
            "module_input": (1, {}),
            "source_input": (1, {}),
            "buffer_period": (0, {}),
            "terraform_cloud_workspace": (0, {}),
        },
    ),
}


def is_task_file(name: str) -> bool:
    return name.endswith((".hcl", ".json"))


def parse_task_source(data: bytes, filename: str) -> Body:
    if filename.endswith(".json"):
        return parse_json(data, filename, TASK_FILE_SCHEMA)
    return parse(data, filename)


def load_task_file(data: bytes, filename: str) -> DecodedFile:
    """Parse and validate one task file. Never raises: bad content is the file's problem,
    and so is a failure of the reader itself (a bug), so that one file can never stop its
    source from loading the others."""
    try:
        return _load_task_file(data, filename)
    except Exception as exc:
        log.exception("reading %s failed", filename)
        return DecodedFile(
            problems=[
                Problem(
                    f"cannot read this file: internal error ({type(exc).__name__}: {exc}); "
                    "the daemon's log has the details",
                    location=Location(filename, 1),
                )
            ]
        )


def _load_task_file(data: bytes, filename: str) -> DecodedFile:
    if len(data) > MAX_TASK_FILE_BYTES:
        return DecodedFile(
            problems=[
                Problem(
                    f"file is {len(data)} bytes; task files are limited to "
                    f"{MAX_TASK_FILE_BYTES} bytes",
                    location=Location(filename, 1),
                )
            ]
        )
    try:
        body = parse_task_source(data, filename)
    except ConfigError as exc:
        return DecodedFile(problems=exc.problems)
    except RecursionError:
        return DecodedFile(
            problems=[Problem("file is nested too deeply", location=Location(filename, 1))]
        )
    problems: list[Problem] = []
    top = BodyReader(body, file=filename, where=(), problems=problems, line=1)
    blocks = top.blocks("task")
    top.finish(
        {
            "terraform_provider": "task files hold only task blocks; provider blocks belong in "
            "the daemon configuration",
        }
    )
    decoded = decode_tasks(blocks, filename)
    decoded.problems[:0] = problems
    if len(decoded.problems) > MAX_PROBLEMS:
        rest = len(decoded.problems) - MAX_PROBLEMS
        decoded.problems = [
            *decoded.problems[:MAX_PROBLEMS],
            Problem(
                f"... and {rest} more problems",
                location=decoded.problems[MAX_PROBLEMS].location or Location(filename, 1),
            ),
        ]
    return decoded


@contextmanager
def gc_paused() -> Iterator[None]:
    """Parsing allocates many small objects; pausing the collector during a bulk load avoids
    repeated full passes over them (measured: several times faster on large loads)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
