"""HCL reading: tree-sitter-hcl for speed and byte positions, python-hcl2 for syntax errors.

Task files hold literal values only (strings, numbers, bools, null, lists, objects, heredocs),
so the tree-sitter tree is converted straight into plain Python values. Every attribute and
block keeps its line/column and byte range: validation messages point at them and the
format-preserving editor splices at them.

tree-sitter recovers from errors and its ERROR nodes can span a whole block, so when a file
does not parse we ask python-hcl2 (a lark LALR parser) where the first offending token is.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import tree_sitter_hcl
from tree_sitter import Language, Node, Parser

from reconciler._core.errors import ConfigError, Location, Problem

Value = Any  # str | int | float | bool | None | list[Value] | dict[str, Value]

MAX_DEPTH = 64
# python-hcl2 (lark) takes about 10 s per MiB on adversarial input: it reads at most this
# much, up to just past tree-sitter's first error; beyond, tree-sitter's position is used.
LARK_WINDOW = 64 * 1024


@dataclass
class Attribute:
    name: str
    value: Value
    line: int
    column: int
    start_byte: int
    end_byte: int
    value_byte: int = 0  # where the value's expression starts


@dataclass
class Block:
    type: str
    labels: list[str]
    body: Body
    line: int
    column: int
    start_byte: int
    end_byte: int
    # Byte offsets just after "{" and at "}", for inserting attributes.
    open_byte: int = 0
    close_byte: int = 0


@dataclass
class Body:
    attributes: list[Attribute] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)


class _Unsupported(Exception):
    def __init__(self, node: Node, message: str) -> None:
        super().__init__(message)
        self.node = node
        self.message = message


@cache
def _parser() -> Parser:
    return Parser(Language(tree_sitter_hcl.language()))


def parse(source: bytes, filename: str) -> Body:
    """Parse HCL source into a Body, or raise ConfigError naming file:line:column."""
    try:
        text = source.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = source.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            Problem("file is not valid UTF-8 text", location=Location(filename, line))
        ) from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise ConfigError(Problem("file contains NUL bytes", location=Location(filename, line)))
    tree = _parser().parse(source)
    root = tree.root_node
    if root.has_error:
        raise ConfigError(_syntax_problem(root, text, filename))
    try:
        body_node = next((c for c in root.named_children if c.type == "body"), None)
        return _body(body_node, source, 0) if body_node is not None else Body()
    except _Unsupported as exc:
        loc = Location(filename, exc.node.start_point[0] + 1, exc.node.start_point[1] + 1)
        raise ConfigError(Problem(exc.message, location=loc)) from None


# --- syntax errors -------------------------------------------------------------------------

_HCL1_LABELLED_ASSIGN = re.compile(r'^\s*([A-Za-z_][\w-]*)((?:\s+"[^"]*")+)\s*=\s*\{')
_HCL1_QUOTED_KEY = re.compile(r'^\s*"[^"]*"\s*=')
_BLOCK_OPEN = re.compile(r"^\s*([A-Za-z_][\w-]*)\s*\{\s*$")


def _first_error(node: Node) -> Node | None:
    if node.is_error or node.is_missing:
        return node
    for child in node.children:
        if child.has_error or child.is_missing:
            found = _first_error(child)
            if found is not None:
                return found
    return None


def _syntax_problem(root: Node, text: str, filename: str) -> Problem:
    bad = _first_error(root)
    line, col = (bad.start_point[0] + 1, bad.start_point[1] + 1) if bad else (1, 1)
    message = "syntax error"
    if bad is not None and bad.is_missing:
        message = f'syntax error: expected "{bad.type}"'
    # Ask the reference parser for the exact position of the first bad token, in the text
    # up to the line after tree-sitter's first error (the first bad token is not later).
    end = _offset_after_line(text, bad.end_point[0] + 2 if bad else len(text))
    window = text[:end]
    precise = _lark_error(window) if len(window) <= LARK_WINDOW else None
    if precise is not None and precise[2] is None and end < len(text):
        precise = None  # the window's own end, not the file's: keep tree-sitter's position
    if precise is not None:
        line, col, token = precise
        message = (
            "syntax error: unexpected end of file"
            if token is None
            else (f"syntax error: unexpected {token}")
        )
    lines = text.splitlines()
    src_line = lines[line - 1] if 0 < line <= len(lines) else ""
    hcl1 = _HCL1_LABELLED_ASSIGN.match(src_line)
    if hcl1:
        name, labels = hcl1.group(1), " ".join(hcl1.group(2).split())
        message += (
            f"; `{name} {labels} = {{` is HCL1 syntax, not valid HCL2:"
            f' write `{name} {labels} {{` (no "=")'
        )
    elif _HCL1_QUOTED_KEY.match(src_line):
        block = next(
            (m.group(1) for prev in reversed(lines[: line - 1]) if (m := _BLOCK_OPEN.match(prev))),
            None,
        )
        if block is not None:
            message += (
                f"; a quoted name inside a block is HCL1 syntax, not valid HCL2: write"
                f" `{block} = {{` (a map, where quoted names are allowed)"
            )
    return Problem(message, location=Location(filename, line, col))


def _offset_after_line(text: str, lines: int) -> int:
    """The offset just past the first `lines` lines of `text`."""
    at = 0
    for _ in range(lines):
        at = text.find("\n", at) + 1
        if at == 0:
            return len(text)
    return at


def _lark_error(text: str) -> tuple[int, int, str | None] | None:
    import hcl2
    from lark.exceptions import (
        UnexpectedCharacters,
        UnexpectedEOF,
        UnexpectedInput,
        UnexpectedToken,
    )

    try:
        hcl2.parses_to_tree(text if text.endswith("\n") else text + "\n")
    except UnexpectedEOF:
        n = text.count("\n")
        return (n + 1, 1, None)
    except UnexpectedToken as exc:
        tok = exc.token
        if tok.type == "$END":
            return (exc.line if exc.line > 0 else text.count("\n") + 1, max(exc.column, 1), None)
        shown = str(tok).strip().splitlines()[0][:40] if str(tok).strip() else repr(str(tok))
        return (exc.line, exc.column, f'"{shown}"')
    except UnexpectedCharacters as exc:
        pos = exc.pos_in_stream or 0
        ch = text[pos] if 0 <= pos < len(text) else "?"
        return (exc.line, exc.column, f"character {ch!r}")
    except UnexpectedInput as exc:
        return (exc.line, exc.column, "input")
    except Exception:
        return None
    return None


# --- conversion ----------------------------------------------------------------------------


def _text(node: Node) -> str:
    return (node.text or b"").decode("utf-8")


def _body(node: Node, src: bytes, depth: int) -> Body:
    if depth > MAX_DEPTH:
        raise _Unsupported(node, f"blocks are nested more than {MAX_DEPTH} deep")
    body = Body()
    for child in node.named_children:
        if child.type == "attribute":
            name_node = child.named_children[0]
            expr = child.named_children[1]
            body.attributes.append(
                Attribute(
                    name=_text(name_node),
                    value=_expr(expr, src, depth + 1),
                    line=child.start_point[0] + 1,
                    column=child.start_point[1] + 1,
                    start_byte=child.start_byte,
                    end_byte=child.end_byte,
                    value_byte=expr.start_byte,
                )
            )
        elif child.type == "block":
            body.blocks.append(_block(child, src, depth + 1))
        elif child.type == "comment":
            continue
        else:  # pragma: no cover - the grammar has no other body members
            raise _Unsupported(child, f"unexpected {child.type}")
    return body


def _block(node: Node, src: bytes, depth: int) -> Block:
    type_name = ""
    labels: list[str] = []
    inner = Body()
    open_byte = close_byte = node.start_byte
    for child in node.children:
        if child.type == "identifier":
            if not type_name:
                type_name = _text(child)
            else:
                labels.append(_text(child))
        elif child.type == "string_lit":
            labels.append(_string_lit(child))
        elif child.type == "block_start":
            open_byte = child.end_byte
        elif child.type == "block_end":
            close_byte = child.start_byte
        elif child.type == "body":
            inner = _body(child, src, depth)
    return Block(
        type=type_name,
        labels=labels,
        body=inner,
        line=node.start_point[0] + 1,
        column=node.start_point[1] + 1,
        start_byte=node.start_byte,
        end_byte=node.end_byte,
        open_byte=open_byte,
        close_byte=close_byte,
    )


def _expr(node: Node, src: bytes, depth: int) -> Value:
    if depth > MAX_DEPTH:
        raise _Unsupported(node, f"values are nested more than {MAX_DEPTH} deep")
    kind = node.type
    if kind in ("expression", "literal_value", "collection_value", "template_expr"):
        children = node.named_children
        if len(children) != 1:
            raise _Unsupported(node, _not_literal(node))
        return _expr(children[0], src, depth)
    if kind == "string_lit":
        return _string_lit(node)
    if kind == "numeric_lit":
        return _number(node)
    if kind == "bool_lit":
        return _text(node) == "true"
    if kind == "null_lit":
        return None
    if kind == "tuple":
        return [_expr(c, src, depth + 1) for c in node.named_children if c.type == "expression"]
    if kind == "object":
        obj: dict[str, Value] = {}
        for elem in node.named_children:
            if elem.type != "object_elem":
                continue
            key_node, val_node = elem.named_children[0], elem.named_children[-1]
            key = _object_key(key_node)
            if key in obj:
                raise _Unsupported(key_node, f'duplicate key "{key}" in object')
            obj[key] = _expr(val_node, src, depth + 1)
        return obj
    if kind == "heredoc_template":
        return _heredoc(node, src)
    if kind == "quoted_template":
        raise _Unsupported(
            node,
            "template interpolation (${...}) and directives (%{...}) are "
            "not allowed in task files; write $${ or %%{ for a literal",
        )
    if kind == "operation":
        inner = node.named_children[0]
        if inner.type == "unary_operation" and _text(inner.children[0]) == "-":
            operand = inner.named_children[0]
            value = _expr(operand, src, depth + 1)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return -value
        raise _Unsupported(node, _not_literal(node))
    raise _Unsupported(node, _not_literal(node))


def _not_literal(node: Node) -> str:
    snippet = _text(node).splitlines()[0][:40] if node.text else node.type
    return f"expected a literal value, not the expression `{snippet}`"


def _object_key(node: Node) -> str:
    # An object key is an expression: a bare identifier (variable_expr) or a string.
    inner = node
    while inner.type in ("expression", "literal_value") and inner.named_child_count == 1:
        inner = inner.named_children[0]
    if inner.type == "variable_expr" and inner.named_child_count == 1:
        return _text(inner)
    if inner.type == "string_lit":
        return _string_lit(inner)
    if inner.type in ("null_lit", "bool_lit"):  # e.g. required_providers = { null = {...} }
        return _text(inner)
    raise _Unsupported(node, "object keys must be names or quoted strings")


def _number(node: Node) -> int | float:
    raw = _text(node)
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        value = float(raw)
    except ValueError:
        # tree-sitter-hcl reads more than HCL's decimal numbers (0x10, say).
        raise _Unsupported(node, f"{raw[:40]} is not a decimal number") from None
    if not math.isfinite(value):
        shown = raw if len(raw) <= 40 else raw[:40] + "..."
        raise _Unsupported(node, f"the number {shown} is too large")
    return value


def _string_lit(node: Node) -> str:
    for child in node.children:
        if child.type not in ("template_literal", "quoted_template_start", "quoted_template_end"):
            raise _Unsupported(child, "unexpected content in string")
    # tree-sitter-hcl leaves leading and trailing blanks out of template_literal nodes, so
    # the text is taken from between the quotes.
    raw = _text(node)[1:-1]
    if "\n" in raw:
        raise _Unsupported(
            node,
            "a quoted string cannot span lines in HCL2 (HCL1 allowed it): "
            "write \\n inside the quotes, or use a heredoc (<<EOT ... EOT)",
        )
    try:
        return unquote_body(raw)
    except ValueError as exc:
        raise _Unsupported(node, str(exc)) from None


def _heredoc(node: Node, src: bytes) -> str:
    idents = [c for c in node.children if c.type == "heredoc_identifier"]
    start = next(c for c in node.children if c.type == "heredoc_start")
    for child in node.named_children:
        if child.type not in ("heredoc_start", "heredoc_identifier", "template_literal"):
            raise _Unsupported(child, "template interpolation is not allowed in task files")
    # The content runs from the line after `<<EOT` to the start of the closing line.
    begin = src.index(b"\n", idents[0].end_byte) + 1
    end_line_start = src.rfind(b"\n", 0, idents[-1].start_byte) + 1
    content = src[begin:end_line_start].decode("utf-8") if end_line_start > begin else ""
    if _text(start) == "<<-":
        lines = content.split("\n")
        indents = [len(ln) - len(ln.lstrip(" \t")) for ln in lines if ln.strip()]
        cut = min(indents) if indents else 0
        content = "\n".join(ln[cut:] for ln in lines)
    return content.replace("$${", "${").replace("%%{", "%{")


# --- quoting -------------------------------------------------------------------------------

_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}
_ESCAPE_RE = re.compile(r"\\(?:u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|(.)|$)", re.DOTALL)


def unquote_body(raw: str) -> str:
    """Resolve the escapes of the text between the quotes of an HCL string.

    Raises ValueError on an unknown escape or on a live `${`/`%{` (templates mean nothing
    in a task file).
    """
    if "\\" not in raw:  # fast path: most strings have no escapes at all
        return _unescape_templates(raw)
    out: list[str] = []
    pos = 0
    for m in _ESCAPE_RE.finditer(raw):
        out.append(_unescape_templates(raw[pos : m.start()]))
        short, long, other = m.group(1), m.group(2), m.group(3)
        if short or long:
            out.append(chr(int(short or long, 16)))
        elif other is not None and other in _ESCAPES:
            out.append(_ESCAPES[other])
        else:
            shown = "\\" + (other or "")
            raise ValueError(f'invalid escape sequence "{shown}" in string')
        pos = m.end()
    out.append(_unescape_templates(raw[pos:]))
    return "".join(out)


def _unescape_templates(chunk: str) -> str:
    if "${" not in chunk and "%{" not in chunk:  # fast path: nothing to unescape or reject
        return chunk
    i = 0
    out = []
    while i < len(chunk):
        two = chunk[i : i + 3]
        if two in ("$${", "%%{"):
            out.append(two[1:])
            i += 3
            continue
        if chunk[i : i + 2] in ("${", "%{"):
            raise ValueError(
                "template interpolation (${...}) and directives (%{...}) are not allowed in "
                "task files; write $${ or %%{ for a literal"
            )
        out.append(chunk[i])
        i += 1
    return "".join(out)


def quote(value: str) -> str:
    """Quote a string as an HCL literal that reads back byte-for-byte equal.

    Escapes backslash, quote, \\n, \\r, \\t, other control characters as \\uXXXX, and the
    sign of `${` and `%{` so that nothing becomes an interpolation.
    """
    out = ['"']
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F or 0xD800 <= ord(ch) <= 0xDFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    # `$${` is HCL's own escape, but `$$${` trips tree-sitter-hcl and an unclosed `$${`
    # trips python-hcl2; a \u escape of the sign reads back the same everywhere,
    # Terraform included.
    return "".join(out).replace("${", "\\u0024{").replace("%{", "\\u0025{")
