"""A real `infill daemon` (subprocess, tiny model) fuzzed over a real websocket.

Every frame is followed by a status request (a fence): what comes back before the fence must be exactly what
`server.protocol.parse` says the frame deserves (tests/reliability/frames.py) — an error with the right code
and id, a status, a result — or, for the frames websockets itself refuses (invalid UTF-8 in a text frame,
over the size limit), a closed connection with the right close code. After every frame the process must be
alive; every few frames a separate, well-behaved client must get a completion. Disconnects cut a valid session
(handshake, then a streaming request) after any number of bytes, with a FIN or a RST; afterwards the daemon
holds no connection, queued or running request from them.

Malformed frames that test_daemon.py already sends one by one (each kind once) are part of the mix here.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import struct
import time

import pytest
from daemon_helpers import DaemonProcess
from hypothesis import given
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from server.daemon import MAX_FRAME_BYTES
from server.protocol import MAX_MESSAGE_BYTES, ErrorCode, InfillMessage

from .conftest import examples
from .frames import DOC, Frame, any_frame, verdict

HEALTH_EVERY = 20  # frames between two checks with a separate, well-behaved client
FENCE = json.dumps({"type": "status"})


def open_ws(daemon: DaemonProcess) -> ClientConnection:
    return connect(daemon.address, additional_headers={"Authorization": f"Bearer {daemon.token}"}, max_size=None,
                   compression=None, proxy=None, open_timeout=20, legacy=True)  # legacy: no `with` needed


def well_behaved_request(daemon: DaemonProcess, rid: str = "health") -> dict:
    """A separate client's completion, start to end; the reply."""
    with open_ws(daemon) as ws:
        ws.send(InfillMessage(id=rid, text=DOC, cursor=len("def f(a):\n    return "), max_steps=1, lengths=(4,),
                              seed=0).to_json())
        while (reply := json.loads(ws.recv(timeout=60)))["type"] == "progress":
            pass
    assert (reply["type"], reply["id"]) == ("result", rid), reply
    return reply


def status(ws: ClientConnection) -> dict:
    ws.send(FENCE)
    while (reply := json.loads(ws.recv(timeout=30)))["type"] != "status":
        pass
    return reply


