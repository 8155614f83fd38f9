"""The language server and the daemon it talks to, as an editor user meets them: the first request, made while the
daemon starts and loads, is answered; the state the server pushes (infill/state) for loading, a daemon that refuses
our token or is another version, suggestions slower than the deadline; the model's name; a daemon the server started
exits when no editor is left, and the next editor starts it again. Real `infill lsp` over stdio, real daemons on
loopback ports, the tiny random checkpoint; $XDG_RUNTIME_DIR is a tmp dir per test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import cli_env
from daemon_helpers import DaemonProcess, free_port
from lsprotocol import types as T
from test_lsp import FAST, PY, end_of, inline, open_doc, start_server, status, stop_server

from infill.files import pid_alive
from server import auth


def runtime_env(model: Path, runtime: Path) -> dict[str, str]:
    env = cli_env(model)
    env["XDG_RUNTIME_DIR"] = str(runtime)
    return env


async def wait_for(what: str, probe, timeout: float = 60) -> Any:
    """Until `probe()` (a function, or an async one) gives a true value; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        await asyncio.sleep(0.1)


def first_state(client, state: str):
    return lambda: next((s for s in client.states if s["state"] == state), None)


def states(client) -> list[str]:
    return [s["state"] for s in client.states]


@contextlib.contextmanager
def runtime_of(env: dict[str, str]):
    """This process's $XDG_RUNTIME_DIR set to the daemon's, to read its token and state files."""
    old = os.environ.get("XDG_RUNTIME_DIR")
    os.environ["XDG_RUNTIME_DIR"] = env["XDG_RUNTIME_DIR"]
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("XDG_RUNTIME_DIR", None)
        else:
            os.environ["XDG_RUNTIME_DIR"] = old


async def test_the_first_request_is_answered_while_the_daemon_starts_and_the_daemon_exits_when_idle(
        tiny_model_dir, tmp_path):
    """No daemon runs. The editor's first request arrives while `infill lsp` starts one and its model loads; with a
    deadline far shorter than that, it used to come back empty and was never asked again (issue 17). The daemon
    (started with the daemonIdleExit setting) stops once the editor has gone, while one started by hand stays;
    the next editor starts it again. The address comes from the editor's settings, and the log names it."""
    env = runtime_env(tiny_model_dir, tmp_path / "run")
    by_hand = DaemonProcess(tiny_model_dir, tmp_path / "run").start()  # no --idle-exit
    while (port := free_port()) == by_hand.port:
        pass
    address = f"ws://127.0.0.1:{port}"
    idle = 2
    settings = {**FAST, "deadline": 500, "daemon": address, "daemonIdleExit": idle}
    try:
        client = await start_server([], env, settings)
        try:
            uri = open_doc(client, "first.py", PY)
            pos = end_of(PY, "total = ")
            first = asyncio.ensure_future(inline(client, uri, pos))
            state_then = await status(client)
            result = await asyncio.wait_for(first, 120)
            assert len(result.items) == 1 and result.items[0].insert_text.strip()
            assert state_then.state.state in ("starting", "loading"), state_then  # asked before it was ready
            assert states(client)[-1] == "ready" and {"starting", "loading"} & set(states(client)), states(client)
            named = await wait_for("the model's name", lambda: client.states[-1]["model"].startswith("DiffusionGemma "))
            assert named and "tiny-model" not in client.states[-1]["model"]  # from config.json, not the folder
            messages = [m.message for m in client.log_messages]
            assert any(f"daemon at {address}" in m for m in messages)
            assert not any("8977" in m for m in messages), messages  # the default address is never named
            with runtime_of(env):
                pid = auth.read_state(port)["pid"]
            assert (await status(client)).backend.daemon_pid == pid
            by_hand.wait_ready()
            async with by_hand.client() as c:  # a client comes and goes: the hand-started daemon has no idle exit
                assert (await c.status()).extra["idle_exit"] is None
        finally:
            await stop_server(client)
        gone = time.monotonic()
        await wait_for("the daemon to exit once idle", lambda: not pid_alive(pid), timeout=60)
        waited = time.monotonic() - gone
        assert waited >= idle * 0.9, f"it exited {waited:.1f} s after the editor left, before its idle time {idle} s"
        assert by_hand.alive(), "the daemon started by hand exited too"
        assert f"no connection for {idle} s" in auth_log(env, port)
        by_hand.stop()

        client = await start_server([], env, settings)  # the next editor starts it again
        try:
            uri = open_doc(client, "again.py", PY)
            result = await asyncio.wait_for(inline(client, uri, end_of(PY, "total = ")), 120)
            assert len(result.items) == 1
            with runtime_of(env):
                assert auth.read_state(port)["pid"] not in (pid, None)
        finally:
            await stop_server(client)
    finally:  # also when an assertion failed: no daemon of this test outlives it
        by_hand.stop()
        subprocess.run([sys.executable, "-m", "infill", "daemon", "stop", "--port", str(port)], env=env,
                       capture_output=True, timeout=60)


