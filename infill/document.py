"""Text positions: offsets, 1-based CLI positions, 0-based LSP positions (UTF-16 or code points).

Internally the library addresses text by code-point offset into a Python `str`.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from .errors import BadInputError

_POS = re.compile(r"^(\d+):(\d+)$")
_RANGE = re.compile(r"^(\d+):(\d+)-(\d+):(\d+)$")


@dataclass(frozen=True)
class LineIndex:
    """Maps (line, column) pairs to offsets and back. Lines end after '\\n' ('\\r\\n' and '\\r' too)."""

    text: str
    starts: tuple[int, ...]

    @classmethod
    def of(cls, text: str) -> LineIndex:
        starts = [0]
        i, n = 0, len(text)
        while i < n:
            c = text[i]
            if c == "\r":
                if i + 1 < n and text[i + 1] == "\n":
                    i += 1
                starts.append(i + 1)
            elif c == "\n":
                starts.append(i + 1)
            i += 1
        return cls(text, tuple(starts))

    @property
    def line_count(self) -> int:
        """Lines as `starts` counts them: after a final line break, the empty line where the cursor can go."""
        return len(self.starts)

    @property
    def lines_shown(self) -> int:
        """Lines as an editor numbers them and `wc -l` counts them: a final line break ends the last line."""
        ends_with_break = len(self.starts) > 1 and self.starts[-1] == len(self.text)
        return len(self.starts) - ends_with_break

    def line_end(self, line: int) -> int:
        """Offset of the end of `line` (0-based), before its line break."""
        end = self.starts[line + 1] if line + 1 < len(self.starts) else len(self.text)
        while end > self.starts[line] and self.text[end - 1] in "\r\n":
            end -= 1
        return end

    def line_text(self, line: int) -> str:
        return self.text[self.starts[line] : self.line_end(line)]

    def offset(self, line: int, col: int) -> int:
        """0-based line and code-point column to offset; raises BadInputError outside the text."""
        if not 0 <= line < len(self.starts):
            raise BadInputError(f"line {line + 1} is outside the file, which has {self.lines_shown} lines")
        length = self.line_end(line) - self.starts[line]
        if not 0 <= col <= length:
            raise BadInputError(f"column {col + 1} is outside line {line + 1}, which has {length} characters")
        return self.starts[line] + col

    def position(self, offset: int) -> tuple[int, int]:
        """Offset to 0-based (line, code-point column)."""
        line = bisect.bisect_right(self.starts, offset) - 1
        return line, offset - self.starts[line]

    # LSP speaks UTF-16 code units by default.
    def offset_utf16(self, line: int, character: int) -> int:
        """LSP position (UTF-16 code units) to offset; clamps past-the-end positions as LSP says to."""
        if line >= len(self.starts):
            return len(self.text)
        line = max(line, 0)
        start, end = self.starts[line], self.line_end(line)
        units = 0
        for i in range(start, end):
            if units >= character:
                return i
            units += 2 if ord(self.text[i]) > 0xFFFF else 1
        return end

    def position_utf16(self, offset: int) -> tuple[int, int]:
        line, col = self.position(offset)
        start = self.starts[line]
        return line, sum(2 if ord(c) > 0xFFFF else 1 for c in self.text[start : start + col])


def parse_position(spec: str, index: LineIndex) -> int:
    """'LINE:COL' (1-based, columns in characters) to an offset."""
    m = _POS.match(spec.strip())
    if not m:
        raise BadInputError(f"position {spec!r} is not LINE:COL (1-based, e.g. 12:5)")
    line, col = int(m[1]), int(m[2])
    if line < 1 or col < 1:
        raise BadInputError(f"position {spec!r}: lines and columns start at 1")
    return index.offset(line - 1, col - 1)


def parse_range(spec: str, index: LineIndex) -> tuple[int, int]:
    """'L1:C1-L2:C2' (1-based, end exclusive) to offsets."""
    m = _RANGE.match(spec.strip())
    if not m:
        raise BadInputError(f"range {spec!r} is not L1:C1-L2:C2 (1-based, end exclusive, e.g. 3:1-5:1)")
    start = parse_position(f"{m[1]}:{m[2]}", index)
    end = parse_position(f"{m[3]}:{m[4]}", index)
    if end < start:
        raise BadInputError(f"range {spec!r} ends before it starts")
    return start, end


def format_range(index: LineIndex, start: int, end: int) -> str:
    (l1, c1), (l2, c2) = index.position(start), index.position(end)
    return f"{l1 + 1}:{c1 + 1}-{l2 + 1}:{c2 + 1}"
