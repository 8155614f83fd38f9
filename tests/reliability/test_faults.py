"""Faults: out of memory in the middle of denoising, a model that cannot load.

The third fault of the issue, the daemon killed (SIGKILL) in the middle of a request while the language server
waits on it — empty answer, a log line saying why, reconnection once a daemon is back, never an error response —
is tests/test_lsp.py::test_daemon_killed_mid_request_then_back.

Out of memory is simulated without a hook in the daemon or the engine: the engine runs on a wrapper of the tiny
model's backend whose `denoise` raises `torch.OutOfMemoryError` on its Nth forward pass once armed.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, cli_env
from daemon_helpers import client, free_port, infill
from lsprotocol import types as T
from test_lsp import FAST, PY, inline, open_doc, start_server, status, stop_server

from infill.engine import Engine
from server.completions import Completer
from server.daemon import Daemon, DaemonConfig
from server.documents import Document
from server.protocol import ErrorCode, FillError
from server.services import EmbeddedService
from server.settings import Settings

from .conftest import budget

OOM_MESSAGE = "CUDA out of memory. Tried to allocate 2.00 GiB (simulated)"


class OutOfMemoryBackend:
    """The tiny model's backend; once `arm(n)` is called, its n-th forward pass from then raises out of memory."""

    def __init__(self, backend) -> None:
        self._backend = backend
        self.passes = 0  # denoising passes since arming
        self.fail_at: int | None = None
        self.failures = 0
        self.cache_clears = 0

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def arm(self, n: int) -> None:
        self.passes, self.fail_at = 0, n

    def denoise(self, *args, **kwargs):
        self.passes += 1
        if self.fail_at is not None and self.passes == self.fail_at:
            self.fail_at = None
            self.failures += 1
            raise torch.OutOfMemoryError(OOM_MESSAGE)
        return self._backend.denoise(*args, **kwargs)

    def clear_cache(self) -> None:
        self.cache_clears += 1
        self._backend.clear_cache()


@pytest.fixture
def oom_engine(tiny_engine):
    backend = OutOfMemoryBackend(tiny_engine.backend)
    return Engine(backend, tiny_engine.config), backend


async def test_out_of_memory_mid_denoising_fails_its_batch_and_the_daemon_recovers(oom_engine, tmp_path,
                                                                                   monkeypatch, figures):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    engine, backend = oom_engine
    daemon = Daemon(engine, DaemonConfig(port=0, batch_window=0.3))  # the three requests share a batch
    await daemon.start()
    await daemon.ready()
    rounds = budget(3)
    try:
        async with client(daemon) as c:
            for r in range(rounds):
                backend.arm(2)  # the first denoising step passes, the second runs out of memory
                failed = await asyncio.gather(*(c.infill(infill(f"oom{r}-{i}", seed=i)) for i in range(3)),
                                              return_exceptions=True)
                assert all(isinstance(e, FillError) and e.code == ErrorCode.MODEL for e in failed), failed
                assert all("OutOfMemoryError" in e.message and "out of memory" in e.message for e in failed)
                assert backend.passes >= 2 and backend.cache_clears == r + 1  # mid-denoising; caches dropped
                after = await c.infill(infill(f"after{r}"))  # the next request is served
                assert after.text is not None and after.batch_size == 1
            s = await c.status()
    finally:
        await daemon.stop()
    assert (s.served, s.failed, s.extra["worker_errors"]) == (rounds, 3 * rounds, rounds)
    assert backend.failures == rounds
    figures.count("faults", "oom_in_daemon_survived", rounds)
    figures.count("faults", "oom_failed_requests", 3 * rounds)


async def test_out_of_memory_in_the_embedded_language_server_is_an_empty_answer(oom_engine, figures):
    engine, backend = oom_engine
    logged: list[tuple[int, str]] = []
    embedded = EmbeddedService(None, None, lambda level, message: logged.append((level, message)),
                               loader=lambda model, options: engine)
    settings, _ = Settings().merged(FAST)
    completer = Completer(embedded, lambda: settings)
    doc = Document("file:///t.py", "python", 1, PY)
    cursor = PY.index("total = ") + len("total = ")
    try:
        backend.arm(1)
        assert await completer.at_cursor(doc, cursor, invoked=True) is None  # not an exception
        assert completer.stats()["errors"] == 1
        assert await completer.at_cursor(doc, cursor, invoked=True) is not None  # the next one works
        assert (await completer.over_range(doc, cursor, cursor + 5)).result is not None
        backend.arm(1)
        rng = await completer.over_range(doc, cursor, cursor + 5)
        assert rng.edit is None and "OutOfMemoryError" in rng.error
    finally:
        await embedded.close()
    figures.count("faults", "oom_in_language_server_survived", 2)


