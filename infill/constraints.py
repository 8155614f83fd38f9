"""Suffix-conditioned constraints: per-step logits processors and the final check of a middle.

Per step (see `infill.sampler`): banned ids never appear in free slots; in the seam layout the middle
has an exact length, so end and pad ids are banned there too. Clamps themselves are re-imposed by the
sampler after every step.

At the end: the middle is cut at its end token (`middle_ids`), the text fixes of `infill.textfix` trim
its overlap with the suffix and re-indent it, and the spliced document is re-parsed (`check_splice`). A
candidate that adds syntax errors the document did not already have is rejected, or repaired by
re-noising the tokens around the first error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .prompt import SpecialIds
from .syntax import syntax_errors


@dataclass(frozen=True)
class ConstraintConfig:
    trim_overlap: bool = True  # drop the middle's tail where it repeats the suffix's head
    min_overlap_chars: int = 4  # shortest overlap trimmed unless it is closers only or whole lines
    reindent: bool = True  # new lines of the middle take the hole's indentation
    repair_rounds: int = 1  # re-noise rounds around the first added syntax error (0: reject only)
    repair_window: int = 4  # tokens re-noised on each side of the first error
    repair_steps: int = 12  # step budget of one repair round


def ban_processor(banned: Sequence[int], free: torch.Tensor):
    """Banned ids get -inf in free slots. free: (B, L) bool."""
    banned_t = torch.tensor(sorted(set(banned)), dtype=torch.long)

    def process(logits: torch.Tensor, step: int, rows: torch.Tensor) -> torch.Tensor:
        if banned_t.numel() == 0:
            return logits
        mask = free.to(logits.device)[rows.to(logits.device)][..., None]  # (b, L, 1)
        cols = banned_t.to(logits.device)
        sub = logits[..., cols]
        logits[..., cols] = torch.where(mask, torch.full_like(sub, float("-inf")), sub)
        return logits

    return process


def seam_processor(ids: SpecialIds, seam_rows: torch.Tensor, free: torch.Tensor):
    """In seam rows the middle fills its slots exactly: no end or pad tokens inside it."""
    return ban_processor((*ids.eos, ids.pad), free & seam_rows[:, None])


# -- decoding a canvas into a middle ------------------------------------------------------------------
def middle_ids(tokens: list[int], free: int, ids: SpecialIds, seam: bool) -> tuple[list[int], bool]:
    """The middle's ids from a canvas row, and whether the middle ended inside its slots."""
    body = tokens[:free]
    if seam:
        return [t for t in body if t not in ids.eos and t != ids.pad], True
    for i, t in enumerate(body):
        if t in ids.eos or t == ids.pad:
            return body[:i], True
    return body, False


# -- syntax check ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SyntaxVerdict:
    ok: bool
    added: int  # errors in the spliced document that the original did not have
    first_error: int | None  # offset of the first added error inside the middle (for repairs), if any


def check_splice(text: str, start: int, end: int, middle: str, language: str | None) -> SyntaxVerdict:
    """Does replacing text[start:end] with `middle` add syntax errors the document did not have?"""
    if language is None:
        return SyntaxVerdict(True, 0, None)
    new = text[:start] + middle + text[end:]
    new_errors = syntax_errors(new, language)
    if not new_errors:
        return SyntaxVerdict(True, 0, None)
    delta = len(middle) - (end - start)
    mid_end = start + len(middle)

    def moved(pos: int) -> int:
        return pos if pos <= start else max(pos + delta, mid_end) if pos >= end else mid_end

    old = [(moved(e.start), moved(e.end)) for e in syntax_errors(text, language)]
    added = [e for e in new_errors if (e.start, e.end) not in old]
    ok = not added or len(new_errors) < len(old)
    first = None
    for e in added:
        if e.end >= start and e.start <= mid_end:
            first = max(start, min(e.start, mid_end)) - start
            break
    return SyntaxVerdict(ok, 0 if ok else len(added), first)
