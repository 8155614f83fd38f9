"""`size_hole`: the entry point that turns a cursor or a selection into a `Hole`."""

from __future__ import annotations

from ..errors import BadInputError
from ..hole import Hole
from ..syntax import normalize_language
from .config import SizingConfig
from .context import Document
from .lengths import TokenCounter, cursor_sizes, finish, measure, range_sizes
from .shape import cursor_shape, range_shape


def _checked_range(text: str, cursor: int | None, span: tuple[int, int] | None) -> tuple[int, int]:
    if (cursor is None) == (span is None):
        raise BadInputError("give exactly one of a cursor or a span")
    start, end = (cursor, cursor) if span is None else span
    if not 0 <= start <= end <= len(text):
        raise BadInputError(f"hole [{start}, {end}) is not inside the text, which has {len(text)} characters")
    return start, end


def size_hole(
    text: str,
    language: str | None,
    *,
    cursor: int | None = None,
    span: tuple[int, int] | None = None,
    count_tokens: TokenCounter | None = None,
    config: SizingConfig = SizingConfig(),  # noqa: B008 (frozen, so sharing the default is safe)
) -> Hole:
    """Find the hole at a cursor (insertion) or a selected span (replacement) and size its canvas.

    `language` is a grammar name (see `infill.syntax.GRAMMARS`) or None for line-based sizing.
    `count_tokens` calibrates tokens per character on the surrounding code; without it a character
    ratio from the config is assumed. Raises BadInputError for positions outside the text and
    UnknownLanguageError for languages without a grammar.
    """
    start, end = _checked_range(text, cursor, span)
    grammar = None if language is None else normalize_language(language)
    doc = Document(text, grammar, config.default_indent_unit)
    scale = measure(doc, start, count_tokens, config)
    if span is None:
        shape = cursor_shape(doc, start, config)
        sizes = cursor_sizes(shape.kind, shape.multiline, scale, config)
    else:
        shape = range_shape(doc, start, end, config)
        removed = text[start:end]
        if removed.strip():
            tokens = count_tokens(removed) if count_tokens is not None else len(removed) * scale.per_char
            sizes = range_sizes(tokens, config)
        else:  # nothing to go by: size it as an insertion at its start
            inserted = cursor_shape(doc, start, config)
            sizes = cursor_sizes(inserted.kind, inserted.multiline, scale, config)
    sizing = "tree-sitter" if grammar else "lines"
    notes = (*shape.notes, f"a typical line is {scale.line:.1f} tokens ({scale.per_char:.2f} per character)")
    if not grammar:
        notes = (*notes, "no grammar for this file: sized by lines")
    return Hole(start=start, end=end, kind=shape.kind, indent=shape.indent, closers=shape.closers,
                lengths=finish(sizes, config), language=grammar, sizing=sizing, multiline=shape.multiline,
                notes=notes)
