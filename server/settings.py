"""The language server's settings, defined once: section "infill" of `initializationOptions`,
`workspace/configuration` and `workspace/didChangeConfiguration`.

    {
      "model": "/path/to/checkpoint",        # default: $INFILL_MODEL, then the bundled model
      "daemon": "ws://127.0.0.1:8977",       # the model daemon's address
      "daemonIdleExit": 300,                 # s without a connection before a daemon started here exits (0: never)
      "debounce": 150,                       # ms to wait for more keystrokes before asking the model
      "quality": "fast",                     # as-you-type completions: fast | balanced | thinking
      "actionQuality": "balanced",           # "Fix this block", "Fill selection", infill.fillRange
      "enable": {"markdown": false},         # per LSP languageId; "*" is the default for the others
      "maxSteps": 8,                         # cap on denoising steps (also max_steps)
      "lengths": [8, 16],                    # candidate canvas lengths in tokens (tests, benchmarks)
      "deadline": 5000,                      # ms after which a request gives up (0: none)
      "seed": 0,                             # the default: the same document gives the same suggestion
      "hideBroken": true,                    # no ghost text whose code does not parse (Python: compile)
      "formattingOptions": {"tabSize": 4, "insertSpaces": true}   # else detected per document
    }

`Settings` holds the values and their defaults; `SETTINGS` gives each JSON key its field and its type, which
parses a client's value and describes it as JSON schema. The VS Code extension declares the same keys, types,
bounds and defaults in package.json: tests/test_contract.py fails when the two drift.

Later sources win: defaults < command line < initializationOptions < didChangeConfiguration. A value of the
wrong type is reported and ignored; the other values still apply.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from infill.quality import DEFAULTS, NAMES
from infill.request import DEFAULT_SEED

from .contract import DEFAULT_ADDRESS, LIMITS, SECTION
from .postprocess import Formatting


@dataclass(frozen=True)
class Settings:
    model: str | None = None  # None: $INFILL_MODEL, then the bundled model
    daemon: str = DEFAULT_ADDRESS  # websocket address of the model daemon
    daemon_idle_exit: int | None = 300  # a daemon the server starts exits after this long without a connection
    debounce_ms: int = 150  # completion requests within this window supersede the earlier ones
    quality: str = DEFAULTS.typing  # preset of as-you-type suggestions (infill.quality says why)
    action_quality: str = DEFAULTS.action  # preset of code actions and infill.fillRange
    enable: Mapping[str, bool] = field(default_factory=dict)  # languageId -> on/off; "*": the rest
    max_steps: int | None = None  # denoising step cap; None: the quality preset's
    lengths: tuple[int, ...] | None = None  # candidate canvas lengths; None: the span sizer's
    deadline_ms: int | None = 10_000  # give up on a request after this long
    seed: int | None = DEFAULT_SEED  # the same document state gives the same suggestion; None: random
    formatting: Formatting | None = None  # the client's tabs/spaces; None: detected per document
    hide_broken: bool = True  # as-you-type suggestions the engine's checker rejects are not shown: with the
    #                           bundled model 21 of 36 keystrokes of a typed line got broken code (README)

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
            setting = SETTINGS.get(key)
            if setting is None:
                problems.append(f"unknown setting {key!r} (known: {', '.join(sorted(SETTINGS))})")
                continue
            try:
                changes[setting.field] = setting.type.parse(value)
            except (TypeError, ValueError) as exc:
                problems.append(f"setting {key!r}: {exc}")
        return replace(self, **changes), problems

    def to_json(self) -> dict[str, Any]:
        """The settings in force, under their JSON keys (for infill/status)."""
        out = {key: s.type.dump(getattr(self, s.field)) for key, s in SETTINGS.items() if s.declared}
        return out | {"model": self.resolved_model, "enable": dict(self.enable)}


# -- the types of setting values ---------------------------------------------------------------------------------
class SettingType:
    """Parses a client's value, describes itself as JSON schema, and writes a parsed value as a client would."""

    def parse(self, v: Any) -> Any:  # raises TypeError / ValueError with a message for the user
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:  # as package.json declares it, the default aside
        raise NotImplementedError

    def dump(self, value: Any) -> Any:
        return value


@dataclass(frozen=True)
class Text(SettingType):
    """A string; "" and null mean unset (None)."""

    def parse(self, v: Any) -> str | None:
        if v is None or v == "":
            return None
        if not isinstance(v, str):
            raise TypeError(f"expected a string, got {v!r}")
        return v

    def schema(self) -> dict[str, Any]:
        return {"type": "string"}

    def dump(self, value: str | None) -> str:
        return value or ""


@dataclass(frozen=True)
class Address(Text):
    """A websocket address; unset is the default address."""

    def parse(self, v: Any) -> str:
        s = super().parse(v)
        if s is None:
            return DEFAULT_ADDRESS
        if not s.startswith(("ws://", "wss://")):
            raise ValueError(f"expected a ws:// address, got {s!r}")
        return s


