"""Suffix-conditioned constraints: the sampler's per-step logits processors, and the settings of the final check.

Per step (see `infill.sampler`): banned ids never appear in free slots; in the seam layout the middle
has an exact length, so end and pad ids are banned there too. Clamps themselves are re-imposed by the
sampler after every step.

At the end (`infill.engine`): the middle is cut at its end token (`prompt.middle_ids`), the text fixes of
`infill.textfix` trim its overlap with the suffix and re-indent it, and the spliced document is re-parsed
(`syntax.check_splice`). A candidate that adds syntax errors the document did not already have is
rejected, or repaired by re-noising the tokens around the first error (`ConstraintConfig` sets how).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .prompt import SpecialIds


@dataclass(frozen=True)
class ConstraintConfig:
    trim_overlap: bool = True  # drop the middle's tail where it repeats the suffix's head
    min_overlap_chars: int = 4  # shortest overlap trimmed unless it is closers only or whole lines
    reindent: bool = True  # new lines of the middle take the hole's indentation
    repair_rounds: int = 1  # re-noise rounds around the first added syntax error (0: reject only)
    repair_window: int = 4  # tokens re-noised on each side of the first error
    repair_steps: int = 12  # step budget of one repair round


def ban_processor(banned: Sequence[int], free: torch.Tensor):
    """Banned ids get -inf in free slots. free: (B, L) bool."""
    banned_t = torch.tensor(sorted(set(banned)), dtype=torch.long)

    def process(logits: torch.Tensor, step: int, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        if banned_t.numel() == 0:
            return logits
        mask = free.to(logits.device)[rows.to(logits.device)][:, cols.to(logits.device), None]  # (b, C, 1)
        cols = banned_t.to(logits.device)
        sub = logits[..., cols]
        logits[..., cols] = torch.where(mask, torch.full_like(sub, float("-inf")), sub)
        return logits

    return process


def seam_processor(ids: SpecialIds, seam_rows: torch.Tensor, free: torch.Tensor):
    """In seam rows the middle fills its slots exactly: no end or pad tokens inside it."""
    return ban_processor((*ids.eos, ids.pad), free & seam_rows[:, None])
