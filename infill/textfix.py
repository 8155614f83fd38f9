"""Plain text fixes of a middle, defined once for the engine and the language server's post-processing.

Strings in, strings out: no torch, no tree-sitter. The engine fixes a middle against the document
(`reindent`, `fit_first_line`, `keep_line_break`, `trim_overlap`); the language server fixes it against
what the editor shows (server/postprocess.py). Both build on the helpers here, so that a line's
indentation, a continuation line, a repeated suffix line and a closing bracket mean the same thing on
both sides.
"""

from __future__ import annotations

from collections.abc import Sequence

from .files import match_newlines, newline_style
from .hole import Hole, HoleKind

BRACKETS = {"(": ")", "[": "]", "{": "}"}  # opener -> closer
CLOSERS = frozenset(BRACKETS.values())
QUOTES = "\"'`"
LINE_END_PUNCTUATION = ";,:"  # may end a line after closing brackets: `foo(x);`, `if f(x):`
# A repeated suffix head made of these alone is trimmed however short it is (`>` closes generics).
SEAM_CHARACTERS = CLOSERS | set(QUOTES) | set(LINE_END_PUNCTUATION) | {">"}
TAB_SIZE = 4  # columns of a tab where nothing says otherwise
INDENT_SAMPLE_LINES = 2000  # lines of a document read to tell its indentation style
STYLE_SAMPLE_CHARS = 20_000  # characters either side of the hole read for it
DEFAULT_INDENT = {"go": "\t"}  # a language's unit when the file has no indented line yet (gofmt: tabs)


# -- indentation ------------------------------------------------------------------------------------------
def indent_of(line: str) -> str:
    """The line's leading spaces and tabs."""
    return line[: len(line) - len(line.lstrip(" \t"))]


def indent_width(indent: str, tab_size: int = TAB_SIZE) -> int:
    """Columns taken by leading whitespace."""
    return len(indent.expandtabs(tab_size))


