"""Optional extras: which module comes from which `pip install 'infill[EXTRA]'`, and a check before the work.

    require("bitsandbytes", "--quantize")     # raises MissingExtraError naming [gpu] and the install line
    missing_extra(exc)                        # a ModuleNotFoundError of an extra's module, as that error

pyproject.toml lists the extras; tests/test_extras.py fails when this table drifts from it.
"""

from __future__ import annotations

import importlib.util

from .errors import MissingExtraError

EXTRAS: dict[str, str] = {  # importable module -> the extra that installs it
    "bitsandbytes": "gpu",
    "accelerate": "gpu",
    "matplotlib": "train",
    "tqdm": "train",
}


def require(module: str, purpose: str) -> None:
    """Raise MissingExtraError when `module` (one of EXTRAS) cannot be imported; `purpose` names what needs it."""
    if importlib.util.find_spec(module) is None:
        raise MissingExtraError(module, EXTRAS[module], purpose)


def missing_extra(exc: ModuleNotFoundError, purpose: str = "this command") -> MissingExtraError | None:
    """The MissingExtraError for an import that failed because an extra is not installed, else None."""
    top = (exc.name or "").split(".")[0]
    return MissingExtraError(top, EXTRAS[top], purpose) if top in EXTRAS else None
