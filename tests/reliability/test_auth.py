"""Who may use the daemon: only a client that sends `Authorization: Bearer <token>`.

Already in tests/test_daemon.py (one place per check): no token, a wrong token and the `Basic` scheme get 401
before any work (test_missing_or_wrong_token_gets_401_before_any_work); a token file of mode 0644 stops
`infill daemon` with a `chmod 600` hint (test_loose_token_file_is_refused_with_a_chmod_hint); 0.0.0.0 is
refused without the explicit flag (test_non_loopback_bind_needs_an_explicit_host). Here: every other way of
presenting the token, against the real daemon; the other loose modes and owners of the token file; the other
non-loopback addresses.
"""

from __future__ import annotations

import json
import os
import stat

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from infill.errors import BadInputError
from server import auth
from server.auth import is_loopback
from server.daemon import Daemon, DaemonConfig


def handshake(daemon_proc, headers=(), path: str = "/", subprotocols=None) -> int:
    """The HTTP status of a websocket handshake with these headers (101 when it is accepted)."""
    try:
        with connect(daemon_proc.address + path, additional_headers=list(headers), subprotocols=subprotocols,
                     proxy=None, open_timeout=20) as ws:
            ws.send('{"type": "status"}')
            assert json.loads(ws.recv(timeout=20))["type"] == "status"
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def refused_and_served(daemon_proc) -> tuple[int, int]:
    with connect(daemon_proc.address, additional_headers={"Authorization": f"Bearer {daemon_proc.token}"},
                 proxy=None) as ws:
        ws.send('{"type": "status"}')
        s = json.loads(ws.recv(timeout=20))
    return s["extra"]["refused_handshakes"], s["served"] + s["failed"]


def test_the_token_only_counts_in_the_bearer_header(daemon_proc, figures):
    token = daemon_proc.token
    refused = {
        "scheme only": [("Authorization", "Bearer")],
        "empty token": [("Authorization", "Bearer ")],
        "bare token": [("Authorization", token)],
        "other scheme": [("Authorization", f"Token {token}")],
        "token with a suffix": [("Authorization", f"Bearer {token}x")],
        "token prefix": [("Authorization", f"Bearer {token[:-1]}")],
        "token and more": [("Authorization", f"Bearer {token} {token}")],
        "other header": [("X-Infill-Token", token)],
        "cookie": [("Cookie", f"token={token}")],
        "proxy header": [("Proxy-Authorization", f"Bearer {token}")],
        "two Authorization headers": [("Authorization", "Bearer wrong"), ("Authorization", f"Bearer {token}")],
    }
    before, work = refused_and_served(daemon_proc)
    for name, headers in refused.items():
        assert handshake(daemon_proc, headers) == 401, name
    # what a web page can choose: the URL and the subprotocols (it cannot set Authorization)
    assert handshake(daemon_proc, path=f"/?token={token}") == 401
    assert handshake(daemon_proc, path=f"/{token}") == 401
    assert handshake(daemon_proc, subprotocols=[token]) == 401
    assert handshake(daemon_proc, [("Origin", "https://evil.example")], path=f"/?access_token={token}") == 401
    tried = len(refused) + 4
    after, work_after = refused_and_served(daemon_proc)
    assert (after - before, work_after) == (tried, work)  # refused in the handshake: no work done
    for scheme in ("Bearer", "bearer", "BEARER"):  # RFC 7235: the scheme is case-insensitive
        assert handshake(daemon_proc, [("Authorization", f"{scheme} {token}")]) == 101
    figures.count("auth", "refused_forms", tried)
    figures.count("auth", "accepted_forms", 3)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602, 0o660, 0o666, 0o700])
def test_a_token_file_others_can_read_or_write_is_refused_with_the_fix(tmp_path, monkeypatch, mode, figures):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    auth.load_or_create_token()
    path = auth.token_path()
    path.chmod(mode)
    if mode & 0o077:
        with pytest.raises(BadInputError, match=f"chmod 600 {path}"):
            auth.load_or_create_token()
    else:  # owner-only modes are fine (0700: executable, but nobody else can read it)
        auth.load_or_create_token()
    figures.count("auth", "token_file_modes", 1)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to give the file away")
def test_a_token_file_of_another_user_is_refused(tmp_path, monkeypatch, figures):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    auth.load_or_create_token()
    path = auth.token_path()
    os.chown(path, 65534, -1)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(BadInputError, match="belongs to another user"):
        auth.load_or_create_token()
    figures.count("auth", "token_file_owners", 1)


@pytest.mark.parametrize("host", ["::", "", "192.0.2.1", "10.0.0.1", "::ffff:127.0.0.1", "example.com",
                                  "localhost.example.com", "127.0.0.1 "])
async def test_non_loopback_addresses_need_the_explicit_flag(tiny_engine, tmp_path, monkeypatch, host, figures):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert not is_loopback(host)
    with pytest.raises(BadInputError, match="--host"):
        await Daemon(tiny_engine, DaemonConfig(host=host, port=0)).start()
    assert not (tmp_path / "infill").exists()  # refused before the token file or the socket
    figures.count("auth", "non_loopback_refused", 1)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "localhost"])
def test_loopback_addresses_are_loopback(host):
    assert is_loopback(host)
