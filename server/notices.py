"""What the language server tells the user about its state, defined once for every editor.

    state        when                                                        what the message offers
    starting     connecting to the model daemon, or starting one
    loading      the model loads (in the daemon or in this process)
    ready        suggestions are served
    slow         an as-you-type request ran past the `deadline` setting        the setting to raise
    refused      the daemon at the address refused our token, or it is         the fix: another address, or
                 another version of infill                                      stopping that daemon
    unavailable  the daemon went away; the server reconnects
    failed       the model did not load                                        the error

`StateBoard` holds the current `Notice` and publishes each change (the language server sends it as the
`infill/state` notification, server.contract.STATE, and answers it in infill/status). Clients only render it:
VS Code's status-bar item and a warning with an "Open setting" button, Neovim's echo, vim.notify and
`require("infill").statusline()`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import infill

from .contract import DEFAULT_PORT, STATES

log = logging.getLogger(__name__)

STARTING, LOADING, READY, SLOW, REFUSED, UNAVAILABLE, FAILED = STATES
WARN = (SLOW, REFUSED, FAILED)  # states that need the user: clients warn, the server logs them


@dataclass(frozen=True)
class Notice:
    state: str = STARTING
    message: str = "starting"  # one line for people, the fix included
    model: str = ""  # the model's display name (model_name), once known
    setting: str | None = None  # the setting (JSON key) that fixes it, for an "Open setting" button

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


class StateBoard:
    """The current notice; `publish` is called (on the event loop's thread) whenever it changes."""

    def __init__(self, publish: Callable[[Notice], None] | None = None) -> None:
        self.notice = Notice()
        self.publish = publish or (lambda notice: None)

    @property
    def state(self) -> str:
        return self.notice.state

    def set(self, state: str, message: str, setting: str | None = None, model: str | None = None) -> None:
        assert state in STATES, state
        new = replace(self.notice, state=state, message=message, setting=setting,
                      model=self.notice.model if model is None else model)
        if new != self.notice:
            self.notice = new
            log.debug("state: %s: %s", state, message)
            self.publish(new)


# -- the messages ------------------------------------------------------------------------------------------------
def loading(model: str) -> str:
    return f"loading {model}…"


def ready(model: str) -> str:
    return f"ready: {model}"


def slow(deadline_ms: int) -> str:
    return (f"suggestions take longer than the deadline of {deadline_ms} ms on this machine, so none is shown: "
            "raise the `deadline` setting (0: no deadline), or use quality `fast` or a smaller model")


def refused_token(address: str) -> str:
    return (f"the daemon at {address} refused this user's token: it is another user's daemon (or one started "
            f"with another token file). Set the `daemon` setting to a free address such as {_next_address(address)}, "
            "or stop that daemon")


def other_version(address: str, theirs: str) -> str:
    port = urlsplit(address).port or DEFAULT_PORT
    return (f"the daemon at {address} is another version of infill ({theirs}): stop it with `infill daemon stop "
            f"--port {port}` so that this editor starts its own, or set the `daemon` setting to another address")


def deadline_passed(deadline_ms: int) -> str:
    return f"no result within the deadline of {deadline_ms} ms: raise the `deadline` setting (0: no deadline)"


def starting(address: str) -> str:
    return f"starting the model daemon at {address}…"


def unavailable(address: str, why: str) -> str:
    return f"no model daemon at {address} ({why}); suggestions are off until it is back"


def failed(error: str) -> str:
    return f"the model did not load: {error}"


def _next_address(address: str) -> str:
    parts = urlsplit(address)
    host = parts.hostname or "127.0.0.1"
    return f"{parts.scheme or 'ws'}://{host}:{(parts.port or DEFAULT_PORT) + 1}"


# -- the model's name --------------------------------------------------------------------------------------------
# infill.models.presets.WEIGHTS_DIR, without importing infill.models (and torch with it)
BUNDLED = Path(infill.__file__).resolve().parent / "weights"


def model_name(model_id: str | None, parameters: int | None = None) -> str:
    """A name for people: a hub id's last part; for a checkpoint directory, its architecture from config.json and
    its size ("DiffusionGemma 18.5M"), "(bundled)" for the model shipped in infill/weights. None: the bundled
    model. Reads one small file; no torch."""
    path = Path(model_id) if model_id else BUNDLED
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return path.name or model_id
    name = config.get("name") if isinstance(config.get("name"), str) else None
    if not name:
        archs = config.get("architectures") or []
        arch = archs[0] if archs and isinstance(archs[0], str) else str(config.get("model_type", path.name))
        name = arch.split("For", 1)[0] if "For" in arch[1:] else arch
        if parameters:
            name += f" {_size(parameters)}"
    if path.resolve() == BUNDLED:
        name += " (bundled)"
    return name


def _size(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)