class Prober:
    """One connection that sends frames and checks the replies, reconnecting after an expected close."""

    def __init__(self, daemon: DaemonProcess) -> None:
        self.daemon = daemon
        self.ws = open_ws(daemon)
        self.frames = 0
        self.outcomes: dict[str, int] = {}
        self.protocol_errors = 0  # frames the daemon must count as bad_frames

    def close(self) -> None:
        self.ws.close()

    def send(self, frame: Frame) -> str:
        self.frames += 1
        outcome = self._exchange(frame)
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        assert self.daemon.alive(), f"the daemon died on {frame!r:.300}: {self.daemon.log()[-3000:]}"
        if self.frames % HEALTH_EVERY == 0:
            well_behaved_request(self.daemon, f"health-{self.frames}")
        return outcome

    def _exchange(self, frame: Frame) -> str:
        data = frame.data
        if isinstance(data, bytes) and not frame.binary:  # bytes in a text frame: websockets checks the UTF-8
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError:
                return self._expect_close(frame, 1007)
        size = len(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
        if size > MAX_FRAME_BYTES:
            return self._expect_close(frame, 1009)
        expected = verdict(Frame(frame.category, data, frame.binary, frame.code, frame.request_id))
        self.ws.send(data)  # bytes left here go in a binary frame
        self.ws.send(FENCE)
        replies = []
        fenced = False
        done = expected.type != "infill"  # an infill request answers after the fence, maybe
        while not (fenced and done):
            reply = json.loads(self.ws.recv(timeout=60))
            if expected.type == "infill" and reply.get("id") == expected.request_id:
                if reply["type"] == "progress":
                    continue
                assert reply["type"] == "result" or reply.get("code") == ErrorCode.BAD_INPUT, reply
                done = True
            elif reply["type"] == "status" and not (expected.type == "status" and not replies):
                fenced = True
            else:
                assert not fenced, f"a reply after the fence: {reply}"
                replies.append(reply)
        if expected.type == "error":
            self.protocol_errors += 1
            assert [(r["type"], r["code"], r["id"]) for r in replies] == [
                ("error", expected.code, expected.request_id)], (replies, frame)
            return f"error:{expected.code}"
        if expected.type == "status":
            assert [r["type"] for r in replies] == ["status"], replies
        else:
            assert replies == [], (replies, frame)
        return expected.type

    def _expect_close(self, frame: Frame, code: int) -> str:
        with pytest.raises(ConnectionClosed) as closed:
            self.ws.send(frame.data, text=not frame.binary)
            self.ws.send(FENCE)
            while True:
                self.ws.recv(timeout=30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == code, closed.value
        self.ws = open_ws(self.daemon)
        return f"closed:{code}"


@pytest.fixture(scope="module")
def prober(daemon_proc):
    p = Prober(daemon_proc)
    p.bad_frames_before = status(p.ws)["extra"]["bad_frames"]
    yield p
    p.close()


@examples(300)
@given(frame=any_frame)
def test_every_frame_gets_its_answer_and_the_daemon_keeps_serving(prober, frame, figures):
    outcome = prober.send(frame)
    figures.count("daemon_fuzz", "inputs")
    figures.count("daemon_fuzz", frame.category)
    figures.count("daemon_fuzz_outcomes", outcome)


def test_oversized_frames(prober, figures):
    """Between the protocol's limit and the websocket's: a too_large error, the connection stays; over the
    websocket's: closed with 1009, whatever the frame type."""
    pad = MAX_MESSAGE_BYTES + 1000 - 40
    text = '{"type": "status", "pad": "' + "x" * pad + '"}'
    assert MAX_MESSAGE_BYTES < len(text) < MAX_FRAME_BYTES
    cases = [Frame("oversized", text), Frame("oversized", text.encode(), binary=True),
             Frame("oversized", "x" * (MAX_FRAME_BYTES + 1)), Frame("oversized", b"\0" * (MAX_FRAME_BYTES + 1), True)]
    outcomes = [prober.send(frame) for frame in cases]
    assert outcomes == ["error:too_large", "error:too_large", "closed:1009", "closed:1009"]
    figures.count("daemon_fuzz", "inputs", len(cases))
    figures.count("daemon_fuzz", "oversized", len(cases))


# -- disconnects ----------------------------------------------------------------------------------------------------
def ws_frame(payload: bytes, opcode: int = 1) -> bytes:
    """A masked client frame (RFC 6455 5.2), FIN set."""
    mask = b"\x5a\xa5\x3c\xc3"
    n = len(payload)
    length = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack("!H", n) if n < 65536 \
        else bytes([0x80 | 127]) + struct.pack("!Q", n)
    return bytes([0x80 | opcode]) + length + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def session_bytes(daemon: DaemonProcess) -> tuple[bytes, int]:
    """A whole valid session as the client sends it: the HTTP upgrade with the token, then a streaming request
    long enough to be cut while it runs. Returns (bytes, length of the handshake part)."""
    key = base64.b64encode(b"reliability-key!").decode()
    handshake = (f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{daemon.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                 f"Authorization: Bearer {daemon.token}\r\n\r\n").encode()
    request = InfillMessage(id="cut", text=DOC, cursor=len("def f(a):\n    return "), max_steps=200, lengths=(16,),
                            stream=True, deadline_ms=30_000).to_json().encode()
    return handshake + ws_frame(request), len(handshake)


def cut_session(daemon: DaemonProcess, data: bytes, handshake: int, cut: int, reset: bool, linger: bool,
                pause: float = 0) -> str:
    """Send the first `cut` bytes and drop the connection (RST or FIN); `linger`: first read what the daemon
    sends back (the 101, a draft of the running request); `pause`: then wait this long (seconds). Returns where
    the cut fell."""
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        sock.sendall(data[:cut])
        where = "before_connect" if cut == 0 else "mid_handshake" if cut < handshake else \
            "mid_frame" if cut < len(data) else "mid_request"
        if linger and cut >= handshake:
            deadline = time.monotonic() + 5
            seen = b""
            want = b"\r\n\r\n" if cut < len(data) else b'"progress"'
            while want not in seen and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    sock.settimeout(0.5)
                    seen += sock.recv(65536)
            assert want in seen, seen[:300]
        time.sleep(pause)
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return where


@pytest.mark.parametrize("part", ["handshake", "frame", "request"])  # where the cut falls
@examples(20)
@given(data=st.data(), reset=st.booleans(), linger=st.booleans())
def test_connections_dropped_at_any_byte(prober, daemon_proc, part, data, reset, linger, figures):
    session, handshake = session_bytes(daemon_proc)
    cut = len(session) if part == "request" else data.draw(
        st.integers(0, handshake - 1) if part == "handshake" else st.integers(handshake, len(session) - 1))
    pause = data.draw(st.integers(0, 150)) / 1000 if part == "request" else 0  # queued, running, finishing
    where = cut_session(daemon_proc, session, handshake, cut, reset, linger, pause)
    assert daemon_proc.alive(), daemon_proc.log()[-3000:]
    status(prober.ws)  # the daemon still answers on the other connection
    figures.count("daemon_fuzz", "inputs")
    figures.count("daemon_fuzz", "disconnects")
    figures.count("daemon_disconnects", where)


def test_afterwards_nothing_is_left_behind_and_every_bad_frame_was_counted(prober, daemon_proc, figures):
    """Runs after the fuzzing above (file order): the aborted connections are gone, their requests cancelled."""
    deadline = time.monotonic() + 30
    while True:
        s = status(prober.ws)
        if (s["queue"], s["running"], s["extra"]["connections"]) == (0, 0, 1):
            break
        assert time.monotonic() < deadline, f"left behind: {s}"
        time.sleep(0.2)
    assert s["extra"]["bad_frames"] - prober.bad_frames_before == prober.protocol_errors
    assert s["extra"]["worker_errors"] == 0
    well_behaved_request(daemon_proc, "last")
    log = daemon_proc.log()
    assert "Traceback" not in log and "connection handler failed" not in log, log[-3000:]
    figures.set("daemon_fuzz", "crashes", 0 if daemon_proc.alive() else 1)
    figures.set("daemon_fuzz", "health_checks", prober.frames // HEALTH_EVERY + 1)
    figures.set("daemon_fuzz", "daemon_bad_frames_counted", s["extra"]["bad_frames"] - prober.bad_frames_before)
    figures.set("daemon_fuzz", "daemon_cancelled", s["extra"]["cancelled"])
