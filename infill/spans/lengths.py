"""Candidate canvas lengths, in tokens, from the code around the hole.

Every candidate is the estimated middle plus the end token, clamped to [min_length, max_canvas].
A canvas that is too short cuts the middle off; one far too long lets the model ramble, so the
candidates form a short ladder from "one typical line" upwards, scaled by what the hole is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..hole import HoleKind
from .config import SizingConfig
from .context import Document
from .tables import COMMENT_TYPES, statement_containers

TokenCounter = Callable[[str], int]


@dataclass(frozen=True)
class Scale:
    """Sizes read off the code around the hole, in tokens."""

    per_char: float  # tokens per character, calibrated on the neighbouring code lines
    line: float  # one typical neighbouring code line, line break included
    before: float  # the cursor line's text before the hole
    largest: float = 0.0  # the largest statement in the block around the hole (0 without a grammar)


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def neighbour_rows(doc: Document, row: int, cfg: SizingConfig) -> list[int]:
    """Up to `context_lines` code rows on each side of `row`, nearest first."""
    above = doc.code_rows(range(row - 1, -1, -1))
    below = doc.code_rows(range(row + 1, doc.index.line_count))
    return [r for side in (above, below) for _, r in zip(range(cfg.context_lines), side, strict=False)]


def sibling_chars(doc: Document, offset: int, cfg: SizingConfig) -> list[int]:
    """Sizes, in characters, of the statements near `offset` in the innermost block of statements around it."""
    if doc.tree is None or doc.language is None:
        return []
    containers = statement_containers(doc.language)
    byte = doc.to_byte(offset)
    node = doc.tree.root_node.descendant_for_byte_range(byte, byte)
    while node.parent is not None and not (node.type in containers and node.start_byte <= byte <= node.end_byte):
        node = node.parent
    row = doc.line_of(offset)
    near = range(row - cfg.lookback_lines, row + cfg.lookahead_lines + 1)
    return [doc.node_chars(child) for child in node.named_children
            if child.type not in COMMENT_TYPES and (child.start_point.row in near or child.end_point.row in near)]


def measure(doc: Document, offset: int, count_tokens: TokenCounter | None, cfg: SizingConfig) -> Scale:
    row = doc.line_of(offset)
    before = doc.text[doc.index.starts[row] : offset]
    rows = neighbour_rows(doc, row, cfg)
    sample = "\n".join(doc.line(r) for r in rows)
    per_char = 1 / cfg.chars_per_token
    if count_tokens is not None and sample.strip():
        per_char = max(count_tokens(sample), 1) / len(sample)
    chars = [len(doc.line(r)) + 1 for r in rows] or [cfg.fallback_line_chars]
    line = _quantile(chars, cfg.line_quantile) * per_char
    largest = max(sibling_chars(doc, offset, cfg), default=0) * per_char
    return Scale(per_char, line, len(before.strip()) * per_char, largest)


def cursor_sizes(kind: HoleKind, multiline: bool, scale: Scale, cfg: SizingConfig) -> list[float]:
    """Middle sizes to try for a hole at a cursor, in tokens, before the end token."""
    rest = max(scale.line - scale.before, scale.line * cfg.min_rest_share)  # what the line still needs
    if kind is HoleKind.EXPRESSION and not multiline:
        return [rest * n for n in cfg.expression_rest]
    if kind is HoleKind.LINE:
        return [rest * n for n in cfg.line_rest]
    lines = cfg.block_lines if kind is HoleKind.BLOCK else cfg.statement_lines
    sizes = [scale.line * n for n in lines]
    sizes[-1] = max(sizes[-1], scale.largest)  # the middle may grow as large as the largest statement beside it
    return sizes


def range_sizes(removed: float, cfg: SizingConfig) -> list[float]:
    """Middle sizes to try for a selected range that held `removed` tokens."""
    return [removed * share + cfg.range_pad for share in cfg.range_slack]


def finish(sizes: Sequence[float], cfg: SizingConfig) -> tuple[int, ...]:
    """Add the end token, clamp, deduplicate, keep at most `max_candidates` spread over the ladder."""
    lengths = sorted({min(cfg.max_canvas, max(cfg.min_length, math.ceil(s) + cfg.end_tokens)) for s in sizes})
    if len(lengths) <= cfg.max_candidates:
        return tuple(lengths)
    if cfg.max_candidates == 1:
        return (lengths[-1],)  # one canvas: the one that covers the most
    step = (len(lengths) - 1) / (cfg.max_candidates - 1)
    return tuple(lengths[round(i * step)] for i in range(cfg.max_candidates))


def one_row_length(kind: str, lengths: Sequence[int], cfg: SizingConfig) -> int:
    """The candidate length an as-you-type request runs alone (`SizingConfig.one_row`)."""
    rung = dict(cfg.one_row).get(str(kind), 0)
    return lengths[min(rung, len(lengths) - 1)]
