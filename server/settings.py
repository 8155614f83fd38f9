"""The language server's settings: section "infill" of `initializationOptions` and `workspace/didChangeConfiguration`.

    {
      "model": "/path/to/checkpoint",        # default: $INFILL_MODEL, then the bundled model
      "daemon": "ws://127.0.0.1:8977",       # the model daemon's address
      "debounce": 150,                       # ms to wait for more keystrokes before asking the model
      "quality": "fast",                     # as-you-type completions: fast | balanced | thinking
      "actionQuality": "balanced",           # "Fix this block", "Fill selection", infill.fillRange
      "enable": {"markdown": false},         # per LSP languageId; "*" is the default for the others
      "maxSteps": 8,                         # cap on denoising steps (also max_steps)
      "lengths": [8, 16],                    # candidate canvas lengths in tokens (tests, benchmarks)
      "deadline": 5000,                      # ms after which a request gives up (0: none)
      "seed": 0,                             # deterministic sampling
      "formattingOptions": {"tabSize": 4, "insertSpaces": true}   # else detected per document
    }

Later sources win: defaults < command line < initializationOptions < didChangeConfiguration. A value of the
wrong type is reported and ignored; the other values still apply.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from infill.quality import DEFAULTS, NAMES

from .postprocess import Formatting

DEFAULT_DAEMON = "ws://127.0.0.1:8977"
SECTION = "infill"


@dataclass(frozen=True)
class Settings:
    model: str | None = None  # None: $INFILL_MODEL, then the bundled model
    daemon: str = DEFAULT_DAEMON  # websocket address of the model daemon
    debounce_ms: int = 150  # completion requests within this window supersede the earlier ones
    quality: str = DEFAULTS.typing  # preset of as-you-type suggestions (infill.quality says why)
    action_quality: str = DEFAULTS.action  # preset of code actions and infill.fillRange
    enable: Mapping[str, bool] = field(default_factory=dict)  # languageId -> on/off; "*": the rest
    max_steps: int | None = None  # denoising step cap; None: the quality preset's
    lengths: tuple[int, ...] | None = None  # candidate canvas lengths; None: the span sizer's
    deadline_ms: int | None = 10_000  # give up on a request after this long
    seed: int | None = None  # deterministic sampling
    formatting: Formatting | None = None  # the client's tabs/spaces; None: detected per document

    def enabled(self, language_id: str) -> bool:
        return bool(self.enable.get(language_id, self.enable.get("*", True)))

    @property
    def resolved_model(self) -> str | None:
        return self.model or os.environ.get("INFILL_MODEL") or None

    def merged(self, raw: Any) -> tuple[Settings, list[str]]:
        """These settings updated from a client's JSON object; returns (settings, problems found)."""
        problems: list[str] = []
        if raw is None:
            return self, problems
        if not isinstance(raw, Mapping):
            return self, [f"settings must be an object, not {type(raw).__name__}"]
        if isinstance(raw.get(SECTION), Mapping):
            raw = raw[SECTION]
        changes: dict[str, Any] = {}
        for key, value in raw.items():
            parser = _FIELDS.get(key)
            if parser is None:
                problems.append(f"unknown setting {key!r} (known: {', '.join(sorted(_FIELDS))})")
                continue
            name, parse = parser
            try:
                changes[name] = parse(value)
            except (TypeError, ValueError) as exc:
                problems.append(f"setting {key!r}: {exc}")
        return replace(self, **changes), problems


def _opt_str(v: Any) -> str | None:
    if v is None or v == "":
        return None
    if not isinstance(v, str):
        raise TypeError(f"expected a string, got {v!r}")
    return v


def _address(v: Any) -> str:
    s = _opt_str(v)
    if s is None:
        return DEFAULT_DAEMON
    if not s.startswith(("ws://", "wss://")):
        raise ValueError(f"expected a ws:// address, got {s!r}")
    return s


def _int_in(lo: int, hi: int, optional: bool = False, zero_is_none: bool = False):
    def parse(v: Any) -> int | None:
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or not lo <= v <= hi:
            raise ValueError(f"expected an integer in {lo}..{hi}, got {v!r}")
        return None if zero_is_none and v == 0 else int(v)

    return parse


def _quality(v: Any) -> str:
    if v not in NAMES:
        raise ValueError(f"expected one of {', '.join(NAMES)}, got {v!r}")
    return v


def _enable(v: Any) -> dict[str, bool]:
    if isinstance(v, bool):
        return {"*": v}
    if not isinstance(v, Mapping) or not all(isinstance(k, str) and isinstance(b, bool) for k, b in v.items()):
        raise ValueError(f"expected {{languageId: true|false}}, got {v!r}")
    return dict(v)


def _lengths(v: Any) -> tuple[int, ...] | None:
    if v is None:
        return None
    if not isinstance(v, list) or not 0 < len(v) <= 8:
        raise ValueError(f"expected 1-8 token counts, got {v!r}")
    return tuple(_int_in(1, 1024)(n) for n in v)  # type: ignore[misc]


def _formatting(v: Any) -> Formatting | None:
    if v is None:
        return None
    if not isinstance(v, Mapping):
        raise ValueError(f"expected {{tabSize, insertSpaces}}, got {v!r}")
    tab = _int_in(1, 16)(v.get("tabSize", v.get("tab_size", 4)))
    spaces = v.get("insertSpaces", v.get("insert_spaces"))
    if spaces is not None and not isinstance(spaces, bool):
        raise ValueError(f"insertSpaces must be true or false, got {spaces!r}")
    return Formatting(tab_size=tab, insert_spaces=spaces)  # type: ignore[arg-type]


_FIELDS: dict[str, tuple[str, Any]] = {
    "model": ("model", _opt_str),
    "daemon": ("daemon", _address),
    "debounce": ("debounce_ms", _int_in(0, 10_000)),
    "quality": ("quality", _quality),
    "actionQuality": ("action_quality", _quality),
    "enable": ("enable", _enable),
    "maxSteps": ("max_steps", _int_in(1, 1024, optional=True)),
    "max_steps": ("max_steps", _int_in(1, 1024, optional=True)),
    "lengths": ("lengths", _lengths),
    "deadline": ("deadline_ms", _int_in(0, 3_600_000, optional=True, zero_is_none=True)),
    "seed": ("seed", _int_in(0, 2**63 - 1, optional=True)),
    "formattingOptions": ("formatting", _formatting),
}
