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
import itertools
import json
import re
from typing import Any

from reconciler._core.errors import ConfigError
from reconciler.taskfiles import hcl
from reconciler.taskfiles.load import load_task_file
from reconciler.taskfiles.model import TaskSpec
from reconciler.taskfiles.write import (
    TASK_ATTRIBUTES,
    TASK_BLOCKS,
    check_reads_back,
    render_task,
    render_value,
    task_attribute,
    task_blocks,
)

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


def update_task(source: bytes, filename: str, task_name: str, new: TaskSpec) -> bytes:
    """Make one task `new` (same name). Only the bytes of what changed are rewritten: a
    changed attribute's value, an attribute added after the last one or removed with its
    line, a changed nested block rewritten in place; everything else (comments, spacing,
    the other tasks) stays. When the task's block cannot be edited that way (an alias such
    as `source`, an attribute sharing its line), its block alone is written anew. Raises
    like `set_enabled`; JSON files are refused (ValueError)."""
    before = _load_specs(source, filename)
    _require_task(before, task_name)
    if new.name != task_name:
        raise ValueError(f'the task "{task_name}" cannot be renamed by an update')
    old = next(spec for spec in before if spec.name == task_name)
    if _same(old, new):
        return source
    if _is_json(filename):
        raise ValueError(
            f"{filename} is a JSON task file: only `enabled` is changed through the API "
            "there; edit the file instead"
        )
    expected = [new if spec.name == task_name else spec for spec in before]
    try:
        result = _hcl_update(source, filename, task_name, old, new)
        check_reads_back(result, filename, expected)
    except ValueError:
        result = _hcl_rewrite_block(source, filename, task_name, new)
        check_reads_back(result, filename, expected)
    return result


# --- shared --------------------------------------------------------------------------------


def _same(a: object, b: object) -> bool:
    # repr too: == lets True equal 1 and 1 equal 1.0.
    return a == b and repr(a) == repr(b)


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


# --- update_task (HCL) ---------------------------------------------------------------------

_Edit = tuple[int, int, bytes]  # replace source[start:end] with the bytes


def _hcl_update(
    source: bytes, filename: str, task_name: str, old: TaskSpec, new: TaskSpec
) -> bytes:
    blocks = _task_blocks(source, filename)
    block = blocks[_find_block(blocks, task_name, filename)]
    attrs = {a.name: a for a in block.body.attributes}
    if set(attrs) - set(TASK_ATTRIBUTES):
        raise ValueError("the task uses an attribute alias")  # rewrite its block
    name_attr = attrs["name"]
    indent = _own_line_indent(source, name_attr, filename)
    newline = b"\r\n" if b"\r\n" in source[block.start_byte : block.end_byte] else b"\n"
    edits: list[_Edit] = []
    added: list[bytes] = []
    for field in TASK_ATTRIBUTES:
        was, now = getattr(old, field), getattr(new, field)
        if _same(was, now):
            continue
        attr = attrs.get(field)
        if attr is not None and now is not None:
            literal = render_value(now, 1).encode()
            edits.append((attr.value_byte, attr.end_byte, literal.replace(b"\n", newline)))
        elif attr is not None:
            _own_line_indent(source, attr, filename)
            edits.append(
                (_line_start(source, attr.start_byte), _line_end(source, attr.end_byte), b"")
            )
        else:
            line = indent + task_attribute(field, now).encode() + b"\n"
            added.append(line.replace(b"\n", newline))
    if added:
        last = max(block.body.attributes, key=lambda a: a.end_byte)
        _own_line_indent(source, last, filename)
        at = _line_end(source, last.end_byte)
        edits.append((at, at, b"".join(added)))
    for kind, field in TASK_BLOCKS:
        if _same(getattr(old, field), getattr(new, field)):
            continue
        text = b"\n\n".join("\n".join(lines).encode() for lines in task_blocks(new, kind))
        text = text.replace(b"\n", newline)
        existing = [b for b in block.body.blocks if b.type == kind]
        for index, nested in enumerate(existing):
            start = _line_start(source, nested.start_byte)
            if source[start : nested.start_byte].strip(b" \t"):
                raise ValueError(f"{filename}:{nested.line}: the block shares its line")
            end = _end_of_closing_line(source, nested.end_byte)
            edits.append((start, end, text + newline if index == 0 and text else b""))
        if not existing and text:
            at = _line_start(source, block.close_byte)
            edits.append((at, at, newline + text + newline))
    return _apply(source, edits)


def _own_line_indent(source: bytes, attr: hcl.Attribute, filename: str) -> bytes:
    """The indentation of an attribute that stands on its own line(s)."""
    start = _line_start(source, attr.start_byte)
    indent = source[start : attr.start_byte]
    rest = source[attr.end_byte : _line_end(source, attr.end_byte)].strip()
    if indent.strip(b" \t") or (rest and not rest.startswith((b"#", b"//"))):
        raise ValueError(f'{filename}:{attr.line}: "{attr.name}" does not stand on its own line')
    return indent


def _line_end(source: bytes, pos: int) -> int:
    """Just past the newline that ends the line holding `pos` (or the end of the source)."""
    newline = source.find(b"\n", pos)
    return len(source) if newline < 0 else newline + 1


def _apply(source: bytes, edits: list[_Edit]) -> bytes:
    edits.sort(key=lambda e: (e[0], e[1]))
    for (_, end, _), (start, _, _) in itertools.pairwise(edits):
        if start < end:
            raise ValueError("overlapping edits")
    for start, end, text in reversed(edits):
        source = source[:start] + text + source[end:]
    return source


def _hcl_rewrite_block(source: bytes, filename: str, task_name: str, new: TaskSpec) -> bytes:
    """The task's block written anew (comments above it stay; those inside do not)."""
    blocks = _task_blocks(source, filename)
    block = blocks[_find_block(blocks, task_name, filename)]
    text = render_task(new).rstrip("\n").encode()
    if b"\r\n" in source[block.start_byte : block.end_byte]:
        text = text.replace(b"\n", b"\r\n")
    return source[: block.start_byte] + text + source[block.end_byte :]


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
