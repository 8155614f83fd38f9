"""Where the language server's model requests go: the model daemon, or an engine in this process (`--embedded`).

Both take the daemon's `InfillMessage` and answer its `ResultMessage`, with the same cancel and deadline
semantics and the same errors (`protocol.FillError`, `Unavailable` when there is no model to talk to), so
the language server does not care which one it talks to. The embedded engine's conversions are the
daemon's own (`server.wire`).

The daemon service connects with `ensure_daemon` (starting `infill daemon` in the background when none
runs). When the daemon goes away, requests fail with `Unavailable` at once and a reconnect loop retries with
backoff (0.25 s doubling up to `max_backoff`); a request that arrives while disconnected wakes it early.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

from . import wire
from .protocol import ErrorCode, FillError, InfillMessage, ResultMessage, Unavailable

if TYPE_CHECKING:
    from infill.engine import Engine
    from infill.models.base import LoadOptions
    from infill.request import InfillRequest

log = logging.getLogger(__name__)

Notify = Callable[[int, str], None]  # (logging level, message): the server logs it and tells the client


class ModelService(Protocol):
    description: str

    async def start(self) -> None: ...  # begin loading / connecting; returns at once
    async def fill(self, msg: InfillMessage) -> ResultMessage: ...
    async def cancel(self, request_id: str) -> None: ...
    async def status(self) -> dict[str, Any]: ...
    async def close(self) -> None: ...
    def configure(self, model: str | None, address: str) -> None: ...  # settings changed


# -- in process ------------------------------------------------------------------------------------------------
class EmbeddedService:
    """The engine in this process: loaded once, `fill` runs in one worker thread, one request at a time."""

    def __init__(self, model: str | None, options: LoadOptions | None, notify: Notify,
                 loader: Callable[[str | None, Any], Engine] | None = None) -> None:
        self.model = model
        self._options = options
        self._notify = notify
        self._loader = loader
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="infill-engine")
        self._engine: asyncio.Future[Engine] | None = None
        self._flags: dict[str, threading.Event] = {}
        self.served = 0

    @property
    def description(self) -> str:
        return f"embedded engine ({self.model or 'default model'})"

    async def start(self) -> None:
        self._engine_future()

    def configure(self, model: str | None, address: str) -> None:
        if model != self.model:
            self.model, self._engine = model, None  # the next request loads the new model
            self._engine_future()

    def _engine_future(self) -> asyncio.Future[Engine]:
        if self._engine is None:
            self._engine = asyncio.get_running_loop().run_in_executor(self._worker, self._load, self.model)
            self._engine.add_done_callback(lambda f: f.cancelled() or f.exception())  # no "never retrieved"
        return self._engine

    def _load(self, model: str | None) -> Engine:
        from infill.cli import load_engine
        from infill.models.base import LoadOptions

        started = time.perf_counter()
        try:
            engine = (self._loader or load_engine)(model, self._options or LoadOptions())
        except Exception as exc:
            self._notify(logging.ERROR, f"infill: the model could not load, completions are off: {exc}")
            raise
        self._notify(logging.INFO, f"infill: loaded {engine.model_id} in {time.perf_counter() - started:.1f} s")
        return engine

    async def fill(self, msg: InfillMessage) -> ResultMessage:
        try:
            engine = await asyncio.shield(self._engine_future())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise Unavailable(f"no model: {exc}") from None
        req = wire.request(msg, received=time.monotonic())
        flag = self._flags[msg.id] = threading.Event()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._worker, self._run, engine, msg.id, req,
                                                                    flag)
        except asyncio.CancelledError:
            flag.set()  # the worker thread stops at the next denoising step
            raise
        finally:
            self._flags.pop(msg.id, None)

    def _run(self, engine: Engine, request_id: str, req: InfillRequest, flag: threading.Event) -> ResultMessage:
        from infill.errors import InfillError

        if flag.is_set():
            raise FillError(ErrorCode.CANCELLED, "cancelled before it started")
        try:
            r = engine.fill(req, cancelled=flag.is_set)
        except Exception as exc:  # torch: out of memory and friends fail this request, not the server
            if not isinstance(exc, InfillError):
                log.exception("engine failure")
            raise wire.error(exc) from None
        self.served += 1
        return wire.result(request_id, r)

    async def cancel(self, request_id: str) -> None:
        flag = self._flags.get(request_id)
        if flag is not None:
            flag.set()

    async def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"backend": "embedded", "model": self.model, "served": self.served,
                               "state": self._state()}
        if out["state"] == "failed":
            out["error"] = str(self._engine.exception())
        if self._engine is not None and self._engine.done() and not self._engine.exception():
            engine = self._engine.result()
            out["model"] = engine.model_id
            out["device"] = str(engine.backend.device)
            stats = getattr(engine.backend, "cache_stats", None)
            if stats is not None and getattr(stats, "prefills", 0):
                out["cache_hit_rate"] = stats.hits / stats.prefills
        return out

    def _state(self) -> str:
        if self._engine is None:
            return "idle"
        if not self._engine.done():
            return "loading"
        return "failed" if self._engine.cancelled() or self._engine.exception() else "ready"

    async def close(self) -> None:
        for flag in self._flags.values():
            flag.set()
        self._worker.shutdown(wait=False, cancel_futures=True)


# -- the daemon -------------------------------------------------------------------------------------------------
class DaemonService:
    """A websocket client of the model daemon, reconnecting when it goes away."""

    def __init__(self, address: str, model: str | None, notify: Notify, max_backoff: float = 5.0,
                 start_timeout: float = 120.0, connect_wait: float = 1.0, extra_args: tuple[str, ...] = ()) -> None:
        self.address, self.model = address, model
        self._extra_args = extra_args  # for a daemon this server starts: --device, --threads, ...
        self._notify = notify
        self._max_backoff = max_backoff
        self._start_timeout = start_timeout
        self._connect_wait = connect_wait  # a request waits this long for a connection being made
        self._up = asyncio.Event()
        self._client: Any = None  # server.client.DaemonClient
        self._connector: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._closed = False
        self.reconnects = 0

    @property
    def description(self) -> str:
        return f"daemon at {self.address}"

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    async def start(self) -> None:
        self._ensure_connector(first=True)

    def configure(self, model: str | None, address: str) -> None:
        if address != self.address:
            self.address = address
            old, self._client = self._client, None
            self._up.clear()
            if old is not None:
                asyncio.get_running_loop().create_task(old.close())
            self._ensure_connector(first=True)
        self.model = model

    def _ensure_connector(self, first: bool = False) -> None:
        if self._connector is None or self._connector.done():
            self._connector = asyncio.get_running_loop().create_task(self._connect_loop(first))
        else:
            self._wake.set()

    async def _connect_loop(self, first: bool) -> None:
        from .client import DaemonClient, ensure_daemon

        delay, said = 0.25, False
        while not self._closed:
            address = self.address
            try:
                if first:  # at startup: start a daemon when none is running
                    client = await ensure_daemon(address, model=self.model, extra_args=self._extra_args,
                                                 timeout=self._start_timeout)
                else:  # after it went away: wait for it to come back
                    client = DaemonClient(address)
                    await client.connect()
            except Exception as exc:
                if not said:
                    self._notify(logging.WARNING, f"infill: no model daemon at {address} ({exc}); "
                                 "completions are empty until it is back; retrying")
                    said = True
                first = False
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                delay = min(delay * 2, self._max_backoff)
                continue
            if address != self.address:  # the setting changed while connecting
                await client.close()
                continue
            self._client = client
            self._up.set()
            if said or not first:
                self.reconnects += 1
            self._notify(logging.INFO, f"infill: connected to the model daemon at {address}")
            await self._check_model(client)
            return

    async def _check_model(self, client: Any) -> None:
        if not self.model:
            return
        with contextlib.suppress(Exception):
            status = await client.status()
            if status.model and self.model not in status.model and status.model not in self.model:
                self._notify(logging.WARNING, f"infill: the daemon at {self.address} serves {status.model}, not "
                             f"{self.model}; stop it (or use another address) to switch models")

    def _lost(self, why: str) -> None:
        if self._client is not None:
            self._notify(logging.WARNING, f"infill: lost the model daemon at {self.address}: {why}; reconnecting")
            client, self._client = self._client, None
            self._up.clear()
            asyncio.get_running_loop().create_task(_close_quietly(client))
        self._ensure_connector()

    async def fill(self, msg: InfillMessage) -> ResultMessage:
        client = self._client
        if client is None or not client.connected:
            self._lost("connection closed") if client is not None else self._ensure_connector()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._up.wait(), self._connect_wait)
            client = self._client
            if client is None or not client.connected:
                raise Unavailable(f"no model daemon at {self.address}")
        try:
            return await client.infill(msg)  # cancelling this task cancels the request in the daemon too
        except Unavailable as exc:
            self._lost(exc.message)
            raise Unavailable(f"the model daemon went away: {exc.message}") from None

    async def cancel(self, request_id: str) -> None:
        if self.connected:
            await self._client.cancel(request_id)

    async def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"backend": "daemon", "address": self.address, "connected": self.connected,
                               "reconnects": self.reconnects, "state": "ready" if self.connected else "connecting"}
        if self.connected:
            with contextlib.suppress(Exception):
                s = await self._client.status()
                out.update(model=s.model, device=s.device, dtype=s.dtype, served=s.served,
                           cache_hit_rate=s.cache_hit_rate)
        return out

    async def close(self) -> None:
        self._closed = True
        if self._connector is not None:
            self._connector.cancel()
        if self._client is not None:
            await _close_quietly(self._client)


async def _close_quietly(client: Any) -> None:
    with contextlib.suppress(Exception):
        await client.close()
