"""tree-sitter in one place (language detection, cached parsers, syntax errors) and the checker that judges a
splice: does the file still compile, as far as an in-process check can tell?

    check_splice(text, start, end, middle, language) -> SyntaxVerdict(ok, added, first_error, empty)

What `ok` means, per language:
- every grammar: the splice adds no ERROR or MISSING node, leaves none of the original's at the hole, and adds no
  statement where the language allows only declarations (tree-sitter's Go, Rust, Java, C and C++ grammars accept
  `x := 1` or `return 0;` at file level; their compilers do not);
- Python, in addition: the spliced file compiles (`compile(..., "exec")`: indentation, `return` outside a
  function, ...) whenever the original did; when it did not, the top-level statements around the hole are
  compiled on their own instead (see `_python_verdict`);
- a middle with no code (empty, blank, or only new comments) is never ok: it is `empty`, no suggestion.

Grammars come from the official per-language wheels (no run-time downloads).
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import PurePath
from typing import TYPE_CHECKING

from .errors import UnknownLanguageError

if TYPE_CHECKING:  # tree-sitter loads on first parse: language tables work without it
    import tree_sitter as ts

# language name -> (module, attribute of the function returning the grammar)
GRAMMARS: dict[str, tuple[str, str]] = {
    "python": ("tree_sitter_python", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "tsx": ("tree_sitter_typescript", "language_tsx"),
    "go": ("tree_sitter_go", "language"),
    "rust": ("tree_sitter_rust", "language"),
    "java": ("tree_sitter_java", "language"),
    "c": ("tree_sitter_c", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
    "lua": ("tree_sitter_lua", "language"),
}

EXTENSIONS: dict[str, str] = {
    ".py": "python", ".pyi": "python", ".pyw": "python",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript", ".tsx": "tsx",
    ".go": "go", ".rs": "rust", ".java": "java",
    ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp", ".hxx": "cpp",
    ".lua": "lua",
}

# Names editors use (LSP languageId, Neovim filetype) mapped to grammar names.
ALIASES: dict[str, str] = {
    "py": "python", "js": "javascript", "javascriptreact": "javascript", "ts": "typescript",
    "typescriptreact": "tsx", "golang": "go", "rs": "rust", "c++": "cpp", "cxx": "cpp",
}


def normalize_language(name: str) -> str:
    """Editor or user language name -> grammar name; raises UnknownLanguageError."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in GRAMMARS:
        raise UnknownLanguageError(
            f"no grammar for language {name!r}; known: {', '.join(sorted(GRAMMARS))}"
        )
    return key


def language_for_path(path: str | None) -> str | None:
    """Grammar name from a file name, or None when no bundled grammar covers the file type."""
    if not path:
        return None
    return EXTENSIONS.get(PurePath(path).suffix.lower())


@cache
def grammar(language: str) -> ts.Language:
    import tree_sitter as ts

    module, attr = GRAMMARS[normalize_language(language)]
    return ts.Language(getattr(importlib.import_module(module), attr)())


@cache
def _parser(language: str) -> ts.Parser:
    import tree_sitter as ts

    return ts.Parser(grammar(language))


def parse(text: str, language: str) -> ts.Tree:
    """Parse a whole document. Byte offsets in the tree are UTF-8; use `ByteMap` to convert."""
    return _parser(language).parse(text.encode("utf-8"))


@dataclass(frozen=True)
class ByteMap:
    """Converts between code-point offsets of a str and UTF-8 byte offsets of its encoding."""

    text: str

    def to_byte(self, offset: int) -> int:
        return len(self.text[:offset].encode("utf-8"))

    def to_char(self, byte_offset: int) -> int:
        return len(self.text.encode("utf-8")[:byte_offset].decode("utf-8", errors="ignore"))


@dataclass(frozen=True)
class SyntaxError_:
    """A syntax problem of a parse, as code-point offsets: an ERROR or MISSING node, or a statement where the
    language allows only declarations (`kind` "misplaced")."""

    start: int
    end: int
    kind: str = "error"  # "error", "missing" or "misplaced"

    @property
    def missing(self) -> bool:
        return self.kind == "missing"


def _is_statement(node: ts.Node) -> bool:
    return node.type.endswith("_statement") or node.type in ("block", "compound_statement")


# Languages whose files hold declarations only: which top-level nodes of the (snippet-tolerant) grammar would not
# compile there. C and C++ keep expression statements: a macro call (`MODULE_LICENSE("GPL");`) parses as one.
FILE_LEVEL_STATEMENTS = {
    "go": lambda n: _is_statement(n) or n.type == "short_var_declaration",
    "java": lambda n: _is_statement(n) or n.type == "local_variable_declaration",
    "rust": lambda n: n.type == "let_declaration" or (
        n.type == "expression_statement" and not (n.children and n.children[0].type == "macro_invocation")),
    "c": lambda n: _is_statement(n) and n.type not in ("expression_statement", "labeled_statement"),
    "cpp": lambda n: _is_statement(n) and n.type not in ("expression_statement", "labeled_statement"),
}


