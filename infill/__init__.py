"""Code infilling with text-diffusion language models.

    from infill import Engine, InfillRequest

    engine = Engine.load("path/to/checkpoint")             # or None: $INFILL_MODEL, else the bundled model
    result = engine.fill(InfillRequest(text=source, cursor=120, path="app.py"))
    new_source = source[: result.start] + result.text + source[result.end :]

The engine and the request types are imported on first use, so `import infill` (and the CLI's
argument and file checks) stay fast; torch and transformers load with the engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .errors import (
    BadInputError,
    CancelledError,
    DeadlineExceededError,
    FileChangedError,
    InfillError,
    ModelLoadError,
    UnknownLanguageError,
    UnknownStrategyError,
)

if TYPE_CHECKING:
    from .engine import Engine, EngineConfig
    from .models.base import LoadOptions
    from .request import InfillRequest, InfillResult

__version__ = "0.1.0"

# public name -> module that defines it (imported lazily by __getattr__)
_LAZY = {
    "Engine": ".engine",
    "EngineConfig": ".engine",
    "LoadOptions": ".models.base",
    "InfillRequest": ".request",
    "InfillResult": ".request",
}

__all__ = [
    "BadInputError",
    "CancelledError",
    "DeadlineExceededError",
    "Engine",
    "EngineConfig",
    "FileChangedError",
    "InfillError",
    "InfillRequest",
    "InfillResult",
    "LoadOptions",
    "ModelLoadError",
    "UnknownLanguageError",
    "UnknownStrategyError",
    "__version__",
]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
