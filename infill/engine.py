"""The engine: spans -> prompt -> backend prefill -> sampler (+ constraints' logits processors), then each
candidate's middle is cut (prompt.middle_ids), fixed (textfix) and judged (syntax.check_splice) -> `InfillResult`."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch

from . import spans
from .constraints import ConstraintConfig, ban_processor, seam_processor
from .errors import BadInputError, CancelledError, DeadlineExceededError, InfillError
from .hole import Hole
from .models import load_backend
from .models.base import Backend, LoadOptions, PromptState
from .models.presets import MODEL_ENV, WEIGHTS_DIR, default_model  # noqa: F401  (re-exported)
from .prompt import CanvasLayout, EncodedPrompt, PromptConfig, candidate_layouts, encode_prompt, middle_ids
from .quality import quality
from .request import Candidate, InfillRequest, InfillResult
from .sampler import SampleOutput, SamplerConfig, quality_preset, sample
from .syntax import SyntaxVerdict, check_splice, language_for_path, normalize_language
from .textfix import follow_file_style, keep_line_break, no_added_blank_line, trim_overlap
from .warmstart import Drafts


@dataclass(frozen=True)
class EngineConfig:
    prompt: PromptConfig = PromptConfig()  # encoder budget and layout
    constraints: ConstraintConfig = ConstraintConfig()  # post-processing and repairs
    sizing: spans.SizingConfig = spans.SizingConfig()  # candidate canvas lengths
    seam_tokens: int = 0  # default suffix tokens clamped at the canvas end (0: open layout)
    escalate: bool = True  # invoked requests climb the candidates one at a time, shortest first, and stop at the
    #                        first that ends inside its canvas with valid syntax; False: every candidate runs


@dataclass
class _Job:
    """One request on its way through the engine."""

    index: int
    req: InfillRequest
    language: str | None
    hole: Hole
    prompt: EncodedPrompt
    state: PromptState
    lengths: list[int]  # candidate lengths still to try, in order: one canvas row each
    climb: bool  # stop at the first candidate that ends inside its canvas with valid syntax
    sampler: SamplerConfig  # the request's quality preset, with its step budget
    repair_rounds: int  # what the quality preset allows after the chosen candidate broke the syntax
    started: float
    on_draft: Callable[[int, str], None] | None
    cancelled: Callable[[], bool] | None
    passes: int
    warm: list[int] | None = None  # ids of the previous keystroke's draft that seed the canvas (warmstart.py)
    runs: list[_Run] = field(default_factory=list)
    error: InfillError | None = None

    @property
    def pending(self) -> bool:
        return bool(self.lengths)

    def stop_reason(self) -> InfillError | None:
        if self.cancelled is not None and self.cancelled():
            return CancelledError("request cancelled")
        if self.req.deadline is not None and time.monotonic() > self.req.deadline:
            return DeadlineExceededError("request ran past its deadline")
        return None


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
        self.drafts = Drafts()  # recent cursor middles, for warm starts while typing

    @classmethod
    def load(cls, model: str | None = None, options: LoadOptions = LoadOptions(),
             config: EngineConfig = EngineConfig()) -> Engine:
        return cls(load_backend(model or default_model(), options), config)

    @property
    def model_id(self) -> str:
        return self.backend.model_id

    def count_tokens(self, text: str) -> int:
        return len(self.backend.tokenizer.encode(text))

    # -- requests -------------------------------------------------------------------------------------------
    def fill(self, req: InfillRequest, on_draft: Callable[[int, str], None] | None = None,
             cancelled: Callable[[], bool] | None = None) -> InfillResult:
        result = self.fill_batch([req], [on_draft], [cancelled])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def fill_batch(self, reqs: Sequence[InfillRequest],
                   on_draft: Sequence[Callable[[int, str], None] | None] | None = None,
                   cancelled: Sequence[Callable[[], bool] | None] | None = None) -> list[InfillResult | Exception]:
        """Fill several holes, their candidate canvases sharing forward passes (micro-batching).

        Each result is an InfillResult, or the InfillError that request ended with (bad input, cancelled,
        deadline); one request's failure does not stop the others.
        """
        results: list[InfillResult | Exception | None] = [None] * len(reqs)
        jobs: list[_Job] = []
        for i, req in enumerate(reqs):
            try:
                jobs.append(self._prepare(i, req, on_draft[i] if on_draft else None,
                                          cancelled[i] if cancelled else None))
            except InfillError as exc:
                results[i] = exc
        while active := [j for j in jobs if j.pending and j.error is None]:
            # A shared run has one sampler configuration and one canvas length (a row is padded to the model's
            # canvas length, its own layout, never to another row's).
            runs: dict[tuple, list[_Job]] = {}
            for j in active:
                length = self._canvas_length(j.lengths[0] + len(j.prompt.seam_ids))
                runs.setdefault((j.req.quality, length, j.warm is not None), []).append(j)
            for together in runs.values():
                self._run_round(together)
        for job in jobs:
            try:
                results[job.index] = job.error or self._finish(job)
            except InfillError as exc:
                results[job.index] = exc
            if isinstance(done := results[job.index], InfillResult) and job.req.cursor is not None:
                self.drafts.remember(job.req.text, job.req.cursor, done.text)
        return results  # type: ignore[return-value]

    def _prepare(self, index: int, req: InfillRequest, on_draft, cancelled) -> _Job:
        """Span sizing, prompt and prefill for one request."""
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
        preset = quality(req.quality)
        sampler = quality_preset(req.quality, req.max_steps)
        if req.invoked and preset.escalate:  # every candidate, shortest first; climbing stops at the first good one
            lengths, climb = list(hole.lengths), self.config.escalate
        else:  # as you type, or latency first: the one candidate that most often holds the middle
            lengths, climb = [spans.one_row_length(hole.kind, hole.lengths, self.config.sizing)], False
        warm = None
        if not req.invoked and preset.warm_steps and self.backend.noise == "uniform" and req.cursor is not None \
                and (rest := self.drafts.seed(req.text, req.cursor)) is not None:
            warm = self.backend.tokenizer.encode(rest)
            sampler = replace(sampler, max_steps=min(sampler.max_steps, preset.warm_steps))
        rounds = self.config.constraints.repair_rounds if preset.repair_rounds is None else preset.repair_rounds
        return _Job(index=index, req=req, language=language, hole=hole, prompt=prompt, state=state,
                    lengths=lengths, climb=climb, sampler=sampler, warm=warm,
                    repair_rounds=rounds, started=started, on_draft=on_draft, cancelled=cancelled,
                    passes=1 if state.computed_tokens or not state.reused_tokens else 0)  # a reused prompt is free

    def _run_round(self, jobs: list[_Job]) -> None:
        """One sampler run over the next candidate of every job (one quality, one canvas length), as one batch."""
        rows: list[tuple[_Job, CanvasLayout]] = []
        seeds: list[int | None] = []  # a request's k-th candidate draws from seed + k: alone or batched, the same
        for job in jobs:
            layouts = [replace(layout, length=self._canvas_length(layout.length))
                       for layout in candidate_layouts(job.lengths[:1], job.prompt.seam_ids)]
            rows += [(job, layout) for layout in layouts]
            seeds += [None if job.req.seed is None else job.req.seed + len(job.runs) + i for i in range(len(layouts))]
        clamp_ids = self._clamps([layout for _, layout in rows])
        free = clamp_ids < 0
        seam_rows = torch.tensor([bool(layout.clamps) for _, layout in rows])
        processors = [ban_processor(self.backend.ids.banned, free)]
        if seam_rows.any():
            processors.append(seam_processor(self.backend.ids, seam_rows, free))
        counts = [sum(1 for j, _ in rows if j is job) for job in jobs]
        state = jobs[0].state if len(jobs) == 1 else self.backend.merge([j.state for j in jobs], counts)
        owner = torch.tensor([jobs.index(j) for j, _ in rows])  # (B,) job of each row
        # the quality is the same for all jobs; the step budget of a shared batch is the largest
        cfg = replace(jobs[0].sampler, max_steps=max(j.sampler.max_steps for j in jobs))
        init = self._warm_canvas(rows, clamp_ids, seeds) if jobs[0].warm is not None else None
        out = sample(self.backend, state, clamp_ids, cfg, processors, seed=seeds, init_canvas=init,
                     on_step=self._draft_reporter(jobs, rows, owner), cancelled=self._row_canceller(jobs, owner))
        for i, job in enumerate(jobs):
            mine = [r for r in range(len(rows)) if owner[r] == i]
            if bool(out.dropped[mine].any()):
                job.error = job.stop_reason()
                continue
            job.passes += out.forward_passes
            job.runs += [self._decode(out, r, rows[r][1], job.req.text, job.hole) for r in mine]
            job.lengths.pop(0)
            if job.climb and any(r.verdict.ok and r.finished for r in job.runs):
                job.lengths.clear()

    def _finish(self, job: _Job) -> InfillResult:
        """Choose among the candidates, repair the chosen one if it broke the syntax, report."""
        best = max(range(len(job.runs)), key=lambda r: _rank(job.runs[r]))
        chosen, repaired = job.runs[best], False
        if not chosen.verdict.ok and job.repair_rounds:
            chosen, extra, repaired = self._repair(chosen, job)
            job.passes += extra
        hole = job.hole
        empty = chosen.verdict.empty  # no code: no suggestion, never a deletion
        return InfillResult(
            text="" if empty else chosen.text, start=hole.start, end=hole.end, kind=str(hole.kind), empty=empty,
            syntax_ok=chosen.verdict.ok,
            steps=chosen.steps, forward_passes=job.passes, tokens=len(chosen.ids),
            seconds=time.perf_counter() - job.started, model=self.model_id, language=job.language,
            sizing=hole.sizing,
            candidates=[Candidate(r.layout.free, r.text, r.verdict.ok, r.confidence, r.finished) for r in job.runs],
            repaired=repaired, prompt_tokens=len(job.prompt.encoder_ids), reused_prompt_tokens=job.state.reused_tokens,
        )

    # -- pieces -------------------------------------------------------------------------------------------
    @staticmethod
    def _language(req: InfillRequest) -> str | None:
        if req.language:
            return normalize_language(req.language)
        return language_for_path(req.path)

    def _canvas_length(self, slots: int) -> int:
        """A row of `slots` free and clamped slots, padded as the model was trained: to the smallest of its
        training canvas lengths that holds it (`canvas_buckets`), else exactly `slots`."""
        return next((b for b in getattr(self.backend, "canvas_buckets", ()) if b >= slots), slots)

    def _clamps(self, layouts: list[CanvasLayout]) -> torch.Tensor:
        """Clamp ids (B, L) for one batch: -1 on free slots, then each row's clamps, then pad."""
        length = max(layout.length for layout in layouts)
        clamp_ids = torch.full((len(layouts), length), self.backend.ids.pad, dtype=torch.long)
        for row, layout in enumerate(layouts):
            clamp_ids[row, : layout.free] = -1
            if layout.clamps:
                clamp_ids[row, layout.free : layout.free + len(layout.clamps)] = torch.tensor(layout.clamps)
        return clamp_ids

    def _warm_canvas(self, rows: list[tuple[_Job, CanvasLayout]], clamp_ids: torch.Tensor,
                     seeds: list[int | None]) -> torch.Tensor:
        """Canvases (B, L) that start from each job's warm-start draft: its ids, the end token, then noise."""
        ids = self.backend.ids
        gens = [torch.Generator() for _ in seeds]
        for g, s in zip(gens, seeds, strict=True):
            g.manual_seed(s) if s is not None else g.seed()
        canvas = torch.stack([torch.randint(0, self.backend.vocab_size, clamp_ids.shape[1:], generator=g)
                              for g in gens])
        for row, (job, layout) in enumerate(rows):
            draft = [*job.warm, ids.eos[0]][: layout.free]
            canvas[row, : len(draft)] = torch.tensor(draft, dtype=torch.long)
        return canvas

    def _draft_reporter(self, jobs: list[_Job], rows: list[tuple[_Job, CanvasLayout]], owner: torch.Tensor):
        """Streams each job's longest candidate draft as text, to the jobs that asked for drafts."""
        watched = [(job, max(r for r in range(len(rows)) if owner[r] == i)) for i, job in enumerate(jobs)
                   if job.on_draft is not None]
        if not watched:
            return None

        def report(step: int, canvas: torch.Tensor) -> None:
            for job, row in watched:
                layout = rows[row][1]
                ids, _ = middle_ids(canvas[row].tolist(), layout.free, self.backend.ids, bool(layout.clamps))
                job.on_draft(step, self.backend.tokenizer.decode(ids))

        return report

    @staticmethod
    def _row_canceller(jobs: list[_Job], owner: torch.Tensor) -> Callable[[], torch.Tensor]:
        """Rows whose request was cancelled or ran past its deadline, checked between steps."""

        def rows_to_drop() -> torch.Tensor:
            stopped = torch.tensor([job.stop_reason() is not None for job in jobs])
            return stopped[owner]

        return rows_to_drop

    def _decode(self, out: SampleOutput, row: int, layout: CanvasLayout, text: str, hole: Hole) -> _Run:
        tokens = out.tokens[row]
        ids, finished = middle_ids(tokens.tolist(), layout.free, self.backend.ids, bool(layout.clamps))
        confidence = float(out.logprobs[row, : max(len(ids) + (not layout.clamps), 1)].mean())
        # byte-level tokens can end inside a UTF-8 sequence; never write a replacement character into code
        middle = self.backend.tokenizer.decode(ids).replace("\ufffd", "")
        text_out, verdict = self._postprocess(middle, text, hole)
        return _Run(layout, ids, text_out, finished, confidence, verdict, tokens, int(out.steps[row]))

    def _postprocess(self, middle: str, text: str, hole: Hole) -> tuple[str, SyntaxVerdict]:
        """Trim, reindent, and keep the variant that adds the fewest syntax errors (the least trimmed on ties)."""
        cfg = self.config.constraints
        suffix = text[hole.end :]
        middle = keep_line_break(middle, text[hole.start : hole.end])  # first: the style fixes see the line ends
        middle = follow_file_style(middle, text, hole, reindent_lines=cfg.reindent)
        middle = no_added_blank_line(middle, text[hole.start : hole.end], suffix)  # after: blanks are gone
        variants = [middle]
        if cfg.trim_overlap:
            variants += [v for v in trim_overlap(middle, suffix, cfg.min_overlap_chars) if v not in variants]
        if hole.closers and not middle.rstrip().endswith(hole.closers[-1]) \
                and not suffix.lstrip().startswith(hole.closers[0]):
            variants.append(middle + hole.closers)
        verdicts = [check_splice(text, hole.start, hole.end, v, hole.language) for v in variants]
        # A trimmed variant must win on syntax; trimming is not a goal in itself unless syntax ties on failure.
        best = min(range(len(variants)), key=lambda i: (verdicts[i].added, -i if not verdicts[0].ok else i))
        return variants[best], verdicts[best]

    def _repair(self, run: _Run, job: _Job) -> tuple[_Run, int, bool]:
        """Re-noise the tokens around the first added error, keep everything else, denoise again."""
        cfg = self.config.constraints
        req = job.req
        passes = 0
        for _ in range(job.repair_rounds):
            if run.verdict.first_error is None or not run.ids:
                break
            tok = self._token_at(run.ids, run.verdict.first_error)
            lo, hi = max(0, tok - cfg.repair_window), min(run.layout.free, tok + cfg.repair_window + 1)
            canvas = run.canvas[None].clone()
            clamp = canvas.clone()
            clamp[0, lo:hi] = -1
            ban = ban_processor(self.backend.ids.banned, clamp < 0)
            steps = min(cfg.repair_steps, req.max_steps or cfg.repair_steps)
            repaired = sample(self.backend, job.state, clamp, replace(job.sampler, max_steps=steps), [ban],
                              seed=None if req.seed is None else req.seed + 1, init_canvas=canvas,
                              deadline=req.deadline)
            passes += repaired.forward_passes
            candidate = self._decode(repaired, 0, run.layout, req.text, job.hole)
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
    """Syntax validity first, then any code over none, then a middle that ended inside its canvas, then fewer
    added errors, then model confidence."""
    return (run.verdict.ok, not run.verdict.empty, run.finished, -run.verdict.added, run.confidence)


def check_request(req: InfillRequest) -> None:
    n = len(req.text)
    if req.cursor is not None and not 0 <= req.cursor <= n:
        raise BadInputError(f"cursor offset {req.cursor} is outside the document ({n} characters)")
    if req.span is not None and not 0 <= req.span[0] <= req.span[1] <= n:
        raise BadInputError(f"range {req.span} is outside the document ({n} characters)")
