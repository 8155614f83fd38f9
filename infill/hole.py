"""What the span sizer hands to the rest of the engine: where the hole is and how big it may be."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class HoleKind(StrEnum):
    EXPRESSION = "expression"  # inside an expression or argument list: `foo(a, |)`
    LINE = "line"  # rest of the current line after code: `x = |`
    STATEMENT = "statement"  # a new statement on an empty line inside a block
    BLOCK = "block"  # an empty block or function body: `def f():\n    |`
    RANGE = "range"  # a range the user selected, taken as given


@dataclass(frozen=True)
class Hole:
    """A hole to fill. Offsets are code-point offsets into the document text; `end` is exclusive."""

    start: int
    end: int
    kind: HoleKind
    indent: str  # indentation that new lines of the middle take
    closers: str  # brackets the middle must close, innermost first, e.g. "])" for `f([a, |`
    lengths: tuple[int, ...]  # candidate canvas lengths in tokens, ascending, all >= 1
    language: str | None  # tree-sitter language name, None when the file type has no grammar
    sizing: str  # "tree-sitter" or "lines" (the fallback for files without a grammar)
    multiline: bool  # whether the middle may span several lines
    notes: tuple[str, ...] = field(default=())  # how the sizer decided, for --json and logs

    def __post_init__(self) -> None:
        assert 0 <= self.start <= self.end, "hole ends before it starts"
        assert self.lengths and all(n >= 1 for n in self.lengths), "a hole needs candidate lengths"
