"""The language server's requests, free of LSP types: a suggestion at a cursor, a regenerated range.

    at_cursor:  type-through reuse ─▶ debounce ─▶ service.fill(cursor) ─▶ postprocess.inline_edit ─▶ Edit
    over_range: service.fill(range) ─▶ postprocess.range_edit ─▶ range_edit_is_safe ─▶ Edit (or a refusal)
    targets:    the ranges the code actions would regenerate (the block under the cursor, the selection)
    as_completion: a suggestion as a completion item (label, filter text, the word it replaces)

Failures never reach the editor as errors: a cancelled, superseded, failed or unavailable request is an
empty answer (None), and the reason goes to the log. A suggestion that runs past the deadline turns the
state to "slow" (server.notices), the next one shown turns it back. A range edit that would break the file's
syntax is refused with a message, never applied. `stats()` counts what happened, for `infill/status`, the
tests and the latency benchmark.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pygls.uris import to_fs_path

from infill.syntax import language_for_path

from . import notices
from .documents import Document
from .postprocess import Edit, Formatting, detect_formatting, inline_edit, range_edit
from .protocol import ErrorCode, FillError, InfillMessage, ResultMessage, Unavailable, replace_lone_surrogates
from .scheduling import Scheduler
from .services import ModelService
from .settings import Settings
from .typethrough import TypeThrough

log = logging.getLogger(__name__)

FIX_BLOCK, FILL_SELECTION = "fixBlock", "fillSelection"  # the code actions, as named in their resolve data
LABEL_CHARS = 60  # a completion item's label: its first line, cut here


@dataclass(frozen=True)
class RangeFill:
    """The outcome of a range request: the edit (None when there is nothing to apply) and why."""

    edit: Edit | None
    result: ResultMessage | None
    error: str | None = None
    refused: bool = False  # the model answered, but its text would break the file's syntax

    def summary(self) -> dict[str, Any]:
        """What infill.fillRange answers, before the client applies the edit."""
        out: dict[str, Any] = {"applied": False}
        if self.result is not None:
            out.update(model=self.result.model, seconds=self.result.seconds, syntax_ok=self.result.syntax_ok,
                       steps=self.result.steps)
        if self.refused:
            out["refused"] = True
        return out | ({"error": self.error} if self.edit is None else {"text": self.edit.text})


@dataclass(frozen=True)
class CompletionEntry:
    """A suggestion as a completion item."""

    edit: Edit  # the suggestion with the word before the cursor in front, so that the client's filter keeps it
    label: str  # its first line, shortened
    filter_text: str


def as_completion(text: str, cursor: int, edit: Edit) -> CompletionEntry:
    """The suggestion `edit` at `cursor` of `text` as a completion item that replaces the word before the cursor."""
    word = cursor
    while word > 0 and (text[word - 1].isalnum() or text[word - 1] == "_"):
        word -= 1
    new_text = text[word:cursor] + edit.text
    first = new_text.splitlines()[0] if new_text.strip() else new_text
    more = len(first.strip()) > LABEL_CHARS or "\n" in new_text.strip()
    label = first.strip()[:LABEL_CHARS] + ("…" if more else "")
    return CompletionEntry(Edit(new_text, word, edit.end), label or new_text.strip()[:LABEL_CHARS], first)


def _extending(edit: Edit, selected: Edit | None, cursor: int) -> Edit:
    """`edit`, made in the document with `selected` inserted (the cursor after it), as an edit of the document
    itself: over the selected item's range, its text first (swallowed closers after the cursor included)."""
    if selected is None:
        return edit
    return Edit(selected.text + edit.text, selected.start, selected.end + (edit.end - cursor))


def grammar_of(doc: Document) -> str | None:
    """The tree-sitter grammar for an LSP languageId, else None (the engine then goes by the file name)."""
    from infill.errors import UnknownLanguageError
    from infill.syntax import normalize_language

    try:
        return normalize_language(doc.language_id)
    except UnknownLanguageError:
        return None


def range_edit_is_safe(text: str, edit: Edit, language: str | None) -> str | None:
    """None when applying `edit` to `text` keeps the file's syntax, else why not ("would not compile (line 2:
    invalid syntax)", "would add 1 syntax error (line 6)"), for the user.

    The engine's own judge (`infill.syntax.check_splice`: Python must compile when it did; other grammars gain no
    ERROR or MISSING node), with one allowance for edits: a region that was already broken may stay broken, as
    long as the file does not get worse. An edit with no code left in it is refused: it would delete the range.
    """
    from infill.syntax import broken_at, check_splice, problem_count

    if language is None:
        return None
    verdict = check_splice(text, edit.start, edit.end, edit.text, language)
    if verdict.ok:
        return None
    if verdict.empty:
        return "the model wrote no code for this range"
    new = text[: edit.start] + edit.text + text[edit.end:]
    if language == "python" and _compiles(text) is None and (problem := _compiles(new)) is not None:
        return f"would not compile ({problem})"
    if broken_at(text, edit.start, edit.end, language) and problem_count(new, language) <= problem_count(text, language):
        return None
    where = ""
    if verdict.first_error is not None:
        line = text.count("\n", 0, edit.start) + edit.text.count("\n", 0, verdict.first_error) + 1
        where = f" (line {line})"
    return f"would add {max(verdict.added, 1)} syntax error{'s' if verdict.added > 1 else ''}{where}"


