"""An asyncio client of the model daemon, for the language server, the CLI and the tests.

    client = await ensure_daemon()                   # connect, or start a daemon in the background and wait
    result = await client.infill(InfillMessage(id="1", text=doc, cursor=120, stream=True), on_progress=show)
    await client.close()

Many requests may be in flight on one connection: a reader task matches replies to them by id. A request
whose awaiting task is cancelled (asyncio) is cancelled in the daemon too. Failures are `protocol.FillError`s
with the protocol's error code; a daemon that cannot be reached, or a connection that drops, is
`protocol.Unavailable`. This module imports no torch: importing it is cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from infill.files import pid_alive

from . import auth
from .contract import DEFAULT_ADDRESS, DEFAULT_PORT
from .protocol import (
    MAX_MESSAGE_BYTES,
    CancelMessage,
    ErrorCode,
    ErrorMessage,
    FillError,
    InfillMessage,
    NoDaemon,
    NotADaemon,
    ProgressMessage,
    ProtocolError,
    ResultMessage,
    StatusMessage,
    StatusRequest,
    Unavailable,
    parse_server,
)

log = logging.getLogger("infill.client")

ROOT = Path(__file__).resolve().parents[1]  # the checkout holding infill/ and server/


class DaemonClient:
    def __init__(self, address: str = DEFAULT_ADDRESS, token: str | None = None) -> None:
        self.address = address
        self.token = token  # None: read the token file when connecting
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task | None = None
        self._pending: dict[str, tuple[asyncio.Future, Callable[[ProgressMessage], None] | None]] = {}
        self._status_waiters: list[asyncio.Future] = []

    @property
    def connected(self) -> bool:
        return self._ws is not None and self._reader is not None and not self._reader.done()

    async def connect(self, timeout: float = 10) -> None:
        token = self.token if self.token is not None else auth.read_token()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            self._ws = await connect(self.address, additional_headers=headers, max_size=MAX_MESSAGE_BYTES + 65536,
                                     compression=None, open_timeout=timeout, proxy=None)
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status == 401:
                sent = ("the token given" if self.token is not None else f"the token in {auth.token_path()}" if token
                        else f"no token (there is no {auth.token_path()})")
                raise FillError(ErrorCode.UNAUTHORIZED, f"{self.address} refused {sent} with HTTP 401: a daemon "
                                "started by another user or with another token file, or not an infill daemon") from None
            raise NotADaemon(f"something else is listening on {self.address}: it answered HTTP {status}, "
                             "not as the infill daemon") from None
        except InvalidURI as exc:
            raise FillError(ErrorCode.BAD_REQUEST, f"not a websocket address: {exc}") from None
        except (TimeoutError, InvalidHandshake, ConnectionClosed, ConnectionResetError, ConnectionAbortedError,
                BrokenPipeError) as exc:  # a connection was accepted, then no websocket handshake came of it
            detail = (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or type(exc).__name__
            raise NotADaemon(f"something else is listening on {self.address}: it accepted the connection but did "
                             f"not answer as the infill daemon ({detail})") from None
        except OSError as exc:  # refused, unreachable, a name that does not resolve
            raise NoDaemon(f"no daemon on {self.address} ({exc.strerror or exc})") from None
        self._reader = asyncio.create_task(self._read(self._ws), name="infill-client-reader")

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._ws = self._reader = None

    async def wait_closed(self) -> None:
        """Until the connection is closed, by either side (returns at once when not connected)."""
        if self._reader is not None:
            await asyncio.wait([self._reader])  # cancelling this wait leaves the reader running

    async def __aenter__(self) -> DaemonClient:
        if not self.connected:
            await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # -- requests --------------------------------------------------------------------------------------------
    async def infill(self, msg: InfillMessage,
                     on_progress: Callable[[ProgressMessage], None] | None = None) -> ResultMessage:
        """Send one request and wait for its result; drafts go to `on_progress` (when msg.stream is set)."""
        if msg.id in self._pending:
            raise FillError(ErrorCode.BAD_REQUEST, f"request id {msg.id!r} is already in flight")
        future = asyncio.get_running_loop().create_future()
        self._pending[msg.id] = (future, on_progress)
        try:
            await self._send(msg.to_json())
            return await future
        except asyncio.CancelledError:  # the caller gave up: so does the daemon
            # Cancelling the awaiting task cancels `future` too: only an answer that arrived means the daemon is done.
            answered = future.done() and not future.cancelled()
            if not answered:
                with contextlib.suppress(FillError):
                    await asyncio.shield(self._send(CancelMessage(msg.id).to_json()))
            raise
        finally:
            self._pending.pop(msg.id, None)

    async def cancel(self, request_id: str) -> None:
        """Ask the daemon to stop a request; its `infill` call then raises FillError("cancelled")."""
        await self._send(CancelMessage(request_id).to_json())

    async def status(self) -> StatusMessage:
        future = asyncio.get_running_loop().create_future()
        self._status_waiters.append(future)  # status replies come back in the order they were asked for
        try:
            await self._send(StatusRequest().to_json())
            return await future
        finally:
            with contextlib.suppress(ValueError):
                self._status_waiters.remove(future)

    async def _send(self, data: str) -> None:
        if not self.connected:
            raise Unavailable(f"not connected to the daemon at {self.address}")
        try:
            await self._ws.send(data)
        except ConnectionClosed as exc:
            raise Unavailable(f"the connection to {self.address} closed ({exc})") from None

    # -- the reader --------------------------------------------------------------------------------------------
    async def _read(self, ws: ClientConnection) -> None:
        reason = "the daemon closed the connection"
        try:
            async for frame in ws:
                self._dispatch(frame)
        except ConnectionClosed as exc:
            reason = f"the connection to the daemon dropped ({exc})"
        finally:
            lost = Unavailable(reason)
            for future, _ in self._pending.values():
                if not future.done():
                    future.set_exception(lost)
            for future in self._status_waiters:
                if not future.done():
                    future.set_exception(lost)

    def _dispatch(self, frame: str | bytes) -> None:
        try:
            msg = parse_server(frame)
        except (ProtocolError, TypeError) as exc:
            log.warning("ignoring a malformed message from the daemon: %s", exc)
            return
        if isinstance(msg, StatusMessage):
            waiter = next((f for f in self._status_waiters if not f.done()), None)
            if waiter is not None:
                waiter.set_result(msg)
            return
        entry = self._pending.get(getattr(msg, "id", None) or "")
        if entry is None:  # a late draft or answer for a request already given up on (cancelled: expected)
            if isinstance(msg, ErrorMessage) and (msg.id is None or msg.code != ErrorCode.CANCELLED):
                log.warning("daemon error: %s: %s", msg.code, msg.message)
            return
        future, on_progress = entry
        if future.done():
            return
        if isinstance(msg, ProgressMessage):
            if on_progress is not None:
                try:
                    on_progress(msg)
                except Exception:  # the caller's callback must not kill the reader
                    log.exception("on_progress callback failed")
        elif isinstance(msg, ResultMessage):
            future.set_result(msg)
        elif isinstance(msg, ErrorMessage):
            future.set_exception(FillError(msg.code, msg.message))


# -- starting a daemon on demand ------------------------------------------------------------------------------
class DaemonExited(Unavailable):
    """The daemon `ensure_daemon` started exited before it answered; `status` is its exit status (3: the model
    could not load) and the message ends with the last lines of its log."""

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status


def _port(address: str) -> int:
    parts = urlsplit(address)
    return parts.port or DEFAULT_PORT


async def _try_connect(address: str) -> DaemonClient | None:
    client = DaemonClient(address)
    try:
        await client.connect(timeout=5)
    except Unavailable:
        return None
    return client


async def ensure_daemon(address: str = DEFAULT_ADDRESS, model: str | None = None, extra_args: Sequence[str] = (),
                        timeout: float = 60) -> DaemonClient:
    """A connected client: to the daemon at `address`, or to one started now (`python -m infill daemon --port P
    [--model M] EXTRA_ARGS`, detached, its output in the log file next to the token). Waits up to `timeout`
    seconds for it to answer; raises Unavailable with the log's last lines if it does not."""
    if (client := await _try_connect(address)) is not None:
        return client
    if not auth.is_loopback(urlsplit(address).hostname or ""):
        raise Unavailable(f"no daemon answers at {address}, and daemons are only started on loopback "
                                "(start one there by hand with `infill daemon --host ...`)")
    port = _port(address)
    state = auth.read_state(port)
    if state is not None and not pid_alive(state.get("pid")):
        auth.remove_state(port)  # stale: that daemon died without cleaning up
    log_file = auth.log_path(port)
    log_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "infill", "daemon", "--port", str(port), *(["--model", model] if model else []),
           *extra_args]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with open(log_file, "ab") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, cwd=str(ROOT))
    # Reap it when it exits, so that it does not linger as a zombie of this process.
    threading.Thread(target=proc.wait, name=f"infill-daemon-{proc.pid}-reaper", daemon=True).start()
    started = time.monotonic()
    exited_at: float | None = None
    while time.monotonic() - started < timeout:
        await asyncio.sleep(0.2)
        if (client := await _try_connect(address)) is not None:
            return client
        if exited_at is None and proc.poll() is not None:
            exited_at = time.monotonic()  # maybe lost a race for the port to another daemon: look a bit longer
        if exited_at is not None and time.monotonic() - exited_at > 2:
            raise DaemonExited(f"the daemon exited with status {proc.returncode}: {tail(log_file)}", proc.returncode)
    raise Unavailable(f"the daemon started (pid {proc.pid}) did not answer within {timeout:g} s; "
                            f"see {log_file}")


def tail(path: Path, lines: int = 5) -> str:
    """The last lines of a log file, joined with " | " (for one-line messages)."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return f"(no log at {path})"
    return " | ".join(text[-lines:])
