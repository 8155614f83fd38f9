"""Editor-facing post-processing of a middle, done once here so that editor clients only render it.

The engine has already cut the middle at its end token, trimmed suffix overlap that syntax could judge and
re-indented continuation lines in the file's style. What is left concerns the editor: the text before and
after the cursor on screen, auto-inserted closing brackets, the client's tabs-vs-spaces settings, the
document's line endings, and items that would change nothing.

Each filter is one small pure function over strings (tested one by one in tests/test_postprocess.py); the
algorithms they share with the engine (indentation, repeated suffix lines, brackets) are `infill.textfix`.
`inline_edit` chains them for a completion at a cursor, `range_edit` for a regenerated range.

Auto-closed brackets: the item's *range swallows them*. When the editor has already inserted `)` after the
cursor and the middle closes that bracket itself (`foo(║)` + `a, b)`), the item replaces `[cursor,
cursor+1)` with `a, b)` instead of dropping the `)` from the text. That keeps middles whose closer is
followed by more code (`a).strip()`) correct, where omitting the closer would not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from infill.textfix import (
    BRACKETS,
    CLOSERS,
    QUOTES,
    drop_duplicate_suffix_lines,
    indent_of,
    indent_width,
    render_indent,
    shift_continuations,
)

LOOKAHEAD_LINES = 20  # lines after the cursor's line that duplicate-line trimming compares against


@dataclass(frozen=True)
class Formatting:
    """The client's indentation settings (LSP `FormattingOptions`); `insert_spaces` None keeps the text as is."""

    tab_size: int = 4
    insert_spaces: bool | None = None


@dataclass(frozen=True)
class Surroundings:
    """The document around a cursor, as the filters see it."""

    line_prefix: str  # the cursor's line before the cursor
    line_suffix: str  # the cursor's line after the cursor, line break excluded
    next_lines: tuple[str, ...]  # up to LOOKAHEAD_LINES lines after the cursor's line
    eol: str  # the document's line break

    @classmethod
    def at(cls, text: str, offset: int) -> Surroundings:
        start = max(text.rfind("\n", 0, offset), text.rfind("\r", 0, offset)) + 1
        m = re.compile(r"\r\n|\r|\n").search(text, offset)
        end = m.start() if m else len(text)
        rest = text[m.end():] if m else ""
        nexts = tuple(re.split(r"\r\n|\r|\n", rest, maxsplit=LOOKAHEAD_LINES)[:LOOKAHEAD_LINES]) if m else ()
        return cls(text[start:offset], text[offset:end], nexts, line_ending(text))


@dataclass(frozen=True)
class Edit:
    """Replace code points [start, end) of the document with `text`."""

    text: str
    start: int
    end: int


# -- helpers ------------------------------------------------------------------------------------------------
def line_ending(text: str) -> str:
    """The document's line break: the first one it uses ('\\n' for a one-line document)."""
    m = re.search(r"\r\n|\r|\n", text)
    return m.group() if m else "\n"


def detect_formatting(text: str, tab_size: int = 4) -> Formatting | None:
    """Tabs or spaces from the document's indented lines; None when no line is indented."""
    tabs = spaces = 0
    for line in text.splitlines()[:2000]:
        if line.strip():
            tabs += line.startswith("\t")
            spaces += line.startswith(" ")
    if not tabs and not spaces:
        return None
    return Formatting(tab_size=tab_size, insert_spaces=spaces >= tabs)


# -- filters ------------------------------------------------------------------------------------------------
def is_blank(text: str) -> bool:
    """Empty and whitespace-only items are never shown."""
    return not text.strip()


def strip_first_line_indent(text: str, line_prefix: str) -> str:
    """The cursor already sits at the indentation (`    ║`): the first line must not indent again."""
    if line_prefix and not line_prefix.strip():
        head, sep, tail = text.partition("\n")
        return head.lstrip(" \t") + sep + tail
    return text


def indent_continuations(text: str, line_prefix: str, tab_size: int = 4) -> str:
    """A middle that continues the cursor's line onto more lines keeps those lines at least as indented as the
    cursor's line (`    foo(║` + `a,\\nb)` -> `b)` under `foo`, not at column 0). A middle that starts with a
    line break is new lines of their own, and may dedent."""
    if not text.split("\n", 1)[0].strip():
        return text
    indent = indent_of(line_prefix)
    return shift_continuations(text, indent_width(indent, tab_size), indent.startswith("\t"), tab_size)


def convert_indentation(text: str, fmt: Formatting, first_line_at_start: bool = False) -> str:
    """Leading whitespace of new lines in the client's style: tabs or `tab_size`-wide spaces."""
    if fmt.insert_spaces is None:
        return text
    lines = text.split("\n")
    out = []
    for i, ln in enumerate(lines):
        lead = indent_of(ln)
        if (i == 0 and not first_line_at_start) or not lead or not ln.strip():
            out.append(ln)
            continue
        out.append(render_indent(indent_width(lead, fmt.tab_size), not fmt.insert_spaces, fmt.tab_size)
                   + ln[len(lead):])
    return "\n".join(out)


