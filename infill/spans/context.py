"""The document around a hole: lines, indentation and, when the language has a grammar, the parse tree."""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

import tree_sitter as ts

from ..document import LineIndex
from ..syntax import ByteMap, parse
from ..textfix import detect_indent_unit, indent_of
from .tables import COMMENT_TYPES


@dataclass
class Document:
    """One document, parsed once. Offsets are code points; tree positions are UTF-8 bytes and rows."""

    text: str
    language: str | None  # grammar name, None for line-based sizing
    default_unit: str  # indentation unit when the file shows none
    index: LineIndex = field(init=False)

    def __post_init__(self) -> None:
        self.index = LineIndex.of(self.text)

    # -- lines ---------------------------------------------------------------------------------------
    def line_of(self, offset: int) -> int:
        return self.index.position(offset)[0]

    def line(self, row: int) -> str:
        return self.index.line_text(row)

    def is_blank(self, row: int) -> bool:
        return not self.line(row).strip()

    @cached_property
    def indent_unit(self) -> str:
        # The engine re-indents middles with this same detector, so the two agree.
        shown = any(indent_of(self.line(r)) for r in range(self.index.line_count) if not self.is_blank(r))
        return detect_indent_unit(self.text) if shown else self.default_unit

    def code_rows(self, rows: range | Iterator[int]) -> Iterator[int]:
        """Rows among `rows` that hold code: not blank and not only a comment."""
        return (r for r in rows if not self.is_blank(r) and not self.is_comment_only(r))

    # -- tree -----------------------------------------------------------------------------------------
    @cached_property
    def tree(self) -> ts.Tree | None:
        return parse(self.text, self.language) if self.language else None

    @cached_property
    def _row_bytes(self) -> list[int] | None:
        """UTF-8 byte offset of each row's start; None for ASCII text, where bytes are code points."""
        if self.text.isascii():
            return None
        offsets, total = [], 0
        for start, end in zip(self.index.starts, (*self.index.starts[1:], len(self.text)), strict=True):
            offsets.append(total)
            total += len(self.text[start:end].encode("utf-8"))
        return offsets

    def to_byte(self, offset: int) -> int:
        if self._row_bytes is None:
            return offset
        row = self.line_of(offset)
        start = self.index.starts[row]
        return self._row_bytes[row] + ByteMap(self.text[start:offset]).to_byte(offset - start)

    def to_char(self, byte: int) -> int:
        if self._row_bytes is None:
            return byte
        row = bisect.bisect_right(self._row_bytes, byte) - 1
        start = self.index.starts[row]
        end = self.index.starts[row + 1] if row + 1 < self.index.line_count else len(self.text)
        return start + ByteMap(self.text[start:end]).to_char(byte - self._row_bytes[row])

    def row_bytes(self, row: int) -> tuple[int, int]:
        """Byte range of a row's text, without its line break."""
        return self.to_byte(self.index.starts[row]), self.to_byte(self.index.line_end(row))

    def row_leaves(self, row: int) -> list[ts.Node]:
        """The leaves that start on `row`, comments left out."""
        if self.tree is None:
            return []
        start, end = self.row_bytes(row)
        return [leaf for leaf in leaves(self.tree.root_node, start, end)
                if leaf.start_point.row == row and leaf.type not in COMMENT_TYPES]

    def is_comment_only(self, row: int) -> bool:
        if self.tree is None:
            return False
        return not self.row_leaves(row)

    def node_chars(self, node: ts.Node) -> int:
        return self.to_char(node.end_byte) - self.to_char(node.start_byte)


def leaves(node: ts.Node, start: int, end: int) -> Iterator[ts.Node]:
    """Leaves overlapping the byte range [start, end), in document order. MISSING leaves are skipped."""
    if node.child_count == 0:
        if not node.is_missing and node.start_byte < end and node.end_byte > start:
            yield node
        return
    for child in node.children:
        if child.end_byte <= start:
            continue
        if child.start_byte >= end:
            break
        yield from leaves(child, start, end)
