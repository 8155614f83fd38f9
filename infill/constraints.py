"""Suffix-conditioned constraints: per-step logits processors and the final check of a middle.

Per step (see `infill.sampler`): banned ids never appear in free slots; in the seam layout the middle
has an exact length, so end and pad ids are banned there too. Clamps themselves are re-imposed by the
sampler after every step.

At the end: the middle is cut at its end token, its overlap with the suffix is trimmed, new lines take
the hole's indentation, and the spliced document is re-parsed. A candidate that adds syntax errors the
document did not already have is rejected, or repaired by re-noising the tokens around the first error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .hole import Hole, HoleKind
from .prompt import SpecialIds
from .syntax import syntax_errors

CLOSING = set(")]}>;,:'\"`")


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


# -- post-processing -----------------------------------------------------------------------------------
def trim_overlap(middle: str, suffix: str, cfg: ConstraintConfig) -> list[str]:
    """Variants of the middle with its tail removed where it repeats the head of the suffix.

    Two kinds: whole lines that equal the suffix's next lines, and a character overlap that is closers
    only or at least `min_overlap_chars` long. The caller picks among the variants by syntax.
    """
    variants: list[str] = []
    # whole lines: the middle's last n lines == the suffix's first n non-blank lines (stripped)
    mid_lines = middle.rstrip("\n").split("\n")
    suf_lines = [ln.strip() for ln in suffix.split("\n") if ln.strip()]
    for n in range(min(len(mid_lines) - 1, len(suf_lines)), 0, -1):
        tail = [ln.strip() for ln in mid_lines[-n:]]
        if tail == suf_lines[:n] and any(tail):
            variants.append("\n".join(mid_lines[:-n]) + ("\n" if middle.endswith("\n") else ""))
            break
    # characters: the middle ends with the suffix's first k characters
    for k in range(min(len(middle), len(suffix)), 0, -1):
        head = suffix[:k]
        if middle.endswith(head) and head.strip():
            trimmed = middle[: len(middle) - k]
            closers_only = set(head.strip()) <= CLOSING
            if (closers_only or len(head.strip()) >= cfg.min_overlap_chars) and trimmed not in variants:
                variants.append(trimmed)
            break
    return variants


def fit_first_line(middle: str, line_before: str, unit: str) -> str:
    """When the hole starts after a line's indentation, the middle's own leading blanks must not leave the line
    off the indentation grid (`    ` + ` total = 1` gives five spaces): such blanks are dropped."""
    if not line_before or line_before.strip() or not middle[:1].isspace() or middle[:1] in "\r\n":
        return middle
    lead = middle[: len(middle) - len(middle.lstrip(" \t"))]
    step = len(unit.expandtabs(4)) or 4
    return middle if len((line_before + lead).expandtabs(4)) % step == 0 else middle[len(lead) :]


def keep_line_break(middle: str, replaced: str) -> str:
    """A range that ended with a line break keeps it: whole-line selections must not merge with the next line."""
    for newline in ("\r\n", "\n", "\r"):
        if replaced.endswith(newline):
            return middle if not middle or middle.endswith(("\n", "\r")) else middle + newline
    return middle


def detect_indent_unit(text: str) -> str:
    """The file's indentation unit: a tab, or the most common step between indented lines."""
    tabs = spaces = 0
    steps: dict[int, int] = {}
    prev = 0
    for line in text.splitlines()[:2000]:
        if not line.strip():
            continue
        ws = line[: len(line) - len(line.lstrip())]
        if ws.startswith("\t"):
            tabs += 1
        elif ws:
            spaces += 1
        width = len(ws.expandtabs(4))
        if width > prev:
            steps[width - prev] = steps.get(width - prev, 0) + 1
        prev = width
    if tabs > spaces:
        return "\t"
    best = max(steps, key=steps.get) if steps else 4
    return " " * (best if best in (2, 3, 4, 8) else 4)


def reindent(middle: str, hole: Hole, unit: str) -> str:
    """Continuation lines get at least the hole's indentation, in the file's style (tabs vs spaces)."""
    lines = middle.split("\n")
    if len(lines) == 1:
        return middle
    cont = [ln for ln in lines[1:] if ln.strip()]
    if not cont:
        return middle
    width = lambda s: len(s[: len(s) - len(s.lstrip())].expandtabs(4))  # noqa: E731
    need = len(hole.indent.expandtabs(4)) if hole.kind in (HoleKind.STATEMENT, HoleKind.BLOCK) else 0
    shift = max(0, need - min(width(ln) for ln in cont))
    out = [lines[0]]
    for ln in lines[1:]:
        if not ln.strip():
            out.append(ln)
            continue
        w = width(ln) + shift
        ws = "\t" * (w // 4) + " " * (w % 4) if unit == "\t" else " " * w
        out.append(ws + ln.lstrip())
    return "\n".join(out)


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
