"""What the language server, the daemon and the editor clients must agree on, defined once.

    SECTION, STATUS, FILL_RANGE     the settings section and the custom LSP request and command
    STATE, STATES                   the notification the server pushes when its state changes, and the states
    DEFAULT_HOST, DEFAULT_PORT      where the daemon listens, and DEFAULT_ADDRESS, where clients look for it
    LIMITS                          bounds on what a client may ask for, checked by the protocol and the settings

The settings themselves (keys, types, defaults) are `server.settings.SETTINGS`. The editor clients are
written in other languages and cannot import this module: tests/test_contract.py reads
vscode-extension/package.json, the extension's TypeScript and the Neovim plugin's Lua and fails when
they drift from it. Plain constants only, so that `infill --help` can import it.
"""

from __future__ import annotations

from dataclasses import dataclass

SECTION = "infill"  # settings section: initializationOptions, workspace/configuration, didChangeConfiguration
STATUS = "infill/status"  # custom request: counters, the model service's state, the settings in force
FILL_RANGE = "infill.fillRange"  # workspace/executeCommand [uri, range]: regenerate the range and apply it
STATE = "infill/state"  # server -> client notification: {state, message, model, setting?} (server.notices)

# The states of `STATE` and of infill/status's "state" (what each means: server.notices). Clients render them.
STATES = ("starting", "loading", "ready", "slow", "refused", "unavailable", "failed")

DEFAULT_HOST = "127.0.0.1"  # the daemon binds loopback unless `infill daemon --host` says otherwise
DEFAULT_PORT = 8977  # the daemon's port; `infill lsp` looks there and starts a daemon when none answers


def ws_address(host: str, port: int) -> str:
    """The websocket address of a daemon on host:port (IPv6 hosts in brackets)."""
    return f"ws://[{host}]:{port}" if ":" in host else f"ws://{host}:{port}"


DEFAULT_ADDRESS = ws_address(DEFAULT_HOST, DEFAULT_PORT)


@dataclass(frozen=True)
class Limits:
    """Largest values a client may send, for the daemon's messages and the language server's settings alike."""

    max_steps: int = 1024  # denoising steps of one request
    lengths: int = 8  # candidate canvas lengths of one request (each one is a canvas row)
    length: int = 1024  # tokens of one candidate canvas
    deadline_ms: int = 3_600_000  # an hour: anything longer is no deadline
    seed: int = 2**63 - 1  # torch generators take 64-bit seeds
    debounce_ms: int = 10_000  # longer would read as a server that never answers
    idle_exit: int = 7 * 24 * 3600  # seconds without a connection before a daemon started for an editor exits
    tab_size: int = 16  # widest tab the formatting options may ask for


LIMITS = Limits()
