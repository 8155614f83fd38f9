"""Backends behind one protocol, in a registry keyed by name; `load_backend` picks one from the checkpoint.

torch loads with the first backend, not with this package: `infill.models.presets` (the default model's
path) stays importable by the CLI's daemon path, which never loads a model.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ModelLoadError, lookup

if TYPE_CHECKING:
    from .base import Backend, LoadOptions


def _diffusiongemma(model: str, options: LoadOptions) -> Backend:
    from .diffusiongemma import DiffusionGemmaBackend

    return DiffusionGemmaBackend.load(model, options)


def _masked(model: str, options: LoadOptions) -> Backend:
    from .masked import MaskedDiffusionBackend

    return MaskedDiffusionBackend.load(model, options)


BACKENDS: dict[str, Callable[[str, LoadOptions], Backend]] = {
    "diffusiongemma": _diffusiongemma,
    "masked": _masked,
}


def detect_backend(model: str) -> str:
    """Backend name from the checkpoint's config.json (DiffusionGemma, else a masked-diffusion model)."""
    config = Path(model) / "config.json"
    if not config.exists():
        if "diffusiongemma" in model.lower():
            return "diffusiongemma"
        raise ModelLoadError(f"no config.json in {model!r}: is it a model directory?")
    try:
        model_type = json.loads(config.read_text()).get("model_type", "")
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"unreadable config.json in {model!r}: {exc}") from exc
    return "diffusiongemma" if model_type == "diffusion_gemma" else "masked"


def load_backend(model: str, options: LoadOptions | None = None, backend: str | None = None) -> Backend:
    from .base import LoadOptions

    return lookup(BACKENDS, "backend", backend or detect_backend(model))(model, options or LoadOptions())
