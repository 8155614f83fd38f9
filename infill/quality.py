"""Quality presets, defined once: how the sampler runs and which second chances the engine allows.

    quality("fast").sampler          the SamplerConfig fields the preset changes (infill.sampler.quality_preset)
    quality("fast").escalate         an invoked request climbs the candidate lengths, shortest first, while they fail
    quality("fast").repair_rounds    re-noise rounds around an added syntax error (None: ConstraintConfig's)
    quality("fast").warm_steps       the step budget of a canvas seeded by the previous keystroke's draft
    DEFAULTS.typing                  the preset an entry point uses when none is named, and why (comments)

Everything else derives from this module or is checked against it: the sampler's settings, the engine's
escalation and repairs, the `--quality` choices of `infill fill` and `infill lsp`, the daemon protocol's
validation, the language server's settings, and the VS Code setting enums (tests/test_contract.py). No torch
here, so that the CLI and the language server check names without loading the model stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import astuple, dataclass

from .errors import lookup


@dataclass(frozen=True)
class Quality:
    name: str
    sampler: Mapping[str, float | int]  # SamplerConfig fields that differ from its defaults (the released ones)
    escalate: bool  # an invoked request tries the next longer candidate while none ended with valid syntax;
    #                 an as-you-type request always runs one candidate (`SizingConfig.one_row`)
    repair_rounds: int | None  # re-noise rounds around the first added syntax error; None: ConstraintConfig's
    use: str  # what it is for, for help texts
    warm_steps: int | None = None  # steps of a canvas seeded by the previous keystroke's draft (None: no seeding)


QUALITIES: dict[str, Quality] = {q.name: q for q in (
    # 3 steps: 40% syntax-valid on HumanEval single-line, 4 steps 43%, 5 and 6 fewer (the 16 of the earlier
    # `fast` on four padded rows: 47%; all within noise at 60 holes), a quarter less time than 4: see README
    Quality("fast", {"entropy_bound": 0.3, "max_steps": 3, "fill": True}, escalate=False, repair_rounds=0,
            warm_steps=2, use="latency first: one canvas row, 3 steps that fill it, no second chances"),
    Quality("balanced", {}, escalate=True, repair_rounds=None,
            use="the released DiffusionGemma settings, with escalation and repairs"),
    Quality("thinking", {"entropy_bound": 0.05, "max_steps": 96, "stability": 2}, escalate=True, repair_rounds=None,
            use="careful steps and a bigger budget"),
)}
NAMES: tuple[str, ...] = tuple(QUALITIES)  # in this order in help texts, the protocol's messages and the enums


def quality(name: str) -> Quality:
    """The preset called `name`; an unknown name raises UnknownStrategyError listing the presets."""
    return lookup(QUALITIES, "quality preset", name)


@dataclass(frozen=True)
class Defaults:
    """The preset each entry point uses when none is named."""

    request: str = "balanced"  # InfillRequest and the daemon's `infill` message: a caller that names none gets
    #                            the engine's full settings, as the benchmarks measure them
    cli: str = "balanced"  # `infill fill`: a person waits for one answer, so escalation and repairs earn their passes
    typing: str = "fast"  # as-you-type suggestions (LSP `quality`): a late suggestion is a stale one, latency first
    action: str = "balanced"  # code actions, infill.fillRange (LSP `actionQuality`): asked for, so the user waits

    def __post_init__(self) -> None:
        for name in astuple(self):
            quality(name)


DEFAULTS = Defaults()
