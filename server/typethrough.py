"""Type-through reuse: while the user types the first characters of the suggestion on screen, the rest of it is
served again without a model call.

A suggestion is remembered with the document text and cursor it was made for. A later request is served from
it when the new text is the old prefix + some typed characters + the old suffix, and the typed characters
are the start of the suggestion: the answer is the rest of the suggestion, at the new cursor, swallowing the
same closers after it. Asking again at the same place with the same text is the zero-character case.
"""

from __future__ import annotations

from dataclasses import dataclass

from .postprocess import Edit, is_blank


@dataclass(frozen=True)
class _Entry:
    text: str  # the document the suggestion was made for
    cursor: int
    edit: Edit  # the post-processed item: edit.start == cursor


class TypeThrough:
    """The last suggestion of each document, and how often it was reused."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self.hits = 0
        self.misses = 0

    def remember(self, uri: str, text: str, cursor: int, edit: Edit) -> None:
        self._entries[uri] = _Entry(text, cursor, edit)

    def forget(self, uri: str) -> None:
        self._entries.pop(uri, None)

    def lookup(self, uri: str, text: str, cursor: int) -> Edit | None:
        """The rest of the remembered suggestion when `text`/`cursor` typed through its start; counts hit or miss."""
        edit = self._match(self._entries.get(uri), text, cursor)
        if edit is None:
            self.misses += 1
        else:
            self.hits += 1
        return edit

    @staticmethod
    def _match(entry: _Entry | None, text: str, cursor: int) -> Edit | None:
        if entry is None or cursor < entry.cursor:
            return None
        typed_len = cursor - entry.cursor
        if len(text) != len(entry.text) + typed_len:
            return None
        typed = text[entry.cursor : cursor]
        if not entry.edit.text.startswith(typed) or len(typed) >= len(entry.edit.text):
            return None
        if text[: entry.cursor] != entry.text[: entry.cursor] or text[cursor:] != entry.text[entry.cursor :]:
            return None
        rest = entry.edit.text[typed_len:]
        swallowed = entry.edit.end - entry.edit.start
        if is_blank(rest) or rest == text[cursor : cursor + swallowed]:
            return None
        return Edit(rest, cursor, cursor + swallowed)

    @property
    def rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0
