"""Surgical edits of existing task files, keeping every byte that the edit does not need.

HCL files are edited by splicing bytes at the positions the parser reports, so comments,
spacing, tabs, CRLF line endings and the other tasks stay exactly as their author wrote
them. JSON task files are NOT byte-preserved: they are loaded, changed and written again
with `json.dumps(indent=2)`.

Every result is loaded again before it is returned and must hold exactly the expected
tasks; otherwise ValueError is raised and nothing should be written.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from reconciler._core.errors import ConfigError
from reconciler.taskfiles import hcl
from reconciler.taskfiles.load import load_task_file
from reconciler.taskfiles.model import TaskSpec
from reconciler.taskfiles.write import check_reads_back

_BOOL_OR_NULL_AT_END = re.compile(rb"(?<![\w-])(?:true|false|null)\Z")
_NAME_EQUALS = re.compile(rb"name([ ]*)=")


def set_enabled(source: bytes, filename: str, task_name: str, enabled: bool) -> bytes:
    """Set `enabled` of one task. Raises KeyError for an unknown task, ValueError when the
    file does not load or the edit would not read back as intended."""
    before = _load_specs(source, filename)
    _require_task(before, task_name)
    if _is_json(filename):
        result = _json_set_enabled(source, task_name, enabled)
    else:
        result = _hcl_set_enabled(source, filename, task_name, enabled)
    expected = [
        dataclasses.replace(spec, enabled=enabled) if spec.name == task_name else spec
        for spec in before
    ]
    check_reads_back(result, filename, expected)
    return result


def remove_task(source: bytes, filename: str, task_name: str) -> bytes | None:
    """Remove one task, with the comment lines attached above it. Returns None when no
    task would be left (the caller deletes the file). Raises like `set_enabled`."""
    before = _load_specs(source, filename)
    _require_task(before, task_name)
    remaining = [spec for spec in before if spec.name != task_name]
    if not remaining:
        return None
    if _is_json(filename):
        result = _json_remove(source, task_name)
    else:
        result = _hcl_remove(source, filename, task_name)
    check_reads_back(result, filename, remaining)
    return result


# --- shared --------------------------------------------------------------------------------


def _is_json(filename: str) -> bool:
    return filename.endswith(".json")


def _load_specs(source: bytes, filename: str) -> list[TaskSpec]:
    decoded = load_task_file(source, filename)
    if decoded.problems:
        details = "; ".join(str(p) for p in decoded.problems)
        raise ValueError(f"{filename} does not load, so it cannot be edited: {details}")
    return [task.spec for task in decoded.tasks]


def _require_task(specs: list[TaskSpec], task_name: str) -> None:
    if not any(spec.name == task_name for spec in specs):
        raise KeyError(task_name)


def _task_blocks(source: bytes, filename: str) -> list[hcl.Block]:
    try:
        body = hcl.parse(source, filename)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return [block for block in body.blocks if block.type == "task"]


def _block_name(block: hcl.Block) -> str | None:
    attr = _attribute(block, "name")
    return attr.value if attr is not None and isinstance(attr.value, str) else None


def _find_block(blocks: list[hcl.Block], task_name: str, filename: str) -> int:
    for index, block in enumerate(blocks):
        if _block_name(block) == task_name:
            return index
    # The loader also accepts `task = { ... }`, which has no block to splice at.
    raise ValueError(f'{filename}: task "{task_name}" is not written as a task block')


def _attribute(block: hcl.Block, name: str) -> hcl.Attribute | None:
    return next((a for a in block.body.attributes if a.name == name), None)


def _line_start(source: bytes, pos: int) -> int:
    return source.rfind(b"\n", 0, pos) + 1


# --- set_enabled (HCL) ---------------------------------------------------------------------


def _hcl_set_enabled(source: bytes, filename: str, task_name: str, enabled: bool) -> bytes:
    blocks = _task_blocks(source, filename)
    block = blocks[_find_block(blocks, task_name, filename)]
    literal = b"true" if enabled else b"false"
    current = _attribute(block, "enabled")
    if current is not None:
        return _replace_literal(source, current, literal, filename)
    name_attr = _attribute(block, "name")
    assert name_attr is not None  # _find_block matched on it
    return _insert_after(source, name_attr, literal, filename)


def _replace_literal(source: bytes, attr: hcl.Attribute, literal: bytes, filename: str) -> bytes:
    text = source[attr.start_byte : attr.end_byte]
    match = _BOOL_OR_NULL_AT_END.search(text)
    if match is None:
        raise ValueError(f'{filename}:{attr.line}: cannot find the value of "enabled" to edit')
    start = attr.start_byte + match.start()
    return source[:start] + literal + source[attr.end_byte :]


def _insert_after(source: bytes, name_attr: hcl.Attribute, literal: bytes, filename: str) -> bytes:
    """Insert `enabled = <literal>` as the line after the name line, indented like it and,
    when the name's `=` is padded for alignment, aligned with it."""
    line_start = _line_start(source, name_attr.start_byte)
    indent = source[line_start : name_attr.start_byte]
    line_end = source.find(b"\n", name_attr.end_byte)
    if indent.strip(b" \t") or line_end < 0:
        raise ValueError(
            f'{filename}:{name_attr.line}: "name" does not stand on its own line; '
            "cannot insert enabled after it"
        )
    newline = b"\r\n" if source[line_end - 1 : line_end] == b"\r" else b"\n"
    key = b"enabled" + b" " * _alignment_pad(source[name_attr.start_byte : name_attr.end_byte])
    line = indent + key + b"= " + literal + newline
    return source[: line_end + 1] + line + source[line_end + 1 :]


