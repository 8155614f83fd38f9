"""`infill fill` through a running model daemon: the model stays loaded between commands.

    filler = connect(address, model)       # None when no daemon answers there, or it serves another model
    result = filler.fill(request)          # an InfillResult, as Engine.fill returns it
    filler.close()

No torch here: a fill through the daemon costs the CLI an import of websockets and one round trip. A daemon
that goes away mid-command raises `protocol.Unavailable`, and the CLI loads the model itself.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

from infill.request import InfillRequest, InfillResult

from . import wire
from .client import DaemonClient
from .protocol import PROTOCOL_VERSION, FillError, StatusMessage, Unavailable

CONNECT_TIMEOUT = 2.0  # seconds; nobody listening is refused at once, this bounds a hung listener


class DaemonFiller:
    """Engine.fill's surface over a daemon connection."""

    backend = "daemon"

    def __init__(self, loop: asyncio.AbstractEventLoop, client: DaemonClient, model: str) -> None:
        self._loop, self._client, self.model_id = loop, client, model
        self._ids = itertools.count(1)

    def fill(self, req: InfillRequest) -> InfillResult:
        """The daemon's result; its errors as the engine raises them; Unavailable when it went away."""
        msg = wire.message(f"cli-{next(self._ids)}", req)
        try:
            return wire.result_of(self._loop.run_until_complete(self._client.infill(msg)))
        except Unavailable:
            raise
        except FillError as exc:
            raise wire.engine_error(exc) from None

    def close(self) -> None:
        try:
            self._loop.run_until_complete(self._client.close())
        finally:
            self._loop.close()


def connect(address: str, model: str) -> DaemonFiller | None:
    """A filler over the daemon at `address` when one answers there and serves `model`; else None."""
    loop = asyncio.new_event_loop()
    client = DaemonClient(address)
    try:
        loop.run_until_complete(client.connect(timeout=CONNECT_TIMEOUT))
        status = loop.run_until_complete(asyncio.wait_for(client.status(), CONNECT_TIMEOUT))
        if serves(status, model):
            return DaemonFiller(loop, client, status.model)
        loop.run_until_complete(client.close())
    except (FillError, TimeoutError, OSError):
        pass
    loop.close()
    return None


def serves(status: StatusMessage, model: str) -> bool:
    """Whether a daemon with this status can fill for this command: the model asked for, and this protocol (a
    daemon left running from another version of infill loads the model here instead)."""
    return status.extra.get("protocol") == PROTOCOL_VERSION and same_model(status.model, model)


def same_model(served: str, wanted: str) -> bool:
    """Whether the daemon's model is the one asked for: the same directory, or the same hub id."""
    if served == wanted:
        return True
    a, b = Path(served), Path(wanted)
    return a.is_dir() and b.is_dir() and a.resolve() == b.resolve()


__all__ = ["DaemonFiller", "connect", "same_model", "serves"]