@dataclass(frozen=True)
class Integer(SettingType):
    """A whole number in lo..hi; `optional`: null is unset; `zero_is_none`: so is 0."""

    lo: int
    hi: int
    optional: bool = False
    zero_is_none: bool = False

    def parse(self, v: Any) -> int | None:
        if v is None and self.optional:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or not self.lo <= v <= self.hi:
            raise ValueError(f"expected an integer in {self.lo}..{self.hi}, got {v!r}")
        return None if self.zero_is_none and v == 0 else int(v)

    def schema(self) -> dict[str, Any]:
        return {"type": ["integer", "null"] if self.optional else "integer", "minimum": self.lo, "maximum": self.hi}


@dataclass(frozen=True)
class Flag(SettingType):
    """true or false."""

    def parse(self, v: Any) -> bool:
        if not isinstance(v, bool):
            raise ValueError(f"expected true or false, got {v!r}")
        return v

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True)
class Choice(SettingType):
    """One of a few names."""

    names: tuple[str, ...]

    def parse(self, v: Any) -> str:
        if v not in self.names:
            raise ValueError(f"expected one of {', '.join(self.names)}, got {v!r}")
        return v

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.names)}


@dataclass(frozen=True)
class Switches(SettingType):
    """languageId -> true|false; a bare true or false is "*", every language."""

    def parse(self, v: Any) -> dict[str, bool]:
        if isinstance(v, bool):
            return {"*": v}
        if not isinstance(v, Mapping) or not all(isinstance(k, str) and isinstance(b, bool) for k, b in v.items()):
            raise ValueError(f"expected {{languageId: true|false}}, got {v!r}")
        return dict(v)

    def schema(self) -> dict[str, Any]:
        return {"type": "object", "additionalProperties": {"type": "boolean"}}

    def dump(self, value: Mapping[str, bool]) -> dict[str, bool]:
        return {"*": True, **value}  # clients spell out the default of every other language


@dataclass(frozen=True)
class Lengths(SettingType):
    """Candidate canvas lengths: 1 to LIMITS.lengths token counts, or null."""

    def parse(self, v: Any) -> tuple[int, ...] | None:
        if v is None:
            return None
        if not isinstance(v, list) or not 0 < len(v) <= LIMITS.lengths:
            raise ValueError(f"expected 1-{LIMITS.lengths} token counts, got {v!r}")
        return tuple(Integer(1, LIMITS.length).parse(n) for n in v)  # type: ignore[misc]

    def schema(self) -> dict[str, Any]:
        return {"type": ["array", "null"], "items": {"type": "integer", "minimum": 1, "maximum": LIMITS.length},
                "maxItems": LIMITS.lengths}

    def dump(self, value: tuple[int, ...] | None) -> list[int] | None:
        return None if value is None else list(value)


@dataclass(frozen=True)
class FormattingOptions(SettingType):
    """LSP `FormattingOptions` ({tabSize, insertSpaces}), or null to detect them per document. Editors send their
    own (no setting of ours declares it), so it has no schema."""

    def parse(self, v: Any) -> Formatting | None:
        if v is None:
            return None
        if not isinstance(v, Mapping):
            raise ValueError(f"expected {{tabSize, insertSpaces}}, got {v!r}")
        tab = Integer(1, LIMITS.tab_size).parse(v.get("tabSize", v.get("tab_size", 4)))
        spaces = v.get("insertSpaces", v.get("insert_spaces"))
        if spaces is not None and not isinstance(spaces, bool):
            raise ValueError(f"insertSpaces must be true or false, got {spaces!r}")
        return Formatting(tab_size=tab, insert_spaces=spaces)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Setting:
    field: str  # the Settings attribute
    type: SettingType
    declared: bool = True  # an editor setting of its own (package.json); False: an alias, or sent only by code


SETTINGS: dict[str, Setting] = {
    "model": Setting("model", Text()),
    "daemon": Setting("daemon", Address()),
    "daemonIdleExit": Setting("daemon_idle_exit", Integer(0, LIMITS.idle_exit, optional=True, zero_is_none=True)),
    "debounce": Setting("debounce_ms", Integer(0, LIMITS.debounce_ms)),
    "quality": Setting("quality", Choice(NAMES)),
    "actionQuality": Setting("action_quality", Choice(NAMES)),
    "enable": Setting("enable", Switches()),
    "maxSteps": Setting("max_steps", Integer(1, LIMITS.max_steps, optional=True)),
    "max_steps": Setting("max_steps", Integer(1, LIMITS.max_steps, optional=True), declared=False),
    "lengths": Setting("lengths", Lengths()),
    "deadline": Setting("deadline_ms", Integer(0, LIMITS.deadline_ms, optional=True, zero_is_none=True)),
    "seed": Setting("seed", Integer(0, LIMITS.seed, optional=True)),
    "hideBroken": Setting("hide_broken", Flag()),
    "formattingOptions": Setting("formatting", FormattingOptions(), declared=False),
}