def _compiles(source: str) -> str | None:
    """None when `source` compiles as a Python module, else "line N: what" (compile's message)."""
    from infill.syntax import python_compile_error

    error = python_compile_error(source)
    return None if error is None else f"line {error.line}: {error.message}"


class Completer:
    def __init__(self, service: ModelService, settings: Callable[[], Settings]) -> None:
        self.service = service
        self._settings = settings
        self.scheduler = Scheduler(lambda rid: self.service.cancel(rid))
        self.typethrough = TypeThrough()
        self.counts: Counter[str] = Counter()
        self.model_seconds = 0.0  # engine time (queueing included) of the answered model requests

    # -- at a cursor -----------------------------------------------------------------------------------------
    async def at_cursor(self, doc: Document, cursor: int, invoked: bool = False,
                        selected: Edit | None = None) -> Edit | None:
        """The suggestion to show at `cursor`, or None. `invoked`: asked for explicitly, so no debounce.

        `selected`: the item selected in the editor's own completion list (LSP `selectedCompletionInfo`). The
        suggestion is then made as if it were inserted, and extends it: its edit replaces the same range and
        starts with the same text, which is how VS Code shows ghost text beside its word suggestions."""
        settings = self._settings()
        self.counts["completions"] += 1
        if not settings.enabled(doc.language_id):
            self.counts["disabled"] += 1
            return None
        text, version = doc.text, doc.version
        if selected is not None:
            text = text[: selected.start] + selected.text + text[selected.end:]
            cursor = selected.start + len(selected.text)
        if (reused := self.typethrough.lookup(doc.uri, text, cursor)) is not None:
            self.counts["items"] += 1
            return _extending(reused, selected, cursor)
        ticket = self.scheduler.ticket(doc.uri)
        if not await self.scheduler.debounce(ticket, 0 if invoked else settings.debounce_ms / 1000):
            return None
        if doc.version != version:
            self.counts["stale"] += 1
            return None
        result = await self._fill(doc, self._message(doc, settings, cursor=cursor, text=text, invoked=invoked),
                                  supersedable=True)
        if result is None:
            return None
        if self.service.board.state == notices.SLOW:  # answered within the deadline again
            self.service.board.set(notices.READY, notices.ready(self.service.board.notice.model))
        if doc.version != version:  # edited meanwhile: the editor has moved on
            self.counts["stale"] += 1
            return None
        if settings.hide_broken and not result.syntax_ok:  # broken code is noise the user has to dismiss
            self.counts["broken"] += 1
            return None
        if (result.start, result.end) != (cursor, cursor):
            log.debug("a cursor request came back as a range %s-%s; not shown", result.start, result.end)
            return None
        edit = inline_edit(result.text, text, cursor, self._formatting(settings, text))
        if edit is None:
            self.counts["filtered"] += 1
            return None
        self.typethrough.remember(doc.uri, text, cursor, edit)
        self.counts["items"] += 1
        return _extending(edit, selected, cursor)

    # -- over a range ----------------------------------------------------------------------------------------
    async def over_range(self, doc: Document, start: int, end: int) -> RangeFill:
        """Regenerate [start, end) of the document ("fix this block", "fill selection", infill.fillRange)."""
        settings = self._settings()
        text, version = doc.text, doc.version
        msg = self._message(doc, settings, span=(start, end), quality=settings.action_quality)
        try:
            result = await self._fill(doc, msg, supersedable=False, raise_errors=True)
        except FillError as exc:
            if exc.code == ErrorCode.DEADLINE and msg.deadline_ms is not None:
                return RangeFill(None, None, notices.deadline_passed(msg.deadline_ms))
            return RangeFill(None, None, exc.message)
        assert result is not None
        if doc.version != version:
            return RangeFill(None, result, "the document changed while the model was working; nothing was changed")
        edit = range_edit(result.text, text, result.start, result.end, self._formatting(settings, text))
        if edit is None:
            return RangeFill(None, result, "the model proposed no change")
        if (problem := range_edit_is_safe(text, edit, msg.language or language_for_path(msg.path))) is not None:
            self.counts["refused"] += 1
            return RangeFill(None, result, f"not applied: the model's code {problem}",
                             refused=True)
        return RangeFill(edit, result)

    def targets(self, doc: Document, start: int, end: int) -> dict[str, tuple[int, int]]:
        """What the code actions at [start, end) would regenerate: FIX_BLOCK, the tree-sitter block under the
        cursor or selection; FILL_SELECTION, a non-empty selection. None where the language is switched off."""
        if not self._settings().enabled(doc.language_id):
            return {}
        out = {}
        if (block := self.block(doc, start, end)) is not None:
            out[FIX_BLOCK] = block
        if end > start:
            out[FILL_SELECTION] = (start, end)
        return out

    def is_broken(self, doc: Document, start: int, end: int) -> bool:
        """Whether [start, end) of the document holds a syntax error (tree-sitter ERROR or MISSING node)."""
        from infill.syntax import syntax_errors

        language = grammar_of(doc) or language_for_path(to_fs_path(doc.uri) if doc.uri.startswith("file:") else None)
        if language is None:
            return False
        return any(e.start < end and e.end >= start for e in syntax_errors(doc.text, language))

    def block(self, doc: Document, start: int, end: int) -> tuple[int, int] | None:
        """The tree-sitter block under a cursor or a selection (`infill.spans.block_at`), None on blank text."""
        from infill.errors import BadInputError
        from infill.spans import block_at

        try:
            lo, hi = block_at(doc.text, grammar_of(doc), start, end if end > start else None)
        except BadInputError:
            return None
        return (lo, hi) if hi > lo and doc.text[lo:hi].strip() else None

    # -- document events -------------------------------------------------------------------------------------
    def changed(self, uri: str) -> None:
        self.scheduler.document_changed(uri)

    def closed(self, uri: str) -> None:
        self.scheduler.document_changed(uri)
        self.typethrough.forget(uri)

    # -- pieces ---------------------------------------------------------------------------------------------
    def _message(self, doc: Document, settings: Settings, cursor: int | None = None,
                 span: tuple[int, int] | None = None, quality: str | None = None,
                 text: str | None = None, invoked: bool = True) -> InfillMessage:
        path = to_fs_path(doc.uri) if doc.uri.startswith("file:") else None
        # an editor's JS string can hold an unpaired surrogate; it cannot be encoded as UTF-8 for the model
        return InfillMessage(id=self.scheduler.new_request_id(), text=replace_lone_surrogates(doc.text if text is None else text),
                             cursor=cursor, range=span,
                             path=path, language=grammar_of(doc), quality=quality or settings.quality,
                             max_steps=settings.max_steps, seed=settings.seed, deadline_ms=settings.deadline_ms,
                             lengths=settings.lengths, invoked=invoked)

    async def _fill(self, doc: Document, msg: InfillMessage, supersedable: bool,
                    raise_errors: bool = False) -> ResultMessage | None:
        self.scheduler.start(doc.uri, msg.id, supersedable)
        self.counts["model_calls"] += 1
        try:
            result = await self.service.fill(msg)
            self.model_seconds += result.seconds + result.queued_seconds
            return result
        except asyncio.CancelledError:  # $/cancelRequest: the service has cancelled the model's work
            self.counts["cancelled"] += 1
            raise
        except FillError as exc:
            self._count_failure(exc, typing=supersedable)
            if raise_errors:
                raise
            return None
        finally:
            self.scheduler.finish(doc.uri, msg.id)

    def _count_failure(self, exc: FillError, typing: bool) -> None:
        if isinstance(exc, Unavailable):
            self.counts["unavailable"] += 1
            log.debug("no model: %s", exc.message)
        elif exc.code in (ErrorCode.CANCELLED, ErrorCode.DEADLINE):
            self.counts[exc.code] += 1
            log.debug("%s: %s", exc.code, exc.message)
            board, deadline = self.service.board, self._settings().deadline_ms
            if typing and exc.code == ErrorCode.DEADLINE and board.state in (notices.READY, notices.SLOW) and deadline:
                board.set(notices.SLOW, notices.slow(deadline), setting="deadline")
        else:
            self.counts["errors"] += 1
            log.warning("infill request failed (%s): %s", exc.code, exc.message)

    @staticmethod
    def _formatting(settings: Settings, text: str) -> Formatting:
        return settings.formatting or detect_formatting(text) or Formatting()

    def stats(self) -> dict[str, Any]:
        tt = self.typethrough
        counted = ("completions", "items", "model_calls", "disabled", "stale", "filtered", "cancelled", "deadline",
                   "unavailable", "errors", "refused", "broken")
        return {**{k: self.counts[k] for k in counted}, **self.counts, "typethrough_hits": tt.hits, "typethrough_misses": tt.misses,
                "typethrough_rate": tt.rate, "superseded": self.scheduler.superseded,
                "cancelled_running": self.scheduler.cancelled, "model_seconds": round(self.model_seconds, 4)}