def render_indent(width: int, tabs: bool, tab_size: int = TAB_SIZE) -> str:
    """`width` columns of indentation: tabs (and spaces for the remainder), or spaces only."""
    return "\t" * (width // tab_size) + " " * (width % tab_size) if tabs else " " * width


def shift_continuations(text: str, width: int, tabs: bool, tab_size: int = TAB_SIZE, restyle: bool = False) -> str:
    """Lines after the first moved right as one, so that the least indented of them is at `width` columns or
    deeper (lines already deeper keep their relative layout). `restyle`: rewrite their indentation in `tabs`
    style even when nothing moves. Blank lines stay as they are."""
    lines = text.split("\n")
    cont = [ln for ln in lines[1:] if ln.strip()]
    if not cont:
        return text
    shift = max(0, width - min(indent_width(indent_of(ln), tab_size) for ln in cont))
    if not shift and not restyle:
        return text
    out = [lines[0]]
    for ln in lines[1:]:
        lead = indent_of(ln)
        out.append(render_indent(indent_width(lead, tab_size) + shift, tabs, tab_size) + ln[len(lead):]
                   if ln.strip() else ln)
    return "\n".join(out)


def detect_indent_unit(text: str, default: str = " " * TAB_SIZE) -> str:
    """The file's indentation unit: a tab, or the most common step between indented lines; `default` when no
    line is indented."""
    tabs = spaces = 0
    steps: dict[int, int] = {}
    prev = 0
    for line in text.splitlines()[:INDENT_SAMPLE_LINES]:
        if not line.strip():
            continue
        ws = indent_of(line)
        if ws.startswith("\t"):
            tabs += 1
        elif ws:
            spaces += 1
        width = indent_width(ws)
        if width > prev:
            steps[width - prev] = steps.get(width - prev, 0) + 1
        prev = width
    if tabs > spaces:
        return "\t"
    if not steps:
        return default
    best = max(steps, key=steps.get)
    return " " * (best if best in (2, 3, 4, 8) else TAB_SIZE)


def follow_indent_unit(middle: str, line_before: str, unit: str) -> str:
    """Indentation the middle owns (its continuation lines, and its first line when it starts a line) in the
    file's unit: a model that indents by 4 spaces in a file indented by tabs or by 2 spaces gets its levels
    rewritten. Levels are counted from the middle's first line (its indentation follows the code around it) or,
    when the middle continues a line of code, from that line's; lines that dedent below it keep their column
    (they return to a level the file has), in the file's style."""
    lines = middle.split("\n")
    starts_line = not line_before.strip()

    def width(i: int) -> int:
        return indent_width((line_before if i == 0 else "") + indent_of(lines[i]))

    owned = [i for i, ln in enumerate(lines) if ln.strip() and (i > 0 or starts_line)]
    if not owned:
        return middle
    base = width(0) if owned[0] == 0 else indent_width(indent_of(line_before))
    steps: dict[int, int] = {}
    prev = base
    for i in owned:
        if width(i) > prev:
            steps[width(i) - prev] = steps.get(width(i) - prev, 0) + 1
        prev = width(i)
    step, target = (max(steps, key=steps.get) if steps else 0), indent_width(unit)
    for i in owned:
        w = width(i)
        if step and step != target and w > base:
            w = base + (w - base) // step * target + (w - base) % step
        indent = render_indent(w, tabs=unit == "\t")
        if i == 0:  # the line's own indentation stays: only what the middle adds to it can change
            if not indent.startswith(line_before):
                continue
            indent = indent[len(line_before):]
        lines[i] = indent + lines[i][len(indent_of(lines[i])):]
    return "\n".join(lines)


def reindent(middle: str, hole: Hole, unit: str) -> str:
    """Continuation lines get at least the hole's indentation (statements and blocks; 0 elsewhere), in the
    file's style (tabs vs spaces)."""
    need = indent_width(hole.indent) if hole.kind in (HoleKind.STATEMENT, HoleKind.BLOCK) else 0
    return shift_continuations(middle, need, tabs=unit == "\t", restyle=True)


def fit_first_line(middle: str, line_before: str, unit: str) -> str:
    """When the hole starts after a line's indentation, the middle's own leading blanks must not leave the line
    off the indentation grid (`    ` + ` total = 1` gives five spaces): such blanks are dropped."""
    if not line_before or line_before.strip() or not middle[:1].isspace() or middle[:1] in "\r\n":
        return middle
    lead = indent_of(middle)
    step = indent_width(unit) or TAB_SIZE
    return middle if indent_width(line_before + lead) % step == 0 else middle[len(lead) :]


def follow_file_style(middle: str, text: str, hole: Hole, reindent_lines: bool = True) -> str:
    """The middle as the file around the hole writes code: its indentation unit and tabs or spaces (when
    `reindent_lines`), no trailing blanks, its line endings."""
    m = middle.replace("\r\n", "\n").replace("\r", "\n")
    line_before = text[max(text.rfind("\n", 0, hole.start), text.rfind("\r", 0, hole.start)) + 1 : hole.start]
    if reindent_lines:
        around = text[max(0, hole.start - STYLE_SAMPLE_CHARS) : hole.end + STYLE_SAMPLE_CHARS]
        unit = detect_indent_unit(around, DEFAULT_INDENT.get(hole.language or "", " " * TAB_SIZE))
        m = follow_indent_unit(m, line_before, unit)
        m = reindent(m, hole, unit)
        m = fit_first_line(m, line_before, unit)
    m = strip_trailing_blanks(m, text[hole.end : hole.end + 1])
    return match_newlines(m, newline_style(text))


# -- the suffix -------------------------------------------------------------------------------------------
def drop_duplicate_suffix_lines(text: str, next_lines: Sequence[str], continues_line: bool) -> str:
    """Trailing lines of the middle that repeat the next lines of the document (blank ones skipped, white space
    aside) are dropped: they are already there, right below. The first line only counts when it is a whole line
    of its own (`continues_line` False)."""
    lines = text.rstrip("\n").split("\n")
    nexts = [ln.strip() for ln in next_lines if ln.strip()]
    longest = min(len(lines) - 1 if continues_line else len(lines), len(nexts))
    for n in range(longest, 0, -1):
        tail = [ln.strip() for ln in lines[-n:]]
        if tail == nexts[:n]:
            return "\n".join(lines[:-n])
    return text


def trim_overlap(middle: str, suffix: str, min_chars: int) -> list[str]:
    """Variants of the middle with its tail removed where it repeats the head of the suffix.

    Two kinds: whole lines that equal the suffix's next lines, and a character overlap that is closers and
    separators only or at least `min_chars` long. The caller picks among the variants by syntax.
    """
    variants: list[str] = []
    lines_off = drop_duplicate_suffix_lines(middle, suffix.split("\n"), continues_line=True)
    if lines_off != middle:
        variants.append(lines_off + ("\n" if middle.endswith("\n") else ""))
    # characters: the middle ends with the suffix's first k characters
    for k in range(min(len(middle), len(suffix)), 0, -1):
        head = suffix[:k]
        if middle.endswith(head) and head.strip():
            trimmed = middle[: len(middle) - k]
            if (set(head.strip()) <= SEAM_CHARACTERS or len(head.strip()) >= min_chars) and trimmed not in variants:
                variants.append(trimmed)
            break
    return variants


def strip_trailing_blanks(middle: str, suffix: str) -> str:
    """No spaces or tabs at the end of a line the middle writes. Its last line keeps them when the suffix goes
    on after it on the same line (`x =` + ` ` + `1`: there they separate, or indent the suffix's code)."""
    lines = middle.split("\n")
    ends_line = not suffix or suffix[0] in "\r\n"
    last = len(lines) - 1
    return "\n".join(ln.rstrip(" \t") if i < last or ends_line else ln for i, ln in enumerate(lines))


# -- line breaks ------------------------------------------------------------------------------------------
def no_added_blank_line(middle: str, replaced: str, suffix: str) -> str:
    """A middle that ends with line breaks where the file already breaks the line (the cursor at the end of a
    line, a range ending there) would add blank lines: they go. A range that ended with its own line break is
    `keep_line_break`'s; before code on the same line (`|foo()`), a line break separates and stays."""
    if replaced.endswith(("\n", "\r")) or (suffix and suffix[0] not in "\r\n"):
        return middle
    return middle.rstrip("\r\n")


def keep_line_break(middle: str, replaced: str) -> str:
    """A range that ended with a line break keeps it: whole-line selections must not merge with the next line."""
    for newline in ("\r\n", "\n", "\r"):
        if replaced.endswith(newline):
            return middle if not middle or middle.endswith(("\n", "\r")) else middle + newline
    return middle
