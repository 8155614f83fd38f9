"""The model daemon: one loaded model serves every editor connection, over websockets on loopback.

    connection ──frames──▶ reader ──▶ queue ──▶ batcher ──▶ model thread: engine.fill_batch(batch)
    connection ◀─ outbox ◀── progress drafts and results (handed to the event loop with call_soon_threadsafe)

- **One model thread.** The engine is synchronous and CPU/GPU-bound; it runs in a single worker thread while
  the asyncio loop handles sockets, so status and cancel messages are answered during a long batch.
- **Micro-batching.** When the worker is free, the batcher takes everything queued (up to `max_batch`),
  waiting until `batch_window` after the oldest queued request for more, and runs them as one `fill_batch`:
  the requests' candidate canvases share forward passes. Results say `batch_size` and `queued_seconds`.
- **Cancellation and deadlines** answer at once: a queued request leaves the queue, a running one is marked
  and the engine drops its rows at the next denoising step. A client that disconnects cancels its requests.
  A deadline counts from the request's arrival, or from the moment the model is ready for a request that
  arrived while it loaded: the first request of an editor is answered, not timed out by the load.
- **Idle exit** (`idle_exit`, `infill daemon --idle-exit S`, what `infill lsp` passes to a daemon it starts):
  after that many seconds without a connection the daemon stops, freeing the model's memory. A daemon started
  by hand has none and stays until stopped.
- **Ordering.** Each connection has one outbox, written by one task, in order. Drafts and results are
  handed to the loop in the order the worker produced them, and a request stops taking drafts once it is
  answered, so no `progress` ever follows its `result` (or its error).
- **Bad frames.** Every malformed message gets an `error` (with the request id when it could be read) and
  the connection stays open. The one exception is a frame over `MAX_FRAME_BYTES` (a little more than
  `protocol.MAX_MESSAGE_BYTES`): websockets refuses to read it and closes that connection with code 1009.
  Messages between the two limits get a `too_large` error and the connection stays open.
- **Failures.** An engine error fails only its request (`bad_input`, `model_error`); an exception out of
  `fill_batch` itself (CUDA out of memory, a RuntimeError) fails that batch with `model_error`, the encoder
  caches are dropped, and the daemon serves the next batch.

Authentication is a bearer token checked in the handshake (`process_request`): a client without the token
gets HTTP 401 and never reaches the queue. See `server.auth` for the token and state files.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from infill import __version__
from infill.errors import BadInputError
from infill.request import InfillRequest, InfillResult

from . import auth, wire
from .contract import DEFAULT_HOST, DEFAULT_PORT, ws_address
from .notices import model_name
from .protocol import (
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    CancelMessage,
    ErrorCode,
    ErrorMessage,
    InfillMessage,
    Message,
    ProgressMessage,
    ProtocolError,
    StatusMessage,
    StatusRequest,
    parse,
)

if TYPE_CHECKING:
    from infill.engine import Engine

log = logging.getLogger("infill.daemon")

MAX_FRAME_BYTES = MAX_MESSAGE_BYTES + 64 * 1024  # websockets closes the connection (1009) above this


@dataclass(frozen=True)
class DaemonConfig:
    host: str = DEFAULT_HOST  # loopback; any other address needs allow_remote (`--host` on the command line)
    port: int = DEFAULT_PORT  # 0: any free port (tests)
    allow_remote: bool = False  # bind a non-loopback address (the token is then the only protection)
    max_batch: int = 8  # requests run together in one fill_batch
    batch_window: float = 0.005  # seconds after the oldest queued request to wait for more to batch with it
    max_queue: int = 64  # requests waiting beyond this get an "overloaded" error
    prompt_cache: bool = True  # False: clear the encoder caches before every batch (cache benchmarks)
    model: str = ""  # what status reports before the engine has loaded
    idle_exit: float | None = None  # stop after this many seconds without a connection; None: never

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_queue < 1:
            raise ValueError("max_batch and max_queue must be at least 1")
        if self.batch_window < 0:
            raise ValueError("batch_window must be >= 0")
        if self.idle_exit is not None and self.idle_exit <= 0:
            raise ValueError("idle_exit must be > 0 seconds (None: never)")


@dataclass(eq=False)
class _Pending:
    """One infill request from its arrival to its answer."""

    conn: _Connection
    msg: InfillMessage
    request: InfillRequest
    arrived: float  # time.monotonic()
    started: float | None = None  # when its batch began
    cancelled: bool = False  # read by the model thread between denoising steps
    done: bool = False  # answered: no more messages for this id
    drafts: int = 0
    last_draft: str | None = None
    timer: asyncio.TimerHandle | None = None


class _Connection:
    """One client: its live requests by id and an outbox written in order by one task."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.live: dict[str, _Pending] = {}
        self.outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self.open = True

    def send(self, msg: Message) -> None:
        if self.open:
            self.outbox.put_nowait(msg.to_json())

    async def write_loop(self) -> None:
        while (data := await self.outbox.get()) is not None:
            try:
                await self.ws.send(data)
            except ConnectionClosed:
                return

    def close(self) -> None:
        self.open = False
        self.outbox.put_nowait(None)


