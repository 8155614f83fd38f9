"""Helpers shared by the daemon tests (tests/test_daemon.py, tests/reliability/): request messages, a spying
engine, bare websockets, and a real `infill daemon` in a subprocess.

    msg = infill("r1", max_steps=2)                  # a small request on DOC at CURSOR
    async with raw(daemon) as ws: await ws.send(msg.to_json()); reply = await recv(ws)
    proc = DaemonProcess(model_dir, tmp_path / "run").start(); proc.wait_ready(); proc.rss_kib(); proc.kill()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import ROOT, cli_env
from websockets.asyncio.client import connect

from server.client import DaemonClient
from server.daemon import Daemon
from server.protocol import InfillMessage

DOC = "def add(a, b):\n    return \n\n\nprint(add(1, 2))\n"
CURSOR = DOC.index("return ") + len("return ")


def infill(rid: str, **kw) -> InfillMessage:
    kw.setdefault("max_steps", 4)
    kw.setdefault("lengths", (8,))
    kw.setdefault("seed", 0)
    return InfillMessage(id=rid, text=DOC, cursor=CURSOR, **kw)


class SpyEngine:
    """The shared tiny engine, with the batch sizes it was given, a gate that holds the model thread, and a
    one-shot exception (a simulated out-of-memory)."""

    def __init__(self, engine) -> None:
        self._engine = engine
        self.calls: list[int] = []
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.fail_next: BaseException | None = None

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def fill_batch(self, reqs, on_draft=None, cancelled=None):
        self.calls.append(len(reqs))
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(30)
            self.gate = None
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        return self._engine.fill_batch(reqs, on_draft, cancelled)


@contextlib.asynccontextmanager
async def raw(daemon: Daemon, token: str | None = None):
    """A bare websocket with the daemon's token, to look at the frames themselves."""
    headers = {"Authorization": f"Bearer {token or daemon.token}"}
    async with connect(daemon.address, additional_headers=headers, max_size=None, compression=None) as ws:
        yield ws


async def recv(ws, timeout: float = 20) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


@contextlib.asynccontextmanager
async def client(daemon: Daemon):
    async with DaemonClient(daemon.address) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DaemonProcess:
    """`python -m infill daemon` on a free loopback port, its token and state files under `runtime` (its
    $XDG_RUNTIME_DIR), its output in a log file (a pipe nobody reads could fill up and stall it)."""

    def __init__(self, model: str | Path, runtime: Path, *args: str, threads: int = 1) -> None:
        self.model, self.runtime, self.args = str(model), Path(runtime), args
        self.threads = threads
        self.port = free_port()
        self.address = f"ws://127.0.0.1:{self.port}"
        self.log_path = self.runtime / f"daemon-{self.port}.out"
        self.proc: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        env = cli_env(Path(self.model))
        env["XDG_RUNTIME_DIR"] = str(self.runtime)
        return env

    def start(self) -> DaemonProcess:
        self.runtime.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "infill", "daemon", "--port", str(self.port), "--model", self.model,
                 "--device", "cpu", "--threads", str(self.threads), *self.args],
                env=self.env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def token(self) -> str:
        return (self.runtime / "infill" / "token").read_text().strip()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, timeout: float = 120) -> DaemonProcess:
        """Until the state file says the model is loaded (it is written again once loading finishes)."""
        state = self.runtime / "infill" / f"daemon-{self.port}.json"
        deadline = time.monotonic() + timeout
        while True:
            assert self.alive(), f"the daemon exited ({self.proc.returncode}): {self.log()[-2000:]}"
            with contextlib.suppress(OSError, ValueError):
                if json.loads(state.read_text()).get("ready"):
                    return self
            assert time.monotonic() < deadline, f"the daemon was not ready within {timeout} s: {self.log()[-2000:]}"
            time.sleep(0.1)

    def client(self) -> DaemonClient:
        return DaemonClient(self.address, token=self.token)

    def rss_kib(self) -> int:
        """The daemon's resident memory (VmRSS in /proc/PID/status), KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError(f"no VmRSS for pid {self.pid}")

    def kill(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, as `infill daemon stop` sends; the exit status (SIGKILL after `timeout`)."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode if self.proc is not None else 0
