"""tree-sitter in one place: language detection, cached parsers, syntax errors, and the errors a splice adds.

Grammars come from the official per-language wheels (no run-time downloads).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
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
    """An ERROR or MISSING node, as code-point offsets."""

    start: int
    end: int
    missing: bool


def syntax_errors(text: str, language: str, limit: int = 64) -> list[SyntaxError_]:
    """ERROR and MISSING nodes of the parse, outermost first, in document order."""
    tree = parse(text, language)
    if not tree.root_node.has_error:
        return []
    bm = ByteMap(text)
    ascii_only = text.isascii()
    found: list[SyntaxError_] = []
    stack = [tree.root_node]
    while stack and len(found) < limit:
        node = stack.pop()
        if node.is_error or node.is_missing:
            s, e = node.start_byte, node.end_byte
            if not ascii_only:
                s, e = bm.to_char(s), bm.to_char(e)
            found.append(SyntaxError_(s, e, node.is_missing))
            continue
        if node.has_error:
            stack.extend(reversed(node.children))
    return found


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
