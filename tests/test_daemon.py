"""The model daemon for real: websockets on loopback, the tiny random checkpoint, the shared engine fixture.

In-process daemons listen on an ephemeral port; one end-to-end test starts `infill daemon` in the background
through `ensure_daemon` and drives it with `infill daemon status` / `stop`. $XDG_RUNTIME_DIR points at a tmp
dir, so token and state files never touch the user's.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import stat
import subprocess
import sys
import threading
import time

import pytest
from daemon_helpers import SpyEngine, client, free_port, infill, raw, recv
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from infill.errors import BadInputError
from infill.files import pid_alive
from server import auth
from server.client import DaemonClient, ensure_daemon
from server.daemon import MAX_FRAME_BYTES, Daemon, DaemonConfig
from server.protocol import MAX_TEXT_CHARS, ErrorCode, FillError, InfillMessage, Unavailable


@pytest.fixture
def runtime_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    return tmp_path / "run" / "infill"


@pytest.fixture
async def start_daemon(tiny_engine, runtime_dir):
    """start_daemon(**DaemonConfig fields) -> a started, ready Daemon over a SpyEngine; stopped afterwards."""
    daemons: list[Daemon] = []

    async def start(**config) -> Daemon:
        daemon = Daemon(SpyEngine(tiny_engine), DaemonConfig(port=0, **config))
        await daemon.start()
        await daemon.ready()
        daemons.append(daemon)
        return daemon

    yield start
    for daemon in daemons:
        await daemon.stop()


@pytest.fixture
async def daemon(start_daemon):
    return await start_daemon()


# -- auth and binding ------------------------------------------------------------------------------------------
def test_token_file_is_private_and_stable(runtime_dir):
    token = auth.load_or_create_token()
    path = auth.token_path()
    assert path == runtime_dir / "token" and len(token) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(runtime_dir.stat().st_mode) == 0o700
    assert auth.load_or_create_token() == token == auth.read_token()


def test_loose_token_file_is_refused_with_a_chmod_hint(runtime_dir, run_cli):
    auth.load_or_create_token()
    path = auth.token_path()
    path.chmod(0o644)
    with pytest.raises(BadInputError, match=f"chmod 600 {path}"):
        auth.load_or_create_token()
    proc = run_cli("daemon", "--port", "0")  # refused before the model loads
    assert proc.returncode == 2
    assert f"chmod 600 {path}" in proc.stderr and proc.stderr.count("\n") == 1


async def test_missing_or_wrong_token_gets_401_before_any_work(daemon):
    for headers in ({}, {"Authorization": "Bearer not-the-token"}, {"Authorization": f"Basic {daemon.token}"}):
        with pytest.raises(InvalidStatus) as info:
            async with connect(daemon.address, additional_headers=headers):
                pass
        assert info.value.response.status_code == 401
    with pytest.raises(FillError) as err:
        await DaemonClient(daemon.address, token="wrong").connect()
    assert err.value.code == ErrorCode.UNAUTHORIZED and not isinstance(err.value, Unavailable)
    assert daemon.engine.calls == [] and daemon.stats.refused_handshakes == 4 and daemon.stats.connections == 0


async def test_non_loopback_bind_needs_an_explicit_host(tiny_engine, runtime_dir):
    with pytest.raises(BadInputError, match="--host"):
        await Daemon(tiny_engine, DaemonConfig(host="0.0.0.0", port=0)).start()
    with pytest.raises(Unavailable, match="only started on loopback"):
        await ensure_daemon("ws://192.0.2.1:1", timeout=1)  # TEST-NET: never answers, never spawned


# -- malformed messages ------------------------------------------------------------------------------------------
async def test_malformed_messages_get_errors_and_the_daemon_keeps_serving(daemon):
    bad = [
        ("not json {", ErrorCode.BAD_REQUEST, None),
        (json.dumps({"type": "teleport"}), ErrorCode.BAD_REQUEST, None),
        (json.dumps({"type": "infill", "id": "t1", "text": 5, "cursor": 0}), ErrorCode.BAD_REQUEST, "t1"),
        (json.dumps({"type": "infill", "id": "t2", "text": "x", "cursor": "0"}), ErrorCode.BAD_REQUEST, "t2"),
        (b"\xff\xfe\x00binary", ErrorCode.BAD_REQUEST, None),
        (json.dumps({"type": "infill", "id": "big", "text": "x" * (MAX_TEXT_CHARS + 1), "cursor": 0}),
         ErrorCode.TOO_LARGE, "big"),
    ]
    async with raw(daemon) as ws:
        for frame, code, rid in bad:
            await ws.send(frame)
            reply = await recv(ws)
            assert (reply["type"], reply["code"], reply["id"]) == ("error", code, rid), reply
        await ws.send(infill("ok").to_json())  # the same connection still works
        assert (await recv(ws))["type"] == "result"
        # A frame over the websocket limit is not read at all: that connection is closed (1009) ...
        await ws.send("x" * (MAX_FRAME_BYTES + 1))
        with pytest.raises(ConnectionClosed) as closed:
            await recv(ws)
        assert closed.value.rcvd.code == 1009
    async with client(daemon) as c:  # ... and the daemon serves everyone else
        assert (await c.infill(infill("after"))).text is not None
        assert (await c.status()).extra["bad_frames"] == len(bad)


async def test_engine_errors_fail_only_their_request(daemon):
    async with client(daemon) as c:
        good, outside, unknown = await asyncio.gather(
            c.infill(infill("good")),
            c.infill(InfillMessage(id="outside", text="x = 1\n", cursor=99)),
            c.infill(infill("klingon", language="klingon")), return_exceptions=True)
    assert good.id == "good"
    assert outside.code == unknown.code == ErrorCode.BAD_INPUT
    assert "outside the document" in outside.message and "klingon" in unknown.message


# -- batching, cancellation, deadlines, drafts ------------------------------------------------------------------
async def test_requests_queued_behind_a_busy_worker_run_as_one_batch(daemon):
    engine = daemon.engine
    engine.gate = threading.Event()
    async with client(daemon) as c:
        first = asyncio.create_task(c.infill(infill("first")))
        await asyncio.to_thread(engine.entered.wait, 10)  # the model thread is busy with "first"
        rest = [asyncio.create_task(c.infill(infill(f"r{i}", seed=i))) for i in range(3)]
        while len(daemon.queue) < 3:
            await asyncio.sleep(0.01)
        status = await c.status()
        assert (status.queue, status.running) == (3, 1)
        engine.gate.set()
        results = await asyncio.gather(first, *rest)
    assert [r.batch_size for r in results] == [1, 3, 3, 3] and engine.calls == [1, 3]
    assert all(r.queued_seconds > 0 for r in results[1:])
    assert daemon.status().extra["mean_batch_size"] == 2.0


async def test_cancel_stops_a_request_mid_denoising(daemon):
    budget = 1000  # steps; the tiny random model never converges, so only cancellation ends it early
    async with raw(daemon) as ws:
        await ws.send(infill("long", max_steps=budget, lengths=(32,), stream=True).to_json())
        first = await recv(ws)
        assert first["type"] == "progress" and first["id"] == "long"
        await ws.send(json.dumps({"type": "cancel", "id": "long"}))
        while (reply := await recv(ws))["type"] == "progress":
            pass
        assert (reply["type"], reply["id"], reply["code"]) == ("error", "long", ErrorCode.CANCELLED)
        # The engine stopped at its next step: the next request does not wait behind 1000 steps.
        started = time.monotonic()
        await ws.send(infill("next").to_json())
        reply = await recv(ws)
        assert (reply["type"], reply["id"]) == ("result", "next"), reply
        assert reply["queued_seconds"] < 5 and time.monotonic() - started < 10
        with pytest.raises(TimeoutError):  # no draft of the cancelled request follows its error
            await recv(ws, timeout=0.3)
    assert daemon.stats.cancelled == 1 and daemon.engine.calls == [1, 1]


async def test_cancelling_a_queued_request_answers_at_once(daemon):
    daemon.engine.gate = threading.Event()
    async with client(daemon) as c:
        busy = asyncio.create_task(c.infill(infill("busy")))
        await asyncio.to_thread(daemon.engine.entered.wait, 10)
        queued = asyncio.create_task(c.infill(infill("queued")))
        while not daemon.queue:
            await asyncio.sleep(0.01)
        await c.cancel("queued")
        with pytest.raises(FillError) as err:
            await queued
        assert err.value.code == ErrorCode.CANCELLED and not daemon.queue
        daemon.engine.gate.set()
        await busy
    assert daemon.engine.calls == [1]  # the cancelled request never reached the engine


async def test_a_cancelled_task_cancels_its_request_in_the_daemon(daemon):
    """The language server's way: `$/cancelRequest` cancels the task awaiting `client.infill`. Cancelling that task
    cancels the future it awaits, and the cancel message must still go out (issue 17: it did not)."""
    async with client(daemon) as c:
        task = asyncio.create_task(c.infill(infill("given-up", max_steps=1000, lengths=(32,))))
        while not daemon.running:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        started = time.monotonic()
        while daemon.stats.cancelled == 0:
            assert time.monotonic() - started < 5, "the daemon never heard of the cancellation"
            await asyncio.sleep(0.01)
        assert (await asyncio.wait_for(c.infill(infill("next")), 20)).id == "next"  # not behind 1000 steps
    assert (daemon.stats.served, daemon.stats.cancelled) == (1, 1)


async def test_a_disconnecting_client_cancels_its_requests(daemon):
    async with raw(daemon) as ws:
        await ws.send(infill("orphan", max_steps=1000, lengths=(32,), stream=True).to_json())
        await recv(ws)  # its first draft: it is running
    async with client(daemon) as c:
        await asyncio.wait_for(c.infill(infill("next")), 10)  # the worker is free again
    assert daemon.stats.cancelled == 1


async def test_deadline(daemon):
    async with client(daemon) as c:
        started = time.monotonic()
        with pytest.raises(FillError) as err:
            await c.infill(infill("slow", max_steps=1000, lengths=(32,), deadline_ms=300))
        assert err.value.code == ErrorCode.DEADLINE and "300 ms" in err.value.message
        assert time.monotonic() - started < 3
        assert (await asyncio.wait_for(c.infill(infill("next")), 10)).id == "next"
    assert daemon.status().failed == 1


async def test_a_deadline_starts_when_the_model_is_ready(tiny_engine, runtime_dir):
    """A request that arrives while the model loads is answered once it is ready: its deadline (here far shorter
    than the load) counts from then. It used to time out during the load, and the editor never asked again."""
    gate = threading.Event()
    daemon = Daemon(lambda: gate.wait(30) and tiny_engine, DaemonConfig(port=0))
    await daemon.start()
    try:
        async with client(daemon) as c:
            first = asyncio.create_task(c.infill(infill("early", deadline_ms=300)))
            await asyncio.sleep(0.9)  # three deadlines' worth of loading
            assert not first.done() and daemon.engine is None
            gate.set()
            result = await asyncio.wait_for(first, 30)
            assert result.id == "early" and result.queued_seconds >= 0.9
            with pytest.raises(FillError) as err:  # once ready, the deadline holds as before
                await c.infill(infill("late", max_steps=1000, lengths=(32,), deadline_ms=300))
            assert err.value.code == ErrorCode.DEADLINE
    finally:
        await daemon.stop()


async def test_drafts_stream_before_the_result_and_never_after(daemon):
    async with raw(daemon) as ws:
        await ws.send(infill("s", max_steps=6, stream=True).to_json())
        frames = []
        while (frame := await recv(ws))["type"] == "progress":
            frames.append(frame)
        assert frame["type"] == "result" and frame["id"] == "s"
        steps = [f["step"] for f in frames]
        assert frames and steps == sorted(set(steps)) and all(isinstance(f["draft"], str) for f in frames)
        await ws.send(infill("quiet", max_steps=6).to_json())  # no stream: no drafts
        assert (await recv(ws))["type"] == "result"
        with pytest.raises(TimeoutError):
            await recv(ws, timeout=0.3)
    async with client(daemon) as c:  # the client hands drafts to on_progress
        seen = []
        result = await c.infill(infill("c", max_steps=6, stream=True), on_progress=seen.append)
        assert seen and all(p.id == "c" for p in seen) and result.steps >= 1


# -- failures and status -------------------------------------------------------------------------------------------
async def test_an_exception_in_the_model_thread_fails_the_batch_and_the_daemon_recovers(daemon):
    daemon.engine.fail_next = RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
    async with client(daemon) as c:
        with pytest.raises(FillError) as err:
            await c.infill(infill("oom"))
        assert err.value.code == ErrorCode.MODEL and "out of memory" in err.value.message
        assert (await c.infill(infill("after"))).id == "after"
        status = await c.status()
    assert (status.served, status.failed, status.extra["worker_errors"]) == (1, 1, 1)


async def test_status_fields(daemon):
    async with client(daemon) as c:
        await c.infill(infill("a"))
        await c.infill(infill("b"))  # the same prompt: its encoder cache is reused
        s = await c.status()
    assert s.address == daemon.address and s.pid == os.getpid() and s.model == daemon.engine.model_id
    assert (s.device, s.dtype, s.queue, s.running, s.served, s.failed) == ("cpu", "float32", 0, 0, 2, 0)
    assert 0 < s.cache_hit_rate <= 1 and s.uptime_seconds > 0
    for key in ("cache_reused_tokens", "cache_computed_tokens", "prefill_seconds", "batches", "mean_batch_size"):
        assert key in s.extra
    assert s.extra["cache_reused_tokens"] > 0 and s.extra["batches"] == 2
    state = auth.read_state(daemon.port)
    assert state["pid"] == os.getpid() and state["address"] == daemon.address and state["ready"]


async def test_client_reports_a_dropped_connection(start_daemon):
    daemon = await start_daemon()
    c = DaemonClient(daemon.address)
    await c.connect()
    pending = asyncio.create_task(c.infill(infill("lost", max_steps=1000, lengths=(32,))))
    await asyncio.sleep(0.2)
    await daemon.stop()
    with pytest.raises(Unavailable):
        await asyncio.wait_for(pending, 10)
    assert not c.connected and auth.read_state(daemon.port) is None
    with pytest.raises(Unavailable):
        await DaemonClient(daemon.address).connect()
    await c.close()


# -- the command line, end to end ------------------------------------------------------------------------------------
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


async def test_ensure_daemon_starts_one_and_the_cli_queries_and_stops_it(tiny_model_dir, runtime_dir, run_cli,
                                                                          monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the daemon child never touches the network either
    port = free_port()
    address = f"ws://127.0.0.1:{port}"
    auth.write_state(port, {"pid": _dead_pid(), "address": address})  # a stale state file from a crash
    proc = run_cli("daemon", "status", "--port", str(port))
    assert proc.returncode == 4 and f"no daemon on {address}" in proc.stderr and proc.stdout == ""

    c = await ensure_daemon(address, model=str(tiny_model_dir), extra_args=["--host", "0.0.0.0"], timeout=90)
    try:
        result = await c.infill(infill("e2e"))
        assert result.model == str(tiny_model_dir)
        log = auth.log_path(port).read_text()
        assert "warning: binding 0.0.0.0" in log
        proc = run_cli("daemon", "status", "--port", str(port))
        assert proc.returncode == 0, proc.stderr
        status = json.loads(proc.stdout)
        assert status["type"] == "status" and status["served"] == 1 and status["model"] == str(tiny_model_dir)
        pid = status["pid"]
        assert auth.read_state(port)["pid"] == pid != os.getpid()
        again = await ensure_daemon(address, timeout=5)  # already running: connects, starts nothing
        assert (await again.status()).pid == pid
        await again.close()
    finally:
        await c.close()
        proc = run_cli("daemon", "stop", "--port", str(port))
    assert proc.returncode == 0, proc.stderr
    assert not pid_alive(pid) and auth.read_state(port) is None
    assert "stopped after" in auth.log_path(port).read_text()


# -- infill daemon status: what is (not) on the port -------------------------------------------------------------
class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no access log on the test's stderr
        pass


def test_status_tells_no_daemon_from_something_else(runtime_dir, capsys):
    from infill import cli as cli_module

    port = free_port()
    assert cli_module.main(["daemon", "status", "--port", str(port)]) == 4
    err = capsys.readouterr().err
    assert f"no daemon on ws://127.0.0.1:{port}" in err and "token" not in err
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert cli_module.main(["daemon", "status", "--port", str(server.server_port)]) == 5
    finally:
        server.shutdown()
        server.server_close()
    err = capsys.readouterr().err
    assert f"something else is listening on ws://127.0.0.1:{server.server_port}" in err and err.count("\n") == 1


async def test_status_of_a_daemon_that_refuses_us_says_what_was_sent(daemon, run_cli):
    auth.token_path().unlink()  # a daemon of another user, say: we have no token file
    proc = await asyncio.to_thread(run_cli, "daemon", "status", "--port", str(daemon.port))
    assert proc.returncode == 5 and f"no token (there is no {auth.token_path()})" in proc.stderr, proc.stderr