# -- a model that cannot load -----------------------------------------------------------------------------------
@pytest.fixture
def broken_models(tiny_model_dir, tmp_path) -> dict[str, str]:
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_model_dir, corrupt)
    (corrupt / "model.safetensors").write_bytes(b"\x08\0\0\0\0\0\0\0{not a safetensors header")
    return {"missing": str(tmp_path / "no-such-model"), "corrupt": str(corrupt)}


def test_a_model_that_cannot_load_stops_the_daemon_with_status_3(broken_models, tmp_path, figures):
    """A checkpoint with broken weights (the missing one: a daemon the language server starts, below)."""
    env = cli_env(None)
    env["XDG_RUNTIME_DIR"] = str(tmp_path / "run")
    model = broken_models["corrupt"]
    proc = subprocess.run([sys.executable, "-m", "infill", "daemon", "--port", "0", "--model", model, "--device",
                           "cpu"], env=env, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("infill: error: could not load model " + model), proc.stderr
    assert all(line.startswith("infill") for line in lines) and proc.stdout == ""  # no traceback, no library noise
    assert not list((tmp_path / "run" / "infill").glob("daemon-*.json"))  # no stale state file left
    figures.count("faults", "model_load_failures_exit_3", 1)


async def test_the_language_server_stays_up_when_the_model_cannot_load(broken_models, tmp_path, figures):
    """Embedded (the engine fails in the server's process) and against a daemon that cannot start: a clear
    message in the client's log, empty answers, no error responses, the server alive and answering."""
    env = cli_env(None)
    env["XDG_RUNTIME_DIR"] = str(tmp_path / "run")
    address = f"ws://127.0.0.1:{free_port()}"
    servers = await asyncio.gather(
        start_server(["--embedded", "--model", broken_models["corrupt"], "--device", "cpu"], env, FAST),
        start_server(["--daemon", address, "--model", broken_models["missing"], "--device", "cpu"], env, FAST))
    try:
        await asyncio.gather(check_empty_and_explained(servers[0], "embedded", broken_models["corrupt"]),
                             check_empty_and_explained(servers[1], "daemon", broken_models["missing"]))
    finally:
        await asyncio.gather(*(stop_server(c) for c in servers))
    figures.count("faults", "language_servers_up_without_a_model", 2)


async def check_empty_and_explained(lsp, mode: str, model: str) -> None:
    expected = {"embedded": "the model could not load, completions are off",
                "daemon": "the daemon exited with status 3"}[mode]
    deadline = asyncio.get_running_loop().time() + 120
    while not any(expected in m.message for m in lsp.log_messages):  # the load fails within seconds
        assert asyncio.get_running_loop().time() < deadline, [m.message for m in lsp.log_messages]
        await asyncio.sleep(0.2)
    message = next(m for m in lsp.log_messages if expected in m.message)
    assert message.type in (T.MessageType.Error, T.MessageType.Warning) and model in message.message
    uri = open_doc(lsp, f"{mode}.py", PY)
    pos = T.Position(1, len("    total = "))
    assert (await inline(lsp, uri, pos)).items == ()
    result = await lsp.text_document_completion_async(T.CompletionParams(
        T.TextDocumentIdentifier(uri), pos, T.CompletionContext(T.CompletionTriggerKind.Invoked)))
    assert not result.items
    summary = await lsp.workspace_execute_command_async(T.ExecuteCommandParams(
        command="infill.fillRange", arguments=[uri, {"start": {"line": 1, "character": 4},
                                                     "end": {"line": 1, "character": 17}}]))
    assert summary["applied"] is False and summary["error"]
    stats = await status(lsp)
    assert stats.unavailable >= 3 and stats.errors == 0
    assert not any(m.type == T.MessageType.Error and "internal error" in m.message for m in lsp.log_messages)
    logging.getLogger(__name__).info("%s: %s", mode, message.message)
