"""Open documents as the editor sees them, and LSP positions <-> code-point offsets.

The language server keeps its own copy of each open document instead of pygls' workspace: LSP lines end
only at '\\n', '\\r\\n' and '\\r', while `str.splitlines` (which pygls uses) also splits at form feeds and
other separators that Python sources do contain. Positions are clamped as LSP asks: a line past the end
is the end of the document, a character past the end of its line is the end of that line.

The position encoding is what the client and server agreed on in `initialize` (UTF-16 by default;
UTF-32 counts code points, UTF-8 counts bytes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lsprotocol import types

from infill.document import LineIndex

_EOL = re.compile(r"\r\n|\r|\n")

UTF16, UTF32, UTF8 = types.PositionEncodingKind.Utf16, types.PositionEncodingKind.Utf32, types.PositionEncodingKind.Utf8


def line_index(text: str) -> LineIndex:
    """`LineIndex.of`, with the line starts found by a regex (a large file per keystroke stays cheap)."""
    return LineIndex(text, (0, *(m.end() for m in _EOL.finditer(text))))


def _units(ch: str, encoding: str) -> int:
    if encoding == UTF32:
        return 1
    cp = ord(ch)
    if encoding == UTF8:
        return 1 if cp < 0x80 else 2 if cp < 0x800 else 3 if cp < 0x10000 else 4
    return 2 if cp > 0xFFFF else 1


def to_offset(index: LineIndex, pos: types.Position, encoding: str = UTF16) -> int:
    """An LSP position to a code-point offset, clamped into the document."""
    if encoding == UTF16:
        return index.offset_utf16(max(pos.line, 0), max(pos.character, 0))
    if pos.line >= index.line_count:
        return len(index.text)
    line = max(pos.line, 0)
    start, end = index.starts[line], index.line_end(line)
    units = 0
    for i in range(start, end):
        if units >= pos.character:
            return i
        units += _units(index.text[i], encoding)
    return end


def to_position(index: LineIndex, offset: int, encoding: str = UTF16) -> types.Position:
    offset = min(max(offset, 0), len(index.text))
    if encoding == UTF16:
        line, col = index.position_utf16(offset)
        return types.Position(line=line, character=col)
    line, col = index.position(offset)
    start = index.starts[line]
    return types.Position(line=line, character=sum(_units(c, encoding) for c in index.text[start : start + col]))


def to_range(index: LineIndex, start: int, end: int, encoding: str = UTF16) -> types.Range:
    return types.Range(start=to_position(index, start, encoding), end=to_position(index, end, encoding))


def range_offsets(index: LineIndex, rng: types.Range, encoding: str = UTF16) -> tuple[int, int]:
    """An LSP range to (start, end) offsets, clamped and ordered."""
    a, b = to_offset(index, rng.start, encoding), to_offset(index, rng.end, encoding)
    return min(a, b), max(a, b)


@dataclass
class Document:
    uri: str
    language_id: str
    version: int
    text: str
    _index: LineIndex | None = field(default=None, repr=False)

    @property
    def index(self) -> LineIndex:
        if self._index is None or self._index.text is not self.text:
            self._index = line_index(self.text)
        return self._index

    def offset(self, pos: types.Position, encoding: str = UTF16) -> int:
        return to_offset(self.index, pos, encoding)

    def position(self, offset: int, encoding: str = UTF16) -> types.Position:
        return to_position(self.index, offset, encoding)


class DocumentStore:
    """The open documents, updated by didOpen / didChange / didClose."""

    def __init__(self) -> None:
        self._docs: dict[str, Document] = {}

    def get(self, uri: str) -> Document | None:
        return self._docs.get(uri)

    def open(self, item: types.TextDocumentItem) -> Document:
        doc = Document(item.uri, item.language_id, item.version, item.text)
        self._docs[item.uri] = doc
        return doc

    def close(self, uri: str) -> None:
        self._docs.pop(uri, None)

    def change(self, params: types.DidChangeTextDocumentParams, encoding: str = UTF16) -> Document | None:
        doc = self._docs.get(params.text_document.uri)
        if doc is None:
            return None
        for change in params.content_changes:
            if isinstance(change, types.TextDocumentContentChangePartial):
                start, end = range_offsets(doc.index, change.range, encoding)
                doc.text = doc.text[:start] + change.text + doc.text[end:]
            else:
                doc.text = change.text
        doc.version = params.text_document.version
        return doc
