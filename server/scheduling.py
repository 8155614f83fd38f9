"""Debounce and cancellation bookkeeping, per document.

- Every completion request of a document takes a ticket. After its debounce sleep it goes on only if no newer
  completion request of that document came in meanwhile (a burst of keystrokes makes one model call).
- A request that goes on to the model registers its request id. A newer completion request of the same
  document cancels the older ones still running; an edit of the document (didChange) or closing it cancels
  all of them, range fills included, since their text is out of date.

`cancel` is the backend's cancel (a daemon `cancel` message, or the embedded engine's cancel flag). The
bookkeeping is synchronous, so a didChange handler has done its part before the next message is read; the
cancel messages themselves go out as tasks.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ticket:
    uri: str
    generation: int


class Scheduler:
    def __init__(self, cancel: Callable[[str], Awaitable[None]]) -> None:
        self._cancel = cancel
        self._generation: dict[str, int] = {}
        self._running: dict[str, dict[str, bool]] = {}  # uri -> request id -> supersedable (a completion)
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task] = set()
        self.superseded = 0  # completion requests dropped after their debounce
        self.cancelled = 0  # model requests cancelled while running

    def ticket(self, uri: str) -> Ticket:
        gen = self._generation.get(uri, 0) + 1
        self._generation[uri] = gen
        return Ticket(uri, gen)

    def is_current(self, ticket: Ticket) -> bool:
        return self._generation.get(ticket.uri) == ticket.generation

    async def debounce(self, ticket: Ticket, seconds: float) -> bool:
        """Wait out the debounce; True when no newer request or edit of the document came meanwhile."""
        if seconds > 0:
            await asyncio.sleep(seconds)
        if self.is_current(ticket):
            return True
        self.superseded += 1
        return False

    def new_request_id(self, prefix: str = "lsp") -> str:
        return f"{prefix}-{next(self._ids)}"

    def start(self, uri: str, request_id: str, supersedable: bool) -> None:
        """Register a model request; a new completion cancels the older completions of the same document."""
        if supersedable:
            self._cancel_where(uri, lambda sup: sup)
        self._running.setdefault(uri, {})[request_id] = supersedable

    def finish(self, uri: str, request_id: str) -> None:
        running = self._running.get(uri)
        if running is not None:
            running.pop(request_id, None)
            if not running:
                del self._running[uri]

    def document_changed(self, uri: str) -> None:
        """The document changed or closed: pending completions are stale and running requests are cancelled."""
        self._generation[uri] = self._generation.get(uri, 0) + 1
        self._cancel_where(uri, lambda sup: True)

    def running(self, uri: str) -> list[str]:
        return list(self._running.get(uri, {}))

    def _cancel_where(self, uri: str, pick: Callable[[bool], bool]) -> None:
        running = self._running.get(uri, {})
        for rid in [rid for rid, sup in running.items() if pick(sup)]:
            del running[rid]
            self.cancelled += 1
            task = asyncio.get_running_loop().create_task(self._send_cancel(rid))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send_cancel(self, request_id: str) -> None:
        try:
            await self._cancel(request_id)
        except Exception as exc:  # a daemon that is gone cannot cancel; its requests fail anyway
            log.debug("cancel %s: %s", request_id, exc)