def _alignment_pad(name_text: bytes) -> int:
    match = _NAME_EQUALS.match(name_text)
    if match is None:
        return 1
    equals_column = match.end() - 1
    return max(1, equals_column - len("enabled"))


# --- remove_task (HCL) ---------------------------------------------------------------------


def _hcl_remove(source: bytes, filename: str, task_name: str) -> bytes:
    blocks = _task_blocks(source, filename)
    index = _find_block(blocks, task_name, filename)
    block = blocks[index]
    previous_end = blocks[index - 1].end_byte if index else 0
    start = _start_with_attached_comments(source, previous_end, block.start_byte)
    end = _end_of_closing_line(source, block.end_byte)
    start, end = _take_one_blank_line(source, start, end)
    return source[:start] + source[end:]


def _comments(source: bytes, start: int, end: int) -> list[tuple[int, int]]:
    """Byte ranges of the comments in a stretch of source that holds only comments and
    whitespace (the gap between two top-level blocks)."""
    found: list[tuple[int, int]] = []
    pos = start
    while pos < end:
        if source[pos : pos + 1] in (b" ", b"\t", b"\r", b"\n"):
            pos += 1
        elif source.startswith((b"#", b"//"), pos):
            stop = source.find(b"\n", pos, end)
            stop = end if stop < 0 else stop
            found.append((pos, stop))
            pos = stop
        elif source.startswith(b"/*", pos):
            close = source.find(b"*/", pos + 2, end)
            stop = end if close < 0 else close + 2
            found.append((pos, stop))
            pos = stop
        else:  # not trivia: nothing before this point can be attached
            found.clear()
            pos += 1
    return found


def _start_with_attached_comments(source: bytes, lower: int, block_start: int) -> int:
    """Where the removal starts: the block's line, or the first comment of the comment
    lines directly above it (no blank line between them)."""
    start = _line_start(source, block_start)
    if source[start:block_start].strip(b" \t"):
        return block_start
    for comment_start, comment_end in reversed(_comments(source, lower, start)):
        line_start = _line_start(source, comment_start)
        if line_start < lower or source[line_start:comment_start].strip(b" \t"):
            break  # the comment trails other content on its line
        gap = source[comment_end:start]
        if gap.strip() or gap.count(b"\n") != 1:
            break
        start = line_start
    return start


def _end_of_closing_line(source: bytes, block_end: int) -> int:
    """Where the removal ends: past the newline of the block's last line when only
    whitespace or a comment follows the closing brace there."""
    pos = _skip_blanks(source, block_end)
    if source.startswith((b"#", b"//"), pos):
        newline = source.find(b"\n", pos)
        pos = len(source) if newline < 0 else newline
    elif source.startswith(b"/*", pos):
        close = source.find(b"*/", pos)
        newline = source.find(b"\n", pos)
        if close >= 0 and (newline < 0 or close < newline):
            pos = _skip_blanks(source, close + 2)
    if source.startswith(b"\r\n", pos):
        return pos + 2
    if source.startswith(b"\n", pos):
        return pos + 1
    return pos if pos == len(source) else block_end


def _skip_blanks(source: bytes, pos: int) -> int:
    while source[pos : pos + 1] in (b" ", b"\t"):
        pos += 1
    return pos


def _take_one_blank_line(source: bytes, start: int, end: int) -> tuple[int, int]:
    """Widen the removal by one blank line so that no double blank line is left, and the
    file does not start or end with a blank line that used to separate tasks."""
    at_line_ends = _line_start(source, end) == end or end == len(source)
    if _line_start(source, start) != start or not at_line_ends:
        return start, end
    after = _blank_line_at(source, end)
    before = _blank_line_before(source, start)
    if after is not None and (before is not None or start == 0):
        return start, after
    if before is not None and (after is not None or end == len(source)):
        return before, end
    return start, end


def _blank_line_at(source: bytes, pos: int) -> int | None:
    """The end of the line starting at `pos` if that line is blank."""
    newline = source.find(b"\n", pos)
    if newline < 0 or source[pos:newline].strip(b" \t\r"):
        return None
    return newline + 1


def _blank_line_before(source: bytes, pos: int) -> int | None:
    """The start of the line before the one starting at `pos` if that line is blank."""
    if pos == 0:
        return None
    previous = _line_start(source, pos - 1)
    return None if source[previous : pos - 1].strip(b" \t\r") else previous


# --- JSON ----------------------------------------------------------------------------------


def _json_task_objects(data: Any) -> list[dict[str, Any]]:
    tasks = data.get("task") if isinstance(data, dict) else None
    items = tasks if isinstance(tasks, list) else [tasks]
    return [item for item in items if isinstance(item, dict)]


def _json_dump(data: Any) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _json_set_enabled(source: bytes, task_name: str, enabled: bool) -> bytes:
    data = json.loads(source)
    for task in _json_task_objects(data):
        if task.get("name") == task_name:
            task["enabled"] = enabled
    return _json_dump(data)


def _json_remove(source: bytes, task_name: str) -> bytes:
    data = json.loads(source)
    tasks = data["task"]
    if not isinstance(tasks, list):
        raise ValueError(f'"task" is a single JSON object: cannot remove "{task_name}" from it')
    data["task"] = [t for t in tasks if not (isinstance(t, dict) and t.get("name") == task_name)]
    return _json_dump(data)
