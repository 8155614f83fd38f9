"""Warm starts while typing: the previous keystroke's draft seeds the next canvas.

A cursor request's middle is remembered with the text around it. When a later request's document is that
document with characters typed at the cursor, and those characters are the start of the remembered middle,
the rest of it is the likeliest start of the new middle: the engine writes its tokens on the canvas instead
of noise and runs the preset's shorter warm step budget (`Quality.warm_steps`).

    drafts = Drafts()
    drafts.remember(text, cursor, "x + 1)")
    drafts.seed(text[:cursor] + "x " + text[cursor:], cursor + 2)      # -> "+ 1)"
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class _Draft:
    prefix: str  # the document before the cursor the middle was made for
    suffix: str  # and after it
    middle: str


class Drafts:
    """The last few cursor middles, newest last."""

    def __init__(self, entries: int = 4) -> None:
        self._drafts: deque[_Draft] = deque(maxlen=entries)
        self.hits = 0
        self.misses = 0

    def remember(self, text: str, cursor: int, middle: str) -> None:
        if middle.strip():
            self._drafts.append(_Draft(text[:cursor], text[cursor:], middle))

    def seed(self, text: str, cursor: int) -> str | None:
        """The rest of a remembered middle when `text` is its document with the start of that middle typed at
        its cursor (nothing typed: the whole middle), else None; counts a hit or a miss."""
        for draft in reversed(self._drafts):
            typed = len(text) - len(draft.prefix) - len(draft.suffix)
            if typed < 0 or cursor != len(draft.prefix) + typed:
                continue
            rest = draft.middle[typed:]
            if rest.strip() and text.startswith(draft.prefix) and text.endswith(draft.suffix) \
                    and draft.middle.startswith(text[len(draft.prefix) : cursor]):
                self.hits += 1
                return rest
        self.misses += 1
        return None


__all__ = ["Drafts"]