def syntax_errors(text: str, language: str, limit: int = 64) -> list[SyntaxError_]:
    """ERROR and MISSING nodes of the parse, outermost first, in document order, then misplaced statements."""
    return list(_problems(text, normalize_language(language), limit))


@lru_cache(maxsize=16)  # the original document is judged against every candidate of a hole
def _problems(text: str, language: str, limit: int = 64) -> tuple[SyntaxError_, ...]:
    return tuple(_tree_problems(parse(text, language), text, language, limit))


def _tree_problems(tree: ts.Tree, text: str, language: str, limit: int = 64) -> list[SyntaxError_]:
    bm = ByteMap(text)
    ascii_only = text.isascii()

    def problem(node: ts.Node, kind: str) -> SyntaxError_:
        s, e = node.start_byte, node.end_byte
        if not ascii_only:
            s, e = bm.to_char(s), bm.to_char(e)
        return SyntaxError_(s, e, kind)

    found: list[SyntaxError_] = []
    stack = [tree.root_node] if tree.root_node.has_error else []
    while stack and len(found) < limit:
        node = stack.pop()
        if node.is_error or node.is_missing:
            found.append(problem(node, "missing" if node.is_missing else "error"))
            continue
        if node.has_error:
            stack.extend(reversed(node.children))
    misplaced = FILE_LEVEL_STATEMENTS.get(language)
    if misplaced is not None:
        found += [problem(n, "misplaced") for n in tree.root_node.children if misplaced(n)][: limit - len(found)]
    return found


# -- Python: does it compile? ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class CompileError:
    """What `compile` said: its message and where (1-based line, 0-based code-point column)."""

    message: str
    line: int
    column: int


@lru_cache(maxsize=16)
def python_compile_error(source: str) -> CompileError | None:
    """None when `source` compiles as a module, else the first error CPython reports."""
    try:
        with warnings.catch_warnings():  # an invalid escape sequence warns; it still compiles
            warnings.simplefilter("ignore")
            compile(source, "<infill>", "exec", dont_inherit=True)
    except SyntaxError as exc:  # IndentationError and TabError included
        return CompileError(exc.msg, exc.lineno or 1, max((exc.offset or 1) - 1, 0))
    except (ValueError, RecursionError, MemoryError) as exc:  # null bytes (3.11), absurdly deep nesting
        return CompileError(str(exc), 1, 0)
    return None


def _line_starts(text: str) -> list[int]:
    """Offsets where lines start, counting "\r\n", "\r" and "\n" as CPython's tokenizer does."""
    starts = [0]
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\r" and i + 1 < n and text[i + 1] == "\n":
            i += 1
        if c in "\r\n":
            starts.append(i + 1)
        i += 1
    return starts


def _line_of(starts: list[int], offset: int) -> int:
    """0-based line of `offset`."""
    import bisect

    return bisect.bisect_right(starts, offset) - 1


_NOT_A_STATEMENT_START = ("else", "elif", "except", "finally", ")", "]", "}", "#")


def _top_level(line: str) -> bool:
    """Could this line start a top-level statement? (Text at column 0 inside a string or brackets fools it; the
    caller then sees the original chunk fail where the hole is not, and compares errors instead.)"""
    return bool(line.strip()) and not line[0].isspace() and not line.startswith(_NOT_A_STATEMENT_START)


def _python_chunk(text: str, starts: list[int], start: int, end: int) -> tuple[int, int, int]:
    """(offset, end offset, first line) of the top-level statements that hold the hole [start, end)."""
    lines = [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)], strict=True)]
    first = _line_of(starts, start)
    while first > 0 and not _top_level(lines[first]):
        first -= 1
    after = next((i for i in range(_line_of(starts, end) + 1, len(lines)) if _top_level(lines[i])), None)
    return starts[first], len(text) if after is None else starts[after], first


def hole_window(text: str, start: int, end: int) -> tuple[int, int]:
    """Where an error of the original is the hole's own: from the start of the hole's first line to the end of the
    line of the first code after it (`x = |` on one line, `return` on the next: tree-sitter and CPython both
    report the error at `return`)."""
    lo = max(text.rfind("\n", 0, start), text.rfind("\r", 0, start)) + 1
    after = len(text) - len(text[end:].lstrip())
    ends = [i for i in (text.find("\n", after), text.find("\r", after)) if i >= 0]
    return lo, min(ends) if ends else len(text)


def broken_at(text: str, start: int, end: int, language: str | None) -> bool:
    """Whether the original already has a syntax problem at the hole (its lines, or the first code line after)."""
    if language is None:
        return False
    lo, hi = hole_window(text, start, end)
    return any(not (e.end < lo or e.start > hi) for e in _problems(text, normalize_language(language)))