@dataclass
class _Stats:
    served: int = 0  # results sent
    failed: int = 0  # errors sent for infill requests (cancellations not counted)
    cancelled: int = 0
    batches: int = 0
    batched_requests: int = 0
    worker_errors: int = 0  # exceptions out of fill_batch (each failed a whole batch)
    bad_frames: int = 0
    refused_handshakes: int = 0
    connections: int = 0


class _ModelThread:
    """A single daemon thread that runs jobs in order; `submit` returns an asyncio future."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        # daemon=True: a model load that cannot be interrupted does not hold up the process's exit.
        self.thread = threading.Thread(target=self._run, name="infill-model", daemon=True)
        self.thread.start()

    def submit(self, fn: Callable, *args: Any) -> asyncio.Future:
        future = self.loop.create_future()
        self.jobs.put((future, fn, args))
        return future

    def stop(self) -> None:
        self.jobs.put(None)

    def _run(self) -> None:
        while (job := self.jobs.get()) is not None:
            future, fn, args = job
            try:
                result = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - every failure goes back to the loop
                self._hand_back(future, exc, failed=True)
            else:
                self._hand_back(future, result, failed=False)

    def _hand_back(self, future: asyncio.Future, value: Any, failed: bool) -> None:
        def settle() -> None:
            if not future.done():
                future.set_exception(value) if failed else future.set_result(value)

        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            self.loop.call_soon_threadsafe(settle)


class Daemon:
    """The server. `engine` is a loaded Engine, or a function that loads one (run in the model thread after the
    port is bound, so a second daemon on the same port fails at once and clients can connect while it loads).

        daemon = Daemon(engine, DaemonConfig(port=0), token="...")
        await daemon.start(); await daemon.ready()
        ...
        await daemon.stop()
    """

    def __init__(self, engine: Engine | Callable[[], Engine], config: DaemonConfig = DaemonConfig(),
                 token: str | None = None) -> None:
        self.config = config
        self.engine: Engine | None = None if callable(engine) else engine
        self._loader = engine if callable(engine) else None
        self.token = token
        self.queue: collections.deque[_Pending] = collections.deque()
        self.running: list[_Pending] = []
        self.connections: set[_Connection] = set()
        self.stats = _Stats()
        self.port = config.port
        self.started = time.monotonic()
        self._server: Server | None = None
        self._worker: _ModelThread | None = None
        self._batcher: asyncio.Task | None = None
        self._wakeup = asyncio.Event()
        self._ready: asyncio.Future | None = None
        self._stopping = False
        self._describe: dict = {}
        self.idle = asyncio.Event()  # set when idle_exit has passed without a connection: time to stop
        self._last_connection = time.monotonic()  # when the last connection opened or closed
        self._idle_watch: asyncio.Task | None = None
        self.last: dict[str, Any] = {}  # timings of the last answered request (status: "last")

    # -- lifecycle -----------------------------------------------------------------------------------------
    @property
    def address(self) -> str:
        return ws_address(self.config.host, self.port)

    @property
    def model(self) -> str:
        return self.engine.model_id if self.engine is not None else self.config.model

    async def start(self) -> None:
        """Check the bind address and the token, bind, write the state file, start the model thread."""
        host = self.config.host
        if not auth.is_loopback(host) and not self.config.allow_remote:
            raise BadInputError(f"refusing to bind {host}: the daemon listens on loopback only unless the address "
                                "is given explicitly with --host")
        if self.token is None:
            self.token = auth.load_or_create_token()
        loop = asyncio.get_running_loop()
        self._server = await serve(self._handle, host, self.config.port, process_request=self._authorize,
                                   max_size=MAX_FRAME_BYTES, compression=None)
        self.port = self._server.sockets[0].getsockname()[1]
        self.started = time.monotonic()
        self._ready = loop.create_future()
        self._worker = _ModelThread(loop)
        self._write_state()
        self._batcher = loop.create_task(self._run_batches(), name="infill-batcher")
        self._last_connection = time.monotonic()
        if self.config.idle_exit is not None:
            self._idle_watch = loop.create_task(self._watch_idle(self.config.idle_exit), name="infill-idle")

    async def ready(self) -> None:
        """Wait until the model is loaded; raises what the loader raised."""
        assert self._ready is not None, "start() first"
        await asyncio.shield(self._ready)

    async def stop(self) -> None:
        """Stop accepting, drop queued requests, stop the running batch at its next step, remove the state file."""
        if self._stopping:
            return
        self._stopping = True
        if self._idle_watch is not None:
            self._idle_watch.cancel()
        for p in [*self.queue, *self.running]:
            p.cancelled = True
        self.queue.clear()
        if self._server is not None:
            self._server.close()  # closes connections with 1001 and waits for their handlers
            await self._server.wait_closed()
        self._wakeup.set()
        if self._batcher is not None:
            if self.engine is None:  # still loading: do not wait for the load to finish
                self._batcher.cancel()
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._batcher, timeout=30)  # a batch ends within one step once cancelled
        if self._worker is not None:
            self._worker.stop()
        auth.remove_state(self.port, os.getpid())

    def _write_state(self) -> None:
        auth.write_state(self.port, {
            "address": self.address, "host": self.config.host, "port": self.port, "pid": os.getpid(),
            "model": self.model, "ready": self.engine is not None, "started": time.time(),
            "idle_exit": self.config.idle_exit,
        })

    async def _watch_idle(self, seconds: float) -> None:
        """Set `idle` once `seconds` pass with no connection open (checked a few times per period)."""
        while not self._stopping:
            await asyncio.sleep(min(1.0, seconds / 4))
            if not self.connections and time.monotonic() - self._last_connection >= seconds:
                log.info("no connection for %g s: stopping (idle exit)", seconds)
                self.idle.set()
                return

    # -- connections -----------------------------------------------------------------------------------------
    def _authorize(self, connection: ServerConnection, request) -> Any:
        """Handshake hook: 401 before any work unless the request carries `Authorization: Bearer <token>`."""
        values = request.headers.get_all("Authorization")  # two of them: refused (headers.get would raise)
        scheme, _, value = (values[0] if len(values) == 1 else "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), (self.token or "").encode()):
            return None
        self.stats.refused_handshakes += 1
        return connection.respond(HTTPStatus.UNAUTHORIZED,
                                  "missing or wrong token: send 'Authorization: Bearer <token>' with the token from "
                                  f"{auth.token_path()}\n")

    async def _handle(self, ws: ServerConnection) -> None:
        conn = _Connection(ws)
        self.connections.add(conn)
        self._last_connection = time.monotonic()
        self.stats.connections += 1
        writer = asyncio.create_task(conn.write_loop())
        try:
            async for frame in ws:
                self._on_frame(conn, frame)
        except ConnectionClosed:
            pass
        finally:
            self.connections.discard(conn)
            self._last_connection = time.monotonic()
            for p in list(conn.live.values()):  # a client that goes away cancels what it asked for
                self._cancel(p, reply=None)
            conn.close()
            await writer

    def _on_frame(self, conn: _Connection, frame: str | bytes) -> None:
        try:
            msg = parse(frame)
        except ProtocolError as exc:
            self.stats.bad_frames += 1
            conn.send(exc.to_message())
            return
        try:
            if isinstance(msg, InfillMessage):
                self._submit(conn, msg)
            elif isinstance(msg, CancelMessage):
                if (p := conn.live.get(msg.id)) is not None:  # unknown ids: already answered, nothing to do
                    self._cancel(p, reply=ErrorMessage(msg.id, ErrorCode.CANCELLED, "cancelled by the client"))
            elif isinstance(msg, StatusRequest):
                conn.send(self.status())
        except Exception as exc:  # a bug here must cost one message, not the connection
            log.exception("handling a %s message failed", msg.TYPE)
            conn.send(ErrorMessage(getattr(msg, "id", None), ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}"))

    # -- requests --------------------------------------------------------------------------------------------
    def _submit(self, conn: _Connection, msg: InfillMessage) -> None:
        if msg.id in conn.live:  # the error's id is null: that id belongs to the request in flight
            conn.send(ErrorMessage(None, ErrorCode.BAD_REQUEST,
                                   f"request id {msg.id!r} is already in flight on this connection"))
            return
        if self._stopping:
            conn.send(ErrorMessage(msg.id, ErrorCode.OVERLOADED, "the daemon is shutting down"))
            return
        if len(self.queue) >= self.config.max_queue:
            self.stats.failed += 1
            conn.send(ErrorMessage(msg.id, ErrorCode.OVERLOADED,
                                   f"{len(self.queue)} requests are queued (the limit); try again shortly"))
            return
        now = time.monotonic()
        p = _Pending(conn, msg, wire.request(msg, received=now), arrived=now)
        conn.live[msg.id] = p
        self.queue.append(p)
        if self.engine is not None:  # else its deadline starts when the model is ready (_run_batches)
            self._arm(p, now)
        self._wakeup.set()

    def _arm(self, p: _Pending, now: float) -> None:
        """Start p's deadline clock at `now`."""
        if p.msg.deadline_ms is not None:
            p.request = wire.request(p.msg, received=now)
            p.timer = asyncio.get_running_loop().call_later(p.msg.deadline_ms / 1000, self._expire, p)

    def _cancel(self, p: _Pending, reply: Message | None) -> None:
        """Stop a request wherever it is: out of the queue now, or out of the batch at the next denoising step."""
        if p.done:
            return
        p.cancelled = True
        with contextlib.suppress(ValueError):
            self.queue.remove(p)
        self._answer(p, reply)
        if reply is None or reply.code == ErrorCode.CANCELLED:  # type: ignore[union-attr]
            self.stats.cancelled += 1
        else:
            self.stats.failed += 1

    def _expire(self, p: _Pending) -> None:
        ms = p.msg.deadline_ms
        self._cancel(p, ErrorMessage(p.msg.id, ErrorCode.DEADLINE, f"no result within the deadline of {ms} ms"))

    def _answer(self, p: _Pending, reply: Message | None) -> None:
        p.done = True
        if p.timer is not None:
            p.timer.cancel()
        p.conn.live.pop(p.msg.id, None)
        if reply is not None:
            p.conn.send(reply)

    # -- the batcher and the model thread --------------------------------------------------------------------
    async def _run_batches(self) -> None:
        assert self._worker is not None and self._ready is not None
        if self.engine is None:
            try:
                self.engine = await self._worker.submit(self._loader)
            except Exception as exc:
                self._ready.set_exception(exc)
                self._fail_queued(f"the model failed to load: {exc}")
                return
            self._write_state()
            now = time.monotonic()
            for p in self.queue:  # arrived while the model loaded: their deadlines start now
                self._arm(p, now)
        self._describe = self.engine.backend.describe()
        self._describe["model_name"] = model_name(self.model, self._describe.get("parameters"))
        self._ready.set_result(None)
        while not self._stopping:
            batch = await self._next_batch()
            if batch:
                await self._run(batch)

    async def _next_batch(self) -> list[_Pending]:
        """Everything queued, up to max_batch, once the batch is full or the window after the oldest has passed."""
        while not self.queue and not self._stopping:
            self._wakeup.clear()
            await self._wakeup.wait()
        cfg = self.config
        while self.queue and len(self.queue) < cfg.max_batch and not self._stopping:
            left = self.queue[0].arrived + cfg.batch_window - time.monotonic()
            if left <= 0:
                break
            self._wakeup.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), left)
        return [self.queue.popleft() for _ in range(min(cfg.max_batch, len(self.queue)))]

    async def _run(self, batch: list[_Pending]) -> None:
        assert self._worker is not None
        now = time.monotonic()
        for p in batch:
            p.started = now
        self.running = batch
        drafts = [self._drafter(p) if p.msg.stream else None for p in batch]
        cancelled = [self._canceller(p) for p in batch]
        try:
            results = await self._worker.submit(self._fill, [p.request for p in batch], drafts, cancelled)
        except Exception as exc:  # out of memory, a bug in a backend: this batch fails, the daemon goes on
            log.error("batch of %d failed: %s: %s", len(batch), type(exc).__name__, exc, exc_info=exc)
            self.stats.worker_errors += 1
            results = [exc] * len(batch)
        finally:
            self.running = []
        self.stats.batches += 1
        self.stats.batched_requests += len(batch)
        for p, result in zip(batch, results, strict=True):
            if not p.done:
                self._answer(p, self._reply(p, result, len(batch)))

    def _fill(self, reqs, drafts, cancelled) -> list:
        """In the model thread."""
        backend = self.engine.backend
        if not self.config.prompt_cache and hasattr(backend, "clear_cache"):
            backend.clear_cache()
        try:
            return self.engine.fill_batch(reqs, drafts, cancelled)
        except Exception:
            self._recover()
            raise

    def _recover(self) -> None:
        """After a failed batch: drop the encoder caches (they may hold half a prefill) and free CUDA memory."""
        with contextlib.suppress(Exception):
            if hasattr(self.engine.backend, "clear_cache"):
                self.engine.backend.clear_cache()
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def _drafter(self, p: _Pending) -> Callable[[int, str], None]:
        """on_draft for the model thread: hands each draft to the loop, which sends it unless p is answered."""
        loop = asyncio.get_running_loop()

        def on_draft(step: int, text: str) -> None:
            loop.call_soon_threadsafe(self._progress, p, text)

        return on_draft

    @staticmethod
    def _canceller(p: _Pending) -> Callable[[], bool]:
        return lambda: p.cancelled

    def _progress(self, p: _Pending, text: str) -> None:
        p.drafts += 1  # one engine call per denoising step of the batch: a step count across escalation rounds
        if p.done or p.cancelled or text == p.last_draft:  # an unchanged draft (a finished row) is not news
            return
        p.last_draft = text
        p.conn.send(ProgressMessage(id=p.msg.id, step=p.drafts, draft=text))

    def _reply(self, p: _Pending, result: InfillResult | BaseException, batch_size: int) -> Message:
        if isinstance(result, InfillResult):
            self.stats.served += 1
            reply = wire.result(p.msg.id, result, (p.started or p.arrived) - p.arrived, batch_size)
            self.last = {"seconds": reply.seconds, "queued_seconds": reply.queued_seconds, "batch_size": batch_size}
            return reply
        err = wire.error(result)
        if err.code == ErrorCode.CANCELLED:
            self.stats.cancelled += 1
        else:
            self.stats.failed += 1
        return ErrorMessage(p.msg.id, err.code, err.message)

    def _fail_queued(self, message: str) -> None:
        for p in list(self.queue):
            self.stats.failed += 1
            self._answer(p, ErrorMessage(p.msg.id, ErrorCode.MODEL, message))
        self.queue.clear()

    # -- status ------------------------------------------------------------------------------------------------
    def status(self) -> StatusMessage:
        extra: dict[str, Any] = {"ready": self.engine is not None, "connections": len(self.connections),
                                 "cancelled": self.stats.cancelled, "batches": self.stats.batches,
                                 "mean_batch_size": round(self.stats.batched_requests / self.stats.batches, 3)
                                 if self.stats.batches else 0.0,
                                 "worker_errors": self.stats.worker_errors, "bad_frames": self.stats.bad_frames,
                                 "refused_handshakes": self.stats.refused_handshakes,
                                 "max_batch": self.config.max_batch,
                                 "batch_window_ms": self.config.batch_window * 1000,
                                 "prompt_cache": self.config.prompt_cache,
                                 "version": __version__, "protocol": PROTOCOL_VERSION,
                                 "idle_exit": self.config.idle_exit,
                                 "cpu_seconds": round(time.process_time(), 3),  # all threads: the model's work
                                 "last": self.last}
        hit_rate = 0.0
        if self.engine is not None:
            cache = self.engine.backend.cache_stats
            hit_rate = round(cache.hit_rate, 4)
            extra |= {"prefills": cache.prefills, "cache_hits": cache.hits,
                      "cache_reused_tokens": cache.reused_tokens, "cache_computed_tokens": cache.computed_tokens,
                      "prefill_seconds": round(cache.seconds, 6),
                      "parameters": self._describe.get("parameters"), "backend": self._describe.get("backend"),
                      "model_name": self._describe.get("model_name"),
                      "stack": self._describe.get("stack"), "weights": self._describe.get("weights")}
            drafts = getattr(self.engine, "drafts", None)
            if drafts is not None:  # as-you-type requests seeded by the previous keystroke's draft
                extra |= {"warm_starts": drafts.hits, "cold_starts": drafts.misses}
        return StatusMessage(
            address=self.address, pid=os.getpid(), model=self.model, device=self._describe.get("device", ""),
            dtype=self._describe.get("dtype", ""), queue=len(self.queue), running=len(self.running),
            served=self.stats.served, failed=self.stats.failed, cache_hit_rate=hit_rate,
            uptime_seconds=round(time.monotonic() - self.started, 3), extra=extra)

