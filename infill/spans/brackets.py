"""Brackets and quotes around the cursor: which are still open, and which of those the middle must close.

Bracket tokens come from tree-sitter leaves, so brackets inside strings and comments do not count. A `{`
that opens a block of statements starts a new frame: brackets opened before it belong to another
statement (`foo(function () {` ... the cursor inside the function body is not inside `foo(`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import tree_sitter as ts

from ..textfix import CLOSERS, LINE_END_PUNCTUATION, QUOTES
from .context import Document, leaves
from .tables import OPENING, QUOTE_LEAVES, VALUE_LEADS, brace_blocks

# What may follow the cursor on its line for the editor to have typed it by itself (auto-closing);
# LINE_END_PUNCTUATION may end such a line after them (`foo(|);`, `if f(|):`).
AUTO_CLOSED = CLOSERS | set(QUOTES) | {" ", "\t"}


@dataclass(frozen=True)
class Bracket:
    text: str  # "(", "}", '"', "${", ...
    row: int  # line it sits on
    block: bool = False  # a `{` that opens a block of statements

    @property
    def is_quote(self) -> bool:
        return self.text not in OPENING and self.text not in CLOSERS

    @property
    def closer(self) -> str:
        return self.text if self.is_quote else OPENING.get(self.text, "")


def is_block_brace(leaf: ts.Node, language: str) -> bool:
    """Does this `{` open a block of statements (not an object, table or struct literal)?"""
    parent = leaf.parent
    if parent is None or leaf.type != "{":
        return False
    blocks = brace_blocks(language)
    if parent.type in blocks:
        return True
    if not parent.is_error or not blocks:
        return False
    prev = leaf.prev_sibling  # inside an ERROR node the tokens are flat, so the sibling is the token before
    return prev is None or prev.type not in VALUE_LEADS


def _quote_text(leaf: ts.Node) -> str | None:
    """The delimiter a string leaf stands for, or None when the leaf is not a string delimiter."""
    if leaf.type not in QUOTE_LEAVES or leaf.parent is None:
        return None
    parent = leaf.parent.type
    if not (leaf.parent.is_error or "string" in parent or "char" in parent):
        return None
    return leaf.text.decode("utf-8", "replace").lstrip("rRbBuUfFtT")  # Python prefixes: f"  rb'''


def tree_brackets(doc: Document, start_byte: int, end_byte: int) -> Iterator[Bracket]:
    """Bracket and quote tokens whose leaves lie inside [start_byte, end_byte)."""
    assert doc.tree is not None and doc.language is not None
    for leaf in leaves(doc.tree.root_node, start_byte, end_byte):
        if leaf.end_byte > end_byte:
            continue
        row = leaf.start_point.row
        quote = _quote_text(leaf)
        if quote:
            yield Bracket(quote, row)
        elif leaf.type in OPENING or leaf.type in CLOSERS:
            yield Bracket(leaf.type, row, is_block_brace(leaf, doc.language))


def char_brackets(text: str, row: int) -> Iterator[Bracket]:
    """Bracket and quote characters of one line, for files without a grammar (escapes skipped)."""
    escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in OPENING or ch in CLOSERS or ch in QUOTES:
            yield Bracket(ch, row)


def _apply(stack: list[Bracket], tok: Bracket) -> bool:
    """Apply one token to a stack of open brackets; False for a closer that matches nothing open."""
    top = stack[-1] if stack else None
    if top is not None and tok.text == top.closer:
        stack.pop()
    elif top is not None and top.is_quote:  # inside a string only interpolations open anything
        if not tok.is_quote and tok.text in OPENING:
            stack.append(tok)
    elif tok.is_quote or tok.text in OPENING:
        stack.append(tok)
    else:
        return False
    return True


def still_open(tokens: Iterable[Bracket]) -> list[Bracket]:
    """Brackets left open after `tokens` in the innermost block, outermost first."""
    frames: list[list[Bracket]] = [[]]
    for tok in tokens:
        in_string = bool(frames[-1]) and frames[-1][-1].is_quote
        if tok.block and not in_string:
            frames.append([])
        elif not _apply(frames[-1], tok) and tok.text == "}" and len(frames) > 1:
            frames.pop()  # the block ends (with anything left open inside it)
    return frames[-1]


def closed_rows(pending: list[Bracket], suffix: Iterable[Bracket]) -> list[int | None]:
    """For each pending bracket (innermost first), the row where the suffix closes it, or None."""
    rows: list[int | None] = [None] * len(pending)
    nested: list[Bracket] = []  # brackets opened in the suffix itself
    i = 0
    for tok in suffix:
        if i == len(pending):
            break
        if nested:
            _apply(nested, tok)
        elif tok.text == pending[i].closer:
            rows[i] = tok.row
            i += 1
        elif not _apply(nested, tok):
            break  # a closer of something else: the suffix does not close ours
    return rows


def closers_for(pending: list[Bracket], suffix: Iterable[Bracket], cursor_row: int, rest: str) -> str:
    """The closers the middle must close, innermost first.

    A pending bracket counts unless the suffix closes it, with one exception: when the rest of the cursor's
    line is nothing but closers (the editor auto-closed them), maybe ending in `;` `,` or `:`, those count
    too; they stay outside the range.
    """
    auto_closed = auto_closed_only(rest)
    rows = closed_rows(pending, suffix)
    return "".join(b.closer for b, row in zip(pending, rows, strict=True)
                   if row is None or (auto_closed and row == cursor_row))


def auto_closed_only(rest: str) -> bool:
    """Is the rest of a line only closers an editor inserts by itself (and a final `;`, `,` or `:`)?"""
    closers = rest.strip().rstrip(LINE_END_PUNCTUATION)
    return bool(closers) and set(closers) <= AUTO_CLOSED