def problem_count(text: str, language: str) -> int:
    """tree-sitter ERROR and MISSING nodes (and the statements a compiler would reject at file level) in `text`."""
    return len(_problems(text, normalize_language(language)))


def _python_verdict(text: str, start: int, end: int, middle: str) -> CompileError | None:
    """None when the splice compiles as far as can be judged, else the error (line and column in the new text).

    The rule: the spliced file must compile whenever the original did. When the original did not (a hole typed
    into is often the reason: `x = |`), the top-level statements around the hole are compiled on their own, so
    an error elsewhere in the file does not excuse the middle. Those must compile whenever they did in the
    original, or when their error was at the hole (its lines, or the first code line after it). Only an error
    elsewhere in them, reported unchanged after the splice, leaves the judgement to tree-sitter.
    """
    new = text[:start] + middle + text[end:]
    error = python_compile_error(new)
    if error is None or python_compile_error(text) is None:
        return error
    starts = _line_starts(text)
    lo, hi, first = _python_chunk(text, starts, start, end)
    delta = len(middle) - (end - start)
    new_error = python_compile_error(new[lo : hi + delta])
    if new_error is None:
        return None
    found = CompileError(new_error.message, first + new_error.line, new_error.column)  # as a line of `new`
    old_error = python_compile_error(text[lo:hi])
    if old_error is None:
        return found
    old_line = first + old_error.line - 1  # 0-based, in `text`
    window = hole_window(text, start, end)
    if _line_of(starts, window[0]) <= old_line <= _line_of(starts, window[1]):
        return found  # the hole was what broke the original: the middle had to mend it
    lines_added = len(_line_starts(middle)) - len(_line_starts(text[start:end]))
    moved = old_line + (lines_added if old_line > _line_of(starts, end) else 0)
    same = old_error.message == new_error.message and moved == found.line - 1
    return None if same else found


# -- the verdict on a splice ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SyntaxVerdict:
    ok: bool  # the middle has code and the spliced file passes the language's check (module docstring)
    added: int  # problems of the spliced document that the original did not have (a compile error counts one)
    first_error: int | None  # offset of the first added problem, clamped into the middle (for repairs), if any
    empty: bool = False  # no code: empty, blank, or only comments the middle starts (never a suggestion)


def check_splice(text: str, start: int, end: int, middle: str, language: str | None) -> SyntaxVerdict:
    """Judge replacing text[start:end] with `middle`: see the module docstring for what passes."""
    if not middle.strip():
        return SyntaxVerdict(False, 0, None, empty=True)
    if language is None:
        return SyntaxVerdict(True, 0, None)
    language = normalize_language(language)
    new = text[:start] + middle + text[end:]
    tree = parse(new, language)
    mid_end = start + len(middle)
    if _comments_only(tree, new, start, mid_end):
        return SyntaxVerdict(False, 0, None, empty=True)
    delta = len(middle) - (end - start)

    def moved(pos: int) -> int:
        return pos if pos <= start else max(pos + delta, mid_end) if pos >= end else mid_end

    # an error of the original at the hole must be gone: the middle is what was meant to mend it
    lo, hi = hole_window(text, start, end)
    before = {(moved(e.start), moved(e.end)) for e in _problems(text, language) if e.end < lo or e.start > hi}
    added = [e for e in _tree_problems(tree, new, language) if (e.start, e.end) not in before]
    if added:  # repairs re-noise the middle around the first problem inside it or at the hole
        first = next((e.start for e in added if e.end >= lo and e.start <= hi + delta), None)
        return SyntaxVerdict(False, len(added), None if first is None else max(start, min(first, mid_end)) - start)
    if language == "python" and (error := _python_verdict(text, start, end, middle)) is not None:
        starts = _line_starts(new)
        at = starts[min(error.line - 1, len(starts) - 1)] + error.column
        return SyntaxVerdict(False, 1, max(start, min(at, mid_end)) - start)  # only the middle changed: it is why
    return SyntaxVerdict(True, 0, None)


def _comments_only(tree: ts.Tree, text: str, start: int, end: int) -> bool:
    """Is every non-blank character of text[start:end] inside a comment that starts there? (A comment the
    middle only continues, as at a cursor inside one, is a suggestion like any other.)"""
    bm = ByteMap(text)
    lo, hi = bm.to_byte(start), bm.to_byte(end)
    covered: list[tuple[int, int]] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.end_byte <= lo or node.start_byte >= hi:
            continue
        if "comment" in node.type:
            if node.start_byte < lo:
                return False
            covered.append((bm.to_char(node.start_byte), bm.to_char(node.end_byte)))
        else:
            stack.extend(node.children)
    return all(c.isspace() or any(a <= start + i < b for a, b in covered) for i, c in enumerate(text[start:end]))