def unmatched_closers(text: str) -> str:
    """The closing brackets and quotes in `text` that close something opened before it, in order.

    A bracket counts when nothing in `text` opened it; a quote counts (at its first occurrence) when `text`
    holds an odd number of it."""
    out: list[tuple[int, str]] = []
    stack: list[str] = []
    for i, ch in enumerate(text):
        if ch in BRACKETS:
            stack.append(BRACKETS[ch])  # the closer it waits for
        elif ch in CLOSERS:
            if stack and stack[-1] == ch:
                stack.pop()
            elif not stack:
                out.append((i, ch))
    for q in QUOTES:
        if text.count(q) % 2:
            out.append((text.index(q), q))
    return "".join(ch for _, ch in sorted(out))


def swallowed_closers(text: str, line_suffix: str) -> int:
    """How many auto-inserted closers right after the cursor the item's range replaces: the longest run at
    the start of `line_suffix` that the middle closes itself (`foo(║)` + `a)` -> 1)."""
    closing = unmatched_closers(text)
    k = 0
    while k < min(len(closing), len(line_suffix)) and line_suffix[k] == closing[k]:
        k += 1
    return k


def trim_line_suffix_overlap(text: str, rest_of_line: str) -> str:
    """A middle that ends with the whole rest of the cursor's line would write it twice: cut it from the
    middle (`x = ║foo()` + `y + foo()` -> `y + `)."""
    rest = rest_of_line.rstrip()
    stripped = text.rstrip()
    if rest.strip() and stripped.endswith(rest):
        return stripped[: len(stripped) - len(rest)]
    return text


def trim_trailing_whitespace(text: str, line_suffix: str) -> str:
    """No spaces or tabs at the end of a line the item writes (`return ` accepted at the end of a line left one).
    The item's last line keeps them when code follows it on the cursor's line (`x = ║y` + `a + `)."""
    text = re.sub(r"[ \t]+(?=\n)", "", text)
    return text if line_suffix.strip() else text.rstrip(" \t")


def trim_added_trailing_newlines(text: str, replaced: str) -> str:
    """A regenerated range that did not end with a line break does not gain one (no blank line after a block)."""
    if replaced.endswith(("\n", "\r")):
        return text
    return text.rstrip("\r\n")


def keep_one_line(text: str, replaced: str) -> str:
    """A selection within one line is regenerated as one line: the middle's first line, or its first non-blank
    line when it starts with a line break (the model went on to write more code than was selected)."""
    if "\n" in replaced or "\r" in replaced or "\n" not in text:
        return text
    lines = text.split("\n")
    return lines[0] if lines[0].strip() else next((ln.strip() for ln in lines if ln.strip()), "")


def match_line_endings(text: str, eol: str) -> str:
    """New lines take the document's line break."""
    if eol == "\n":
        return text
    return re.sub(r"\r\n|\r|\n", eol, text)


# -- pipelines ------------------------------------------------------------------------------------------------
def inline_edit(middle: str, text: str, cursor: int, fmt: Formatting = Formatting()) -> Edit | None:
    """The item to show for a middle completed at `cursor` of `text`, or None when there is nothing to show."""
    around = Surroundings.at(text, cursor)
    m = middle.replace("\r\n", "\n").replace("\r", "\n")
    m = strip_first_line_indent(m, around.line_prefix)
    m = indent_continuations(m, around.line_prefix, fmt.tab_size)
    m = convert_indentation(m, fmt, first_line_at_start=not around.line_prefix)
    m = drop_duplicate_suffix_lines(m, around.next_lines, continues_line=bool(around.line_prefix.strip()))
    k = swallowed_closers(m, around.line_suffix)
    m = trim_line_suffix_overlap(m, around.line_suffix[k:])
    m = trim_trailing_whitespace(m, around.line_suffix[k:])
    if is_blank(m) or m == around.line_suffix[:k]:
        return None
    return Edit(match_line_endings(m, around.eol), cursor, cursor + k)


def range_edit(middle: str, text: str, start: int, end: int, fmt: Formatting = Formatting()) -> Edit | None:
    """The edit for a middle that regenerates [start, end) of `text`, or None when it would change nothing
    or only delete code."""
    replaced = text[start:end]
    around = Surroundings.at(text, start)
    m = middle.replace("\r\n", "\n").replace("\r", "\n")
    m = keep_one_line(m, replaced)
    m = convert_indentation(m, fmt, first_line_at_start=not around.line_prefix)
    m = trim_added_trailing_newlines(m, replaced)
    m = match_line_endings(m, around.eol)
    if m == replaced or (is_blank(m) and not is_blank(replaced)):
        return None
    return Edit(m, start, end)