def auth_log(env: dict[str, str], port: int) -> str:
    with runtime_of(env):
        return auth.log_path(port).read_text()


async def test_a_daemon_that_refuses_our_token_is_named_with_the_fix(tiny_model_dir, tmp_path):
    """Another user's daemon on the address: HTTP 401. The user used to see nothing but empty suggestions."""
    other = DaemonProcess(tiny_model_dir, tmp_path / "other-user").start()  # its own token file
    try:
        other.wait_ready()
        env = runtime_env(tiny_model_dir, tmp_path / "me")
        client = await start_server(["--daemon", other.address], env, FAST)
        try:
            refused = await wait_for("the refused state", first_state(client, "refused"), timeout=30)
            assert other.address in refused["message"] and "another user's daemon" in refused["message"]
            assert f"ws://127.0.0.1:{other.port + 1}" in refused["message"] and refused["setting"] == "daemon"
            uri = open_doc(client, "refused.py", PY)
            assert (await inline(client, uri, end_of(PY, "total = "))).items == ()
        finally:
            await stop_server(client)
    finally:
        other.stop()


async def test_a_daemon_of_another_version_is_named_with_the_fix(tiny_engine, tiny_model_dir, tmp_path,
                                                                 monkeypatch):
    """A daemon that speaks another protocol version (here a real daemon in this process, told it is version 1)."""
    from server import daemon as daemon_module
    from server.daemon import Daemon, DaemonConfig

    env = runtime_env(tiny_model_dir, tmp_path / "run")
    monkeypatch.setenv("XDG_RUNTIME_DIR", env["XDG_RUNTIME_DIR"])  # the token the language server reads too
    monkeypatch.setattr(daemon_module, "PROTOCOL_VERSION", 1)
    old = Daemon(tiny_engine, DaemonConfig(port=0))
    await old.start()
    await old.ready()
    client = await start_server(["--daemon", old.address], env, FAST)
    try:
        notice = await wait_for("the refused state", first_state(client, "refused"), timeout=30)
        assert "another version of infill (version 0.1.0, protocol 1)" in notice["message"]
        assert f"infill daemon stop --port {old.port}" in notice["message"]
    finally:
        await stop_server(client)
        await old.stop()


async def test_suggestions_slower_than_the_deadline_say_so_and_which_setting_helps(tiny_model_dir, tmp_path):
    daemon = DaemonProcess(tiny_model_dir, tmp_path / "run").start()
    try:
        daemon.wait_ready()
        env = runtime_env(tiny_model_dir, tmp_path / "run")
        client = await start_server(["--daemon", daemon.address], env, {**FAST, "maxSteps": 1024, "lengths": [64]})
        try:
            await wait_for("ready", first_state(client, "ready"), timeout=30)
            uri = open_doc(client, "slow.py", PY)
            pos = end_of(PY, "total = ")
            client.workspace_did_change_configuration(T.DidChangeConfigurationParams(settings={"infill": {
                **FAST, "maxSteps": 1024, "lengths": [64], "deadline": 200}}))
            assert (await inline(client, uri, pos)).items == ()
            slow = client.states[-1]
            assert slow["state"] == "slow" and slow["setting"] == "deadline" and "200 ms" in slow["message"]
            assert (await status(client)).state.state == "slow"
            client.workspace_did_change_configuration(T.DidChangeConfigurationParams(settings={"infill": FAST}))
            assert len((await inline(client, uri, T.Position(0, 4))).items) == 1
            assert client.states[-1]["state"] == "ready"
        finally:
            await stop_server(client)
    finally:
        daemon.stop()


def test_warnings_reach_the_client_once_not_also_on_stderr(tiny_model_dir, tmp_path):
    """Editors show a server's stderr in the same log as its window/logMessage: VS Code listed every warning twice
    ([error] from stderr, [warning] from the message). A bad setting is the warning here."""
    env = cli_env(tiny_model_dir)
    proc = subprocess.Popen([sys.executable, "-m", "infill", "lsp", "--embedded"], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        send(proc, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "processId": None, "rootUri": None, "capabilities": {}, "initializationOptions": {"colour": "blue"}}})
        seen = []
        while not any(m.get("id") == 1 for m in seen):
            seen.append(receive(proc))
        logged = [m["params"]["message"] for m in seen if m.get("method") == "window/logMessage"]
        assert any("unknown setting 'colour'" in m for m in logged), seen
        send(proc, {"jsonrpc": "2.0", "id": 2, "method": "shutdown"})
        send(proc, {"jsonrpc": "2.0", "method": "exit"})
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "colour" not in err.decode(), err.decode()


def send(proc: subprocess.Popen, message: dict) -> None:
    body = json.dumps(message).encode()
    proc.stdin.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    proc.stdin.flush()


def receive(proc: subprocess.Popen) -> dict:
    length = 0
    while (line := proc.stdout.readline().strip()):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return json.loads(proc.stdout.read(length))


@pytest.fixture(autouse=True)
def _no_user_daemon_files(monkeypatch, tmp_path):
    """Nothing here reads or writes the user's own token or state files."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
