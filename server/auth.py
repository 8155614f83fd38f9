"""The daemon's per-user files: the access token, and a small state file that says where a daemon runs.

    $XDG_RUNTIME_DIR/infill/          (else ~/.cache/infill/), mode 0700
        token                         a random secret, mode 0600; clients send it as `Authorization: Bearer ...`
        daemon-8977.json              {"address", "pid", "model", ...} of the daemon on port 8977
        daemon-8977.log               output of a daemon that `ensure_daemon` started in the background

The token keeps other local users (and web pages that reach 127.0.0.1) away from the model: anyone who can
read the file can use the daemon, so a file with looser permissions than 0600 is refused, not repaired.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import stat
from pathlib import Path

from infill.errors import BadInputError


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) stays on this machine; binding or dialing elsewhere needs consent."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

APP_DIR = "infill"
TOKEN_FILE = "token"
TOKEN_BYTES = 32  # secrets.token_urlsafe(32): 43 characters, 256 bits


class TokenFileError(BadInputError):
    """The token file is unsafe (readable by others, owned by someone else) or unreadable."""


def runtime_dir() -> Path:
    """$XDG_RUNTIME_DIR/infill when that is set (a per-user tmpfs on most Linux desktops), else ~/.cache/infill."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    return (Path(base) if base else Path.home() / ".cache") / APP_DIR


def token_path() -> Path:
    return runtime_dir() / TOKEN_FILE


def _ensure_dir() -> Path:
    path = runtime_dir()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def _check_private(path: Path) -> None:
    """Refuse a token file that others can read or write, or that belongs to another user."""
    st = path.stat()
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise TokenFileError(f"token file {path} belongs to another user (uid {st.st_uid}); remove it and restart")
    loose = stat.S_IMODE(st.st_mode) & 0o077
    if loose:
        raise TokenFileError(f"token file {path} has mode {stat.S_IMODE(st.st_mode):04o}: other users could read "
                             f"it and use the daemon. Fix it with `chmod 600 {path}` (or delete it for a new token)")


def load_or_create_token() -> str:
    """The daemon's token: created at first start (mode 0600, never rewritten), checked on every start."""
    path = token_path()
    _ensure_dir()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # O_EXCL: two starting daemons agree
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(TOKEN_BYTES) + "\n")
    _check_private(path)
    token = path.read_text().strip()
    if not token:
        raise TokenFileError(f"token file {path} is empty; delete it and restart the daemon for a new token")
    return token


def read_token() -> str | None:
    """The token for clients, or None when no daemon has created one yet."""
    try:
        return token_path().read_text().strip() or None
    except FileNotFoundError:
        return None


# -- the state file ------------------------------------------------------------------------------------------
def state_path(port: int) -> Path:
    return runtime_dir() / f"daemon-{port}.json"


def log_path(port: int) -> Path:
    return runtime_dir() / f"daemon-{port}.log"


def write_state(port: int, state: dict) -> Path:
    """Write the state file atomically (a reader never sees half of it)."""
    path = state_path(port)
    _ensure_dir()
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(state, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def read_state(port: int) -> dict | None:
    """The state of the daemon on `port`, or None when there is no (readable) state file."""
    try:
        state = json.loads(state_path(port).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def remove_state(port: int, pid: int | None = None) -> None:
    """Remove the state file; with `pid`, only when it still names that process (not a newer daemon's)."""
    state = read_state(port)
    if pid is not None and state is not None and state.get("pid") != pid:
        return
    with contextlib.suppress(FileNotFoundError):
        state_path(port).unlink()
