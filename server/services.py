"""Where the language server's model requests go: the model daemon, or an engine in this process (`--embedded`).

Both take the daemon's `InfillMessage` and answer its `ResultMessage`, with the same cancel and deadline
semantics and the same errors (`protocol.FillError`, `Unavailable` when there is no model to talk to), so
the language server does not care which one it talks to. The embedded engine's conversions are the
daemon's own (`server.wire`).

The daemon service connects with `ensure_daemon` (starting `infill daemon --idle-exit S` in the background
when none runs). Requests made while that daemon starts wait for it (up to `start_timeout`), and the daemon
queues requests while its model loads, so the first suggestion of an editor is answered, not dropped. When the
daemon goes away, requests fail with `Unavailable` at once and a reconnect loop retries with backoff (0.25 s
doubling up to `max_backoff`); a request that arrives while disconnected wakes it early.

Both services keep a `server.notices.StateBoard` up to date (starting, loading, ready, refused, unavailable,
failed); the language server publishes its changes to the editor, and logs the ones that need the user.
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

from . import notices, wire
from .notices import FAILED, LOADING, READY, REFUSED, STARTING, UNAVAILABLE, StateBoard
from .protocol import PROTOCOL_VERSION, ErrorCode, FillError, InfillMessage, ResultMessage, Unavailable

if TYPE_CHECKING:
    from infill.engine import Engine
    from infill.models.base import LoadOptions
    from infill.request import InfillRequest

    from .settings import Settings

log = logging.getLogger(__name__)

Notify = Callable[[int, str], None]  # (logging level, message): the server logs it and tells the client


class ModelService(Protocol):
    description: str
    board: StateBoard  # its state, for the editor (the server replaces it with its own)

    async def start(self) -> None: ...  # begin loading / connecting; returns at once
    async def fill(self, msg: InfillMessage) -> ResultMessage: ...
    async def cancel(self, request_id: str) -> None: ...
    async def status(self) -> dict[str, Any]: ...
    async def close(self) -> None: ...
    def configure(self, settings: Settings) -> None: ...  # settings changed (model, daemon address, ...)


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
        self.board = StateBoard()
        self.model_name = notices.model_name(model)

    @property
    def description(self) -> str:
        return f"embedded engine ({self.model or 'default model'})"

    async def start(self) -> None:
        self._engine_future()

    def configure(self, settings: Settings) -> None:
        if settings.resolved_model != self.model:
            self.model, self._engine = settings.resolved_model, None  # the next request loads the new model
            self.model_name = notices.model_name(self.model)
            self._engine_future()

    def _engine_future(self) -> asyncio.Future[Engine]:
        if self._engine is None:
            self.board.set(LOADING, notices.loading(self.model_name), model=self.model_name)
            self._engine = asyncio.get_running_loop().run_in_executor(self._worker, self._load, self.model)
            self._engine.add_done_callback(self._loaded)
        return self._engine

    def _loaded(self, future: asyncio.Future[Engine]) -> None:
        """On the loop, when a load ends: the board says ready or failed (a replaced load says nothing)."""
        if future is not self._engine or future.cancelled():
            return
        if (exc := future.exception()) is not None:
            self.board.set(FAILED, notices.failed(str(exc)))
            return
        engine = future.result()
        self.model_name = notices.model_name(engine.model_id, engine.backend.describe().get("parameters"))
        self.board.set(READY, notices.ready(self.model_name), model=self.model_name)

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
                               "state": self.board.state, "model_name": self.model_name}
        if self._state() == "failed":
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
                 start_timeout: float = 120.0, connect_wait: float = 1.0, extra_args: tuple[str, ...] = (),
                 idle_exit: int | None = None) -> None:
        self.address, self.model = address, model
        self.idle_exit = idle_exit  # seconds: passed to a daemon this server starts (--idle-exit); None: never
        self._extra_args = extra_args  # for a daemon this server starts: --device, --threads, ...
        self._notify = notify
        self._max_backoff = max_backoff
        self._start_timeout = start_timeout  # how long a daemon being started may take to answer
        self._connect_wait = connect_wait  # a request waits this long for a connection being remade
        self._up = asyncio.Event()
        self._client: Any = None  # server.client.DaemonClient
        self._connector: asyncio.Task | None = None
        self._watcher: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._starting = False  # the first connection is being made (maybe a daemon being started)
        self._waiting: dict[str, asyncio.Event] = {}  # request id -> its cancel flag, while it waits to be sent
        self._closed = False
        self.reconnects = 0
        self.board = StateBoard()

    @property
    def description(self) -> str:
        return f"daemon at {self.address}"

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    async def start(self) -> None:
        self._ensure_connector(first=True)

    def configure(self, settings: Settings) -> None:
        self.model, self.idle_exit = settings.resolved_model, settings.daemon_idle_exit
        if settings.daemon != self.address:
            self.address = settings.daemon
            old, self._client = self._client, None
            self._up.clear()
            if old is not None:
                asyncio.get_running_loop().create_task(old.close())
            self._ensure_connector(first=True)

    def _daemon_args(self) -> tuple[str, ...]:
        idle = ("--idle-exit", str(self.idle_exit)) if self.idle_exit else ()
        return (*self._extra_args, *idle)

    def _ensure_connector(self, first: bool = False) -> None:
        if self._connector is None or self._connector.done():
            self._connector = asyncio.get_running_loop().create_task(self._connect_loop(first))
        else:
            self._wake.set()

    async def _connect_loop(self, first: bool) -> None:
        from .client import DaemonClient, ensure_daemon

        delay, said = 0.25, None
        while not self._closed:
            address = self.address
            self._starting = first
            if first:
                self.board.set(STARTING, notices.starting(address))
            try:
                if first:  # at startup: start a daemon when none is running
                    client = await ensure_daemon(address, model=self.model, extra_args=self._daemon_args(),
                                                 timeout=self._start_timeout)
                else:  # after it went away: wait for it to come back
                    client = DaemonClient(address)
                    await client.connect()
            except Exception as exc:
                self._starting = False
                message = self._failed_to_connect(address, exc)
                if message != said and self.board.state == UNAVAILABLE:  # the others: the board's log line
                    self._notify(logging.WARNING, f"infill: {message}; retrying")
                said = message
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
            self._starting = False
            self._up.set()
            if said or not first:
                self.reconnects += 1
            self._notify(logging.INFO, f"infill: connected to the model daemon at {address}")
            self._watcher = asyncio.get_running_loop().create_task(self._watch(client, address))
            return

    def _failed_to_connect(self, address: str, exc: Exception) -> str:
        """Put why on the board; returns the message."""
        from .client import DaemonExited

        if isinstance(exc, FillError) and exc.code == ErrorCode.UNAUTHORIZED:
            message = notices.refused_token(address)
            self.board.set(REFUSED, message, setting="daemon")
        elif isinstance(exc, DaemonExited):
            message = notices.failed(exc.message)
            self.board.set(FAILED, message)
        else:
            message = notices.unavailable(address, exc.message if isinstance(exc, FillError) else str(exc))
            self.board.set(UNAVAILABLE, message, setting="daemon")
        return message

    async def _watch(self, client: Any, address: str) -> None:
        """While connected: the daemon's version and model, its loading until ready, then the connection's end."""
        try:
            status = await client.status()
            self._describe_daemon(status, address)
            if not status.extra.get("ready", True):
                while not status.extra.get("ready", True) and client.connected:
                    await asyncio.sleep(0.25)
                    status = await client.status()
                if self.board.state in (LOADING, READY):  # its name and size are known now
                    self._describe_daemon(status, address)
        except FillError:
            pass  # the connection dropped: handled below
        await client.wait_closed()
        if client is self._client and not self._closed:
            self._lost("the connection closed")

    def _describe_daemon(self, status: Any, address: str) -> None:
        name = status.extra.get("model_name") or notices.model_name(status.model)
        if status.extra.get("protocol") != PROTOCOL_VERSION:
            theirs = f"version {status.extra.get('version', 'unknown')}, protocol {status.extra.get('protocol', 1)}"
            self.board.set(REFUSED, notices.other_version(address, theirs), setting="daemon", model=name)
        elif not status.extra.get("ready", True):
            self.board.set(LOADING, notices.loading(name), model=name)
        else:
            self.board.set(READY, notices.ready(name), model=name)
        if self.model and status.model and self.model not in status.model and status.model not in self.model:
            self._notify(logging.WARNING, f"infill: the daemon at {address} serves {status.model}, not "
                         f"{self.model}; stop it (or use another address) to switch models")

    def _lost(self, why: str) -> None:
        if self._client is not None:
            self._notify(logging.WARNING, f"infill: lost the model daemon at {self.address}: {why}; reconnecting")
            client, self._client = self._client, None
            self._up.clear()
            if self.board.state == LOADING:  # a daemon that dies while loading: most likely the model failed
                from urllib.parse import urlsplit

                from . import auth
                from .client import tail

                log = auth.log_path(urlsplit(self.address).port or 0)
                self.board.set(FAILED, notices.failed(f"the daemon at {self.address} exited while loading the "
                                                      f"model: {tail(log)}"))
            else:
                self.board.set(UNAVAILABLE, notices.unavailable(self.address, why))
            asyncio.get_running_loop().create_task(_close_quietly(client))
        self._ensure_connector()

    async def fill(self, msg: InfillMessage) -> ResultMessage:
        client = self._client
        if client is None or not client.connected:
            self._lost("connection closed") if client is not None else self._ensure_connector()
            client = await self._wait_connected(msg.id)
        try:
            result = await client.infill(msg)  # cancelling this task cancels the request in the daemon too
        except Unavailable as exc:
            self._lost(exc.message)
            raise Unavailable(f"the model daemon went away: {exc.message}") from None
        if self.board.state == LOADING:  # an answer: the model is loaded (before _watch's next look)
            name = self.board.notice.model or notices.model_name(result.model)
            self.board.set(READY, notices.ready(name), model=name)
        return result

    async def _wait_connected(self, request_id: str) -> Any:
        """The client once connected: up to start_timeout while a daemon is being started (the request is answered
        when it is up), else connect_wait; raises Unavailable after that, FillError(cancelled) if cancelled."""
        cancelled = self._waiting[request_id] = asyncio.Event()
        waits = [asyncio.ensure_future(self._up.wait()), asyncio.ensure_future(cancelled.wait())]
        try:
            await asyncio.wait(waits, timeout=self._start_timeout if self._starting else self._connect_wait,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            self._waiting.pop(request_id, None)
        if cancelled.is_set():
            raise FillError(ErrorCode.CANCELLED, "cancelled while waiting for the model daemon")
        client = self._client
        if client is None or not client.connected:
            raise Unavailable(f"no model daemon at {self.address}")
        return client

    async def cancel(self, request_id: str) -> None:
        if (waiting := self._waiting.get(request_id)) is not None:
            waiting.set()
        elif self.connected:
            await self._client.cancel(request_id)

    async def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"backend": "daemon", "address": self.address, "connected": self.connected,
                               "reconnects": self.reconnects, "state": self.board.state,
                               "model_name": self.board.notice.model}
        if self.connected:
            with contextlib.suppress(Exception):
                s = await self._client.status()
                out.update(model=s.model, device=s.device, dtype=s.dtype, served=s.served,
                           cache_hit_rate=s.cache_hit_rate, daemon_pid=s.pid, cancelled=s.extra.get("cancelled"))
        return out

    async def close(self) -> None:
        self._closed = True
        for task in (self._connector, self._watcher):
            if task is not None:
                task.cancel()
        if self._client is not None:
            await _close_quietly(self._client)


async def _close_quietly(client: Any) -> None:
    with contextlib.suppress(Exception):
        await client.close()
