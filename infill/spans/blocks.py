"""`block_at`: the block or statement to rewrite for "fix this block"."""

from __future__ import annotations

import tree_sitter as ts

from ..errors import BadInputError
from ..syntax import normalize_language
from ..textfix import indent_of, indent_width
from .config import SizingConfig
from .context import Document
from .tables import statement_containers


def block_at(text: str, language: str | None, start: int, end: int | None = None) -> tuple[int, int]:
    """The smallest block or statement covering a cursor (`end` None) or a selection, as code-point offsets.

    The range runs from the first code character of the block's first line to the end of its last line.
    With a grammar the block is a tree-sitter statement, declaration or block of statements; without one
    (or where the tree does not say, e.g. on a blank line after the end of a Python body) it is the line
    at the cursor plus the lines below it that are indented deeper.
    """
    end = start if end is None else end
    if not 0 <= start <= end <= len(text):
        raise BadInputError(f"range [{start}, {end}) is not inside the text, which has {len(text)} characters")
    grammar = None if language is None else normalize_language(language)
    doc = Document(text, grammar, SizingConfig().default_indent_unit)
    if not text.strip():
        return start, end
    rows = _tree_rows(doc, start, end) if grammar else None
    first, last = rows if rows is not None else _indent_rows(doc, start, end)
    return doc.index.starts[first] + len(indent_of(doc.line(first))), doc.index.line_end(last)


# -- with a grammar -------------------------------------------------------------------------------------
def _code_span(doc: Document, start: int, end: int) -> tuple[int, int] | None:
    """The selection shrunk to its non-blank text; a cursor snaps onto its line's code."""
    if start == end:
        row = doc.line_of(start)
        line, line_start = doc.line(row), doc.index.starts[row]
        if not line.strip():
            return None
        lo, hi = line_start + len(indent_of(line)), line_start + len(line.rstrip())
        point = min(max(start, lo), hi - 1)
        return point, point + 1
    chosen = doc.text[start:end]
    lo, hi = start + len(chosen) - len(chosen.lstrip()), start + len(chosen.rstrip())
    return (lo, hi) if lo < hi else None


def _node_rows(node: ts.Node) -> tuple[int, int]:
    last = node.end_point.row - (node.end_point.column == 0 and node.end_point.row > node.start_point.row)
    return node.start_point.row, last


def _tree_rows(doc: Document, start: int, end: int) -> tuple[int, int] | None:
    assert doc.tree is not None and doc.language is not None
    containers = statement_containers(doc.language)
    root = doc.tree.root_node
    code = _code_span(doc, start, end)
    if code is None:  # a blank line: the block of statements around it
        byte = doc.to_byte(start)
        node = root.descendant_for_byte_range(byte, byte)
        while node is not None and not (node.type in containers and node.start_byte < byte < node.end_byte):
            node = node.parent
        return None if node is None else _node_rows(node)
    node = root.descendant_for_byte_range(doc.to_byte(code[0]), doc.to_byte(code[1]))
    while node is not None and node.type not in containers and node.parent is not None \
            and node.parent.type not in containers and node.parent.parent is not None:
        node = node.parent
    return None if node is None or node.parent is None else _node_rows(node)


# -- by indentation -------------------------------------------------------------------------------------
def _indent_rows(doc: Document, start: int, end: int) -> tuple[int, int]:
    first, last = doc.line_of(start), doc.line_of(end)
    if end > start and end == doc.index.starts[last]:
        last -= 1  # a selection of whole lines ends at the start of the next one
    code = list(doc.code_rows(range(first, last + 1)))
    if code:  # the selected lines and the lines below them that are indented deeper
        width = min(indent_width(indent_of(doc.line(r))) for r in code)
        first, last = code[0], _extend(doc, code[-1], 1, lambda w: w > width)
        return first, _trim(doc, last, first)
    anchor = next(doc.code_rows(range(first - 1, -1, -1)), None)
    if anchor is None:
        anchor = next(doc.code_rows(range(first + 1, doc.index.line_count)))
    width = indent_width(indent_of(doc.line(anchor)))
    top = _extend(doc, first, -1, lambda w: w >= width)
    bottom = _extend(doc, first, 1, lambda w: w >= width)
    while doc.is_blank(top):
        top += 1
    return top, _trim(doc, bottom, top)


def _extend(doc: Document, row: int, step: int, keeps) -> int:
    """Move from `row` in direction `step` over blank rows and rows whose indent width `keeps` accepts."""
    nxt = row + step
    while 0 <= nxt < doc.index.line_count and (doc.is_blank(nxt) or keeps(indent_width(indent_of(doc.line(nxt))))):
        row, nxt = nxt, nxt + step
    return row


def _trim(doc: Document, last: int, first: int) -> int:
    while last > first and doc.is_blank(last):
        last -= 1
    return last
