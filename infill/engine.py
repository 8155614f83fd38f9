"""The engine: spans -> prompt -> sampler (+ constraints) -> backend, and back to an `InfillResult`."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from . import spans
from .constraints import (
    ConstraintConfig,
    SyntaxVerdict,
    ban_processor,
    check_splice,
    detect_indent_unit,
    middle_ids,
    reindent,
    seam_processor,
    trim_overlap,
)
from .errors import BadInputError, ModelLoadError
from .hole import Hole
from .models import load_backend
from .models.base import Backend, LoadOptions, PromptState
from .models.presets import WEIGHTS_DIR
from .prompt import CanvasLayout, PromptConfig, candidate_layouts, encode_prompt
from .request import Candidate, InfillRequest, InfillResult
from .sampler import SampleOutput, quality_preset, sample
from .syntax import language_for_path, normalize_language

MODEL_ENV = "INFILL_MODEL"


@dataclass(frozen=True)
class EngineConfig:
    prompt: PromptConfig = PromptConfig()  # encoder budget and layout
    constraints: ConstraintConfig = ConstraintConfig()  # post-processing and repairs
    sizing: spans.SizingConfig = spans.SizingConfig()  # candidate canvas lengths
    seam_tokens: int = 0  # default suffix tokens clamped at the canvas end (0: open layout)
    escalate: bool = True  # run the shorter half of the candidates first; the longer ones only if none of
    #                        those ended inside its canvas with valid syntax (canvas cost grows with length)


def default_model() -> str:
    """$INFILL_MODEL when set, else the bundled model."""
    env = os.environ.get(MODEL_ENV)
    if env:
        return env
    if (WEIGHTS_DIR / "config.json").exists():
        return str(WEIGHTS_DIR)
    raise ModelLoadError(
        f"no model given and no bundled model in {WEIGHTS_DIR}; pass --model DIR, set ${MODEL_ENV}, "
        "or write a random test model with `infill model random DIR --preset tiny`"
    )


@dataclass
class _Run:
    """One candidate after decoding and post-processing."""

    layout: CanvasLayout
    ids: list[int]
    text: str
    finished: bool
    confidence: float
    verdict: SyntaxVerdict
    canvas: torch.Tensor  # (L,) the row's final argmax canvas, for repairs
    steps: int


class Engine:
    def __init__(self, backend: Backend, config: EngineConfig = EngineConfig()) -> None:
        self.backend = backend
        # A checkpoint trained on shorter prompts or canvases gets no longer ones than it saw.
        limits = getattr(backend, "limits", {})
        if "prompt_tokens" in limits and limits["prompt_tokens"] < config.prompt.max_prompt_tokens:
            config = replace(config, prompt=replace(config.prompt, max_prompt_tokens=limits["prompt_tokens"]))
        if "canvas" in limits and limits["canvas"] < config.sizing.max_canvas:
            config = replace(config, sizing=replace(config.sizing, max_canvas=limits["canvas"]))
        self.config = config

    @classmethod
    def load(cls, model: str | None = None, options: LoadOptions = LoadOptions(),
             config: EngineConfig = EngineConfig()) -> Engine:
        return cls(load_backend(model or default_model(), options), config)

    @property
    def model_id(self) -> str:
        return self.backend.model_id

    def count_tokens(self, text: str) -> int:
        return len(self.backend.tokenizer.encode(text))

    # -- the whole request ------------------------------------------------------------------------------
    def fill(self, req: InfillRequest, on_draft: Callable[[int, str], None] | None = None,
             cancelled: Callable[[], bool] | None = None) -> InfillResult:
        started = time.perf_counter()
        check_request(req)
        language = self._language(req)
        hole = spans.size_hole(req.text, language, cursor=req.cursor, span=req.span,
                               count_tokens=self.count_tokens, config=self.config.sizing)
        if req.lengths:
            hole = replace(hole, lengths=tuple(sorted(set(req.lengths))))
        prefix, suffix = req.text[: hole.start], req.text[hole.end :]
        seam = self.config.seam_tokens if req.seam_tokens is None else req.seam_tokens
        seam = seam if suffix.strip() and self.backend.prompt_format == "fim" else 0
        prompt = encode_prompt(self.backend.prompt_format, self.backend.tokenizer, self.backend.ids, prefix, suffix,
                               replace(self.config.prompt, seam_tokens=seam))
        state = self.backend.prefill(prompt)
        passes = 1 if state.computed_tokens or not state.reused_tokens else 0  # a fully reused prompt costs nothing
        sampler_cfg = quality_preset(req.quality, req.max_steps)
        lengths = hole.lengths
        groups = [lengths[: (len(lengths) + 1) // 2], lengths[(len(lengths) + 1) // 2 :]]
        if not self.config.escalate or len(lengths) == 1:
            groups = [lengths]
        runs: list[_Run] = []
        for group in filter(None, groups):
            layouts = candidate_layouts(group, prompt.seam_ids)
            clamp_ids, free = self._clamps(layouts)
            processors = [ban_processor(self.backend.ids.banned, free)]
            if prompt.seam_ids:
                processors.append(seam_processor(self.backend.ids, torch.ones(len(layouts), dtype=torch.bool), free))
            draft = self._draft_reporter(on_draft, layouts[-1]) if on_draft else None
            out = sample(self.backend, state, clamp_ids, sampler_cfg, processors, seed=req.seed, on_step=draft,
                         cancelled=cancelled, deadline=req.deadline)
            passes += out.forward_passes
            runs += [self._decode(out, row, layout, req.text, hole) for row, layout in enumerate(layouts)]
            if any(r.verdict.ok and r.finished for r in runs):
                break
        best = max(range(len(runs)), key=lambda r: _rank(runs[r]))
        chosen, repaired = runs[best], False
        if not chosen.verdict.ok and self.config.constraints.repair_rounds:
            chosen, extra, repaired = self._repair(chosen, state, req, hole)
            passes += extra
        return InfillResult(
            text=chosen.text, start=hole.start, end=hole.end, kind=str(hole.kind), syntax_ok=chosen.verdict.ok,
            steps=chosen.steps, forward_passes=passes, tokens=len(chosen.ids),
            seconds=time.perf_counter() - started, model=self.model_id, language=language, sizing=hole.sizing,
            candidates=[Candidate(r.layout.free, r.text, r.verdict.ok, r.confidence, r.finished) for r in runs],
            repaired=repaired, prompt_tokens=len(prompt.encoder_ids), reused_prompt_tokens=state.reused_tokens,
        )

    # -- pieces -------------------------------------------------------------------------------------------
    @staticmethod
    def _language(req: InfillRequest) -> str | None:
        if req.language:
            return normalize_language(req.language)
        return language_for_path(req.path)

    def _clamps(self, layouts: list[CanvasLayout]) -> tuple[torch.Tensor, torch.Tensor]:
        """clamp ids (B, L) with -1 for free slots, and the free mask (B, L)."""
        length = layouts[0].length
        clamp_ids = torch.full((len(layouts), length), self.backend.ids.pad, dtype=torch.long)
        for row, layout in enumerate(layouts):
            clamp_ids[row, : layout.free] = -1
            if layout.clamps:
                clamp_ids[row, layout.free : layout.free + len(layout.clamps)] = torch.tensor(layout.clamps)
        return clamp_ids, clamp_ids < 0

    def _draft_reporter(self, on_draft: Callable[[int, str], None], layout: CanvasLayout):
        """Streams the longest candidate's draft as text."""

        def report(step: int, canvas: torch.Tensor) -> None:
            ids, _ = middle_ids(canvas[-1].tolist(), layout.free, self.backend.ids, bool(layout.clamps))
            on_draft(step, self.backend.tokenizer.decode(ids))

        return report

    def _decode(self, out: SampleOutput, row: int, layout: CanvasLayout, text: str, hole: Hole) -> _Run:
        tokens = out.tokens[row]
        ids, finished = middle_ids(tokens.tolist(), layout.free, self.backend.ids, bool(layout.clamps))
        confidence = float(out.logprobs[row, : max(len(ids) + (not layout.clamps), 1)].mean())
        middle = self.backend.tokenizer.decode(ids)
        text_out, verdict = self._postprocess(middle, text, hole)
        return _Run(layout, ids, text_out, finished, confidence, verdict, tokens, int(out.steps[row]))

    def _postprocess(self, middle: str, text: str, hole: Hole) -> tuple[str, SyntaxVerdict]:
        """Trim, reindent, and keep the variant that adds the fewest syntax errors (the least trimmed on ties)."""
        cfg = self.config.constraints
        suffix = text[hole.end :]
        if cfg.reindent:
            middle = reindent(middle, hole, detect_indent_unit(text[: hole.start][-20000:]))
        variants = [middle]
        if cfg.trim_overlap:
            variants += [v for v in trim_overlap(middle, suffix, cfg) if v not in variants]
        if hole.closers and not middle.rstrip().endswith(hole.closers[-1]) \
                and not suffix.lstrip().startswith(hole.closers[0]):
            variants.append(middle + hole.closers)
        verdicts = [check_splice(text, hole.start, hole.end, v, hole.language) for v in variants]
        # A trimmed variant must win on syntax; trimming is not a goal in itself unless syntax ties on failure.
        best = min(range(len(variants)), key=lambda i: (verdicts[i].added, -i if not verdicts[0].ok else i))
        return variants[best], verdicts[best]

    def _repair(self, run: _Run, state: PromptState, req: InfillRequest, hole: Hole) -> tuple[_Run, int, bool]:
        """Re-noise the tokens around the first added error, keep everything else, denoise again."""
        cfg = self.config.constraints
        passes = 0
        for _ in range(cfg.repair_rounds):
            if run.verdict.first_error is None or not run.ids:
                break
            tok = self._token_at(run.ids, run.verdict.first_error)
            lo, hi = max(0, tok - cfg.repair_window), min(run.layout.free, tok + cfg.repair_window + 1)
            canvas = run.canvas[None].clone()
            clamp = canvas.clone()
            clamp[0, lo:hi] = -1
            ban = ban_processor(self.backend.ids.banned, clamp < 0)
            steps = min(cfg.repair_steps, req.max_steps or cfg.repair_steps)
            repaired = sample(self.backend, state, clamp, quality_preset(req.quality, steps), [ban],
                              seed=None if req.seed is None else req.seed + 1, init_canvas=canvas,
                              cancelled=None, deadline=req.deadline)
            passes += repaired.forward_passes
            candidate = self._decode(repaired, 0, run.layout, req.text, hole)
            if candidate.verdict.added < run.verdict.added or candidate.verdict.ok:
                return candidate, passes, True
        return run, passes, False

    def _token_at(self, ids: list[int], char_offset: int) -> int:
        """Index of the token of the middle that covers character `char_offset`."""
        for i in range(1, len(ids) + 1):
            if len(self.backend.tokenizer.decode(ids[:i])) > char_offset:
                return i - 1
        return len(ids) - 1


def _rank(run: _Run) -> tuple:
    """Syntax validity first, then a middle that ended inside its canvas, then model confidence."""
    return (run.verdict.ok, run.finished, -run.verdict.added, run.confidence)


def check_request(req: InfillRequest) -> None:
    n = len(req.text)
    if req.cursor is not None and not 0 <= req.cursor <= n:
        raise BadInputError(f"cursor offset {req.cursor} is outside the document ({n} characters)")
    if req.span is not None and not 0 <= req.span[0] <= req.span[1] <= n:
        raise BadInputError(f"range {req.span} is outside the document ({n} characters)")
