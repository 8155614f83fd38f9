"""Where the hole is and what it looks like: kind, replace range, indentation, closers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from ..hole import HoleKind
from ..textfix import indent_of, indent_width
from .brackets import (
    Bracket,
    auto_closed_only,
    char_brackets,
    closers_for,
    is_block_brace,
    still_open,
    tree_brackets,
)
from .config import SizingConfig
from .context import Document
from .tables import HEADER_ENDS, PY_INLINE_COLONS, statement_containers

_BLOCK_END = re.compile(r"^(?:[)\]}]|end\b)")  # a line that closes the block it sits in


@dataclass(frozen=True)
class Shape:
    kind: HoleKind
    indent: str
    closers: str
    multiline: bool
    notes: tuple[str, ...] = ()


# -- brackets around an offset ----------------------------------------------------------------------
def _statement_start(doc: Document, byte: int) -> int:
    """Byte where the statement holding `byte` starts; an unfinished statement just before it counts."""
    assert doc.tree is not None and doc.language is not None
    containers = statement_containers(doc.language)
    node = doc.tree.root_node.descendant_for_byte_range(byte, byte)
    while node is not None:
        parent = node.parent
        if node.type in containers or parent is None:  # between statements: look at the one before
            before = [c for c in node.named_children if c.end_byte <= byte]
            if before and before[-1].has_error:
                return before[-1].start_byte
            return -1
        if parent.type in containers or parent.parent is None:
            return node.start_byte
        node = parent
    return -1


def open_at(doc: Document, offset: int, cfg: SizingConfig) -> list[Bracket]:
    """Brackets and quotes open at `offset` on its statement, outermost first."""
    row = doc.line_of(offset)
    if doc.tree is None:
        return still_open(char_brackets(doc.text[doc.index.starts[row] : offset], row))
    byte = doc.to_byte(offset)
    floor = doc.row_bytes(max(0, row - cfg.lookback_lines))[0]
    start = _statement_start(doc, byte)
    start = doc.row_bytes(row)[0] if start < 0 else max(start, floor)
    return still_open(tree_brackets(doc, start, byte))


def suffix_brackets(doc: Document, offset: int, cfg: SizingConfig) -> Iterator[Bracket]:
    row = doc.line_of(offset)
    if doc.tree is None:
        return char_brackets(doc.text[offset : doc.index.line_end(row)], row)
    last = min(doc.index.line_count - 1, row + cfg.lookahead_lines)
    return tree_brackets(doc, doc.to_byte(offset), doc.row_bytes(last)[1])


# -- block headers --------------------------------------------------------------------------------------
def ends_with_header(doc: Document, row: int, limit: int | None = None) -> bool:
    """Does the code of `row` (before offset `limit`) end with a block header: `:`, `{`, `then`, ...?"""
    line = doc.line(row) if limit is None else doc.text[doc.index.starts[row] : limit]
    if doc.tree is None:
        return line.rstrip().endswith((":", "{"))
    end = doc.row_bytes(row)[1] if limit is None else doc.to_byte(limit)
    code = [leaf for leaf in doc.row_leaves(row) if leaf.end_byte <= end]
    if not code:
        return False
    leaf, language = code[-1], doc.language
    assert language is not None
    if leaf.type == "{":
        return is_block_brace(leaf, language)
    if leaf.type not in HEADER_ENDS.get(language, ()):
        return False
    parent = leaf.parent.type if leaf.parent is not None else ""
    if language == "python":
        return parent not in PY_INLINE_COLONS
    return leaf.type != ")" or parent == "parameters"


def _header_brace(doc: Document, row: int) -> Bracket | None:
    """The block `{` that ends a header row, for checking whether the suffix closes the block."""
    code = doc.row_leaves(row)
    if code and code[-1].type == "{":
        return Bracket("{", row, block=True)
    return None


def prev_code_row(doc: Document, row: int) -> int | None:
    return next(doc.code_rows(range(row - 1, -1, -1)), None)


def next_code_row(doc: Document, row: int) -> int | None:
    return next(doc.code_rows(range(row + 1, doc.index.line_count)), None)


# -- cursor holes ---------------------------------------------------------------------------------------
def cursor_shape(doc: Document, cursor: int, cfg: SizingConfig) -> Shape:
    row = doc.line_of(cursor)
    line = doc.line(row)
    before, after = line[: cursor - doc.index.starts[row]], line[cursor - doc.index.starts[row] :]
    opened = open_at(doc, cursor, cfg)
    if opened:  # on a line of its own inside brackets, the middle may be several lines of items
        closers = closers_for(opened[::-1], suffix_brackets(doc, cursor, cfg), row, after)
        own_line = not before.strip() and not opened[-1].is_quote
        note = "new lines inside brackets" if own_line else "inside brackets or a string"
        return Shape(HoleKind.EXPRESSION, indent_of(line), closers, own_line, (note,))
    if not before.strip():
        header = prev_code_row(doc, row)
        if header is not None and ends_with_header(doc, header):
            first = indent_of(line) if after.strip() else None
            return _after_header(doc, header, cursor, first, cfg)
        return Shape(HoleKind.STATEMENT, _statement_indent(doc, row, after), "", True, ("new statement",))
    if not after.strip() and ends_with_header(doc, row, cursor):
        return _after_header(doc, row, cursor, None, cfg)
    if after.strip() and not auto_closed_only(after):
        return Shape(HoleKind.EXPRESSION, indent_of(line), "", False, ("inside a line",))
    return Shape(HoleKind.LINE, indent_of(line), "", False, ("rest of the line",))


def _after_header(doc: Document, header: int, cursor: int, first: str | None, cfg: SizingConfig) -> Shape:
    """A hole below a block header: the whole body when the block is empty, else one more statement.

    `first` is the indentation of code that follows the cursor on its own line, if any.
    """
    header_indent = indent_of(doc.line(header))
    if first is None:
        nxt = next_code_row(doc, doc.line_of(cursor))
        first = None if nxt is None else indent_of(doc.line(nxt))
    if first is not None and indent_width(first) > indent_width(header_indent):
        return Shape(HoleKind.STATEMENT, first, "", True, ("new statement at the top of a block",))
    brace = _header_brace(doc, header)
    row = doc.line_of(cursor)
    rest = doc.text[cursor : doc.index.line_end(row)]
    closers = closers_for([brace], suffix_brackets(doc, cursor, cfg), row, rest) if brace else ""
    typed = doc.line(row) if not doc.line(row).strip() else ""  # whitespace the editor already put there
    indent = typed if indent_width(typed) > indent_width(header_indent) else header_indent + doc.indent_unit
    return Shape(HoleKind.BLOCK, indent, closers, True, ("empty block body",))


def _statement_indent(doc: Document, row: int, after: str) -> str:
    """Indentation of a new statement at `row`, which is blank or has code after the cursor."""
    own = indent_of(doc.line(row))
    prev = prev_code_row(doc, row)
    prev_indent = "" if prev is None else indent_of(doc.line(prev))
    code = after.strip()
    if not code:
        return own or prev_indent
    if _BLOCK_END.match(code) or (prev is not None and indent_width(own) > indent_width(prev_indent)):
        return prev_indent  # before a block's end, or the middle must open the block the line sits in
    return own


# -- selected ranges ------------------------------------------------------------------------------------
def range_shape(doc: Document, start: int, end: int, cfg: SizingConfig) -> Shape:
    first, last = doc.line_of(start), doc.line_of(end)
    rest = doc.text[end : doc.index.line_end(last)]
    opened = open_at(doc, start, cfg)
    closers = closers_for(opened[::-1], suffix_brackets(doc, end, cfg), last, rest)
    return Shape(HoleKind.RANGE, indent_of(doc.line(first)), closers, last > first, ("selected range",))

