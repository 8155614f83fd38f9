"""The denoising loop, readable top to bottom.

Defaults follow the released DiffusionGemma settings: entropy-bound acceptance (γ = 0.1), temperature
falling linearly from 0.8 to 0.4, at most 48 steps, and an adaptive stop once the argmax canvas is
stable and its mean entropy is below 0.005.

Two kinds of noise, chosen by the backend:
- uniform (DiffusionGemma): noised slots hold random ids. Every step, the accepted slots take a sampled
  token and *every other slot is re-noised*, earlier acceptances included; nothing is frozen.
- mask (Dream / LLaDA style): noised slots hold the mask id; accepted slots are frozen for good.

Clamped slots (the suffix head, everything outside a repair window) are re-imposed after every step:
they are never free.

The backend gets the previous step's *probabilities* as self-conditioning (the softmax it would otherwise
recompute from logits), and every row of one call has the same canvas length.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch

from .errors import CancelledError, DeadlineExceededError
from .models.base import Backend, PromptState
from .quality import quality

# A logits processor sees (logits (b, C, V), step index from 0, the batch rows those b logits belong to, the
# canvas columns those C logits belong to) and returns processed logits. Rows matter because finished rows
# leave the batch; columns because clamped columns get no logits.
LogitsProcessor = Callable[[torch.Tensor, int, torch.Tensor, torch.Tensor], torch.Tensor]
LOG_FLOOR = -1e4  # log-probabilities are floored here for entropies: a banned id (p = 0) then adds 0, not NaN


@dataclass(frozen=True)
class SamplerConfig:
    entropy_bound: float = 0.1  # γ: accept the lowest-entropy slots while Σ H − max H ≤ γ (EB-Sampler)
    t_max: float = 0.8  # temperature at the first step
    t_min: float = 0.4  # temperature at the last step of the step budget
    max_steps: int = 48  # step budget; the released checkpoint uses 48
    stability: int = 1  # stop once the argmax canvas is unchanged for this many steps ...
    confidence: float = 0.005  # ... and the mean entropy of the canvas is below this
    self_conditioning: bool = True  # feed the previous step's probabilities back (DiffusionGemma does)
    fill: bool = False  # accept at least a linear share of the slots per step, so the last step decodes a canvas
    #                     the model wrote entirely (few-step budgets: an unconfident model accepts ~1 slot a step)

    def __post_init__(self) -> None:
        if self.entropy_bound <= 0:
            raise ValueError("entropy_bound must be > 0")
        if self.max_steps < 1:
            raise ValueError("max_steps must be >= 1")
        if not 0 < self.t_min <= self.t_max:
            raise ValueError("temperatures must satisfy 0 < t_min <= t_max")


def quality_preset(name: str, max_steps: int | None = None) -> SamplerConfig:
    """The sampler settings of a quality preset (`infill.quality`), with the step budget replaced if given."""
    cfg = SamplerConfig(**quality(name).sampler)
    return replace(cfg, max_steps=max_steps) if max_steps else cfg


@dataclass
class SampleOutput:
    tokens: torch.Tensor  # (B, L) argmax canvas at each row's last step
    logprobs: torch.Tensor  # (B, L) log-probability of those tokens (temperature 1)
    steps: torch.Tensor  # (B,) steps each row ran
    finished: torch.Tensor  # (B,) rows that stopped adaptively (not by the step budget)
    forward_passes: int  # decoder passes (one per step, over the rows still running)
    dropped: torch.Tensor  # (B,) rows stopped by `cancelled` before they finished


def temperature(cfg: SamplerConfig, step: int) -> float:
    """Linear schedule over the step budget: t_max at step 0, t_min at the last step."""
    remaining = cfg.max_steps - step  # N .. 1, as DiffusionGemma counts
    return cfg.t_min + (cfg.t_max - cfg.t_min) * remaining / cfg.max_steps


def entropy_bound_accept(entropy: torch.Tensor, eligible: torch.Tensor, bound: float,
                         at_least: torch.Tensor | int = 1) -> torch.Tensor:
    """EB rule: per row, accept the lowest-entropy eligible slots while Σ H − max H ≤ bound.

    entropy (B, L), eligible (B, L) bool -> accepted (B, L) bool. At least `at_least` (an int, or (B,) per row)
    eligible slots are accepted, the lowest-entropy ones; at least one.
    """
    h = entropy.masked_fill(~eligible, float("inf"))  # ineligible slots sort last
    sorted_h, order = torch.sort(h, dim=-1)  # (B, L) ascending
    finite = torch.isfinite(sorted_h)
    cumulative = torch.cumsum(sorted_h.masked_fill(~finite, 0.0), dim=-1)
    take = cumulative - sorted_h.masked_fill(~finite, 0.0) <= bound  # sorted h is the running max
    rank = torch.arange(h.shape[-1], device=h.device)  # (L,)
    floor = torch.as_tensor(at_least, device=h.device).clamp(min=1).reshape(-1, 1)  # (B or 1, 1)
    take = (take | (rank < floor)) & finite
    return torch.zeros_like(take).scatter(-1, order, take)


def fill_floor(cfg: SamplerConfig, step: int, eligible: torch.Tensor, mask_noise: bool) -> torch.Tensor | int:
    """How many slots a row accepts at least this step (`SamplerConfig.fill`), so that the last step of the
    budget decodes a canvas the model wrote: mask noise unmasks its remaining slots evenly over the steps
    left; uniform noise accepts a share of the free slots growing linearly to all of them."""
    if not cfg.fill:
        return 1
    n = eligible.sum(-1)  # (b,)
    left = cfg.max_steps - step
    return -(-n // left) if mask_noise else -(-n * (step + 1) // cfg.max_steps)


def row_generators(seed: int | None | Sequence[int | None], batch: int, device: torch.device) -> list[torch.Generator]:
    """One generator per canvas row, so that a row's draws do not depend on the other rows of its batch.

    An int seeds row r with seed + r; a sequence gives each row its own seed (None: a random one).
    """
    seeds = [None if seed is None else seed + r for r in range(batch)] if not isinstance(seed, Sequence) else seed
    assert len(seeds) == batch, "one seed per row"
    gens = []
    for s in seeds:
        g = torch.Generator(device=device)
        g.manual_seed(s % 2**63 if s is not None else int(torch.seed() % 2**63))
        gens.append(g)
    return gens


def draw(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One categorical sample per row of probs (a, V) -> (a,): a uniform draw against the cumulative sum
    (`torch.multinomial` draws V exponentials per row: 30x slower on a CPU at V = 12k)."""
    cdf = probs.cumsum(-1)  # (a, V)
    u = torch.rand(probs.shape[0], 1, generator=generator, device=probs.device) * cdf[:, -1:]  # (a, 1)
    return torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_(max=probs.shape[-1] - 1)  # never a p = 0 id


def initial_canvas(backend: Backend, shape: tuple[int, int], gens: list[torch.Generator]) -> torch.Tensor:
    if backend.noise == "mask":
        assert backend.ids.mask is not None, "a mask-noise backend needs a mask id"
        return torch.full(shape, backend.ids.mask, dtype=torch.long, device=backend.device)
    return torch.stack([torch.randint(0, backend.vocab_size, shape[1:], generator=g, device=backend.device)
                        for g in gens])


def sample(
    backend: Backend,
    state: PromptState,
    clamp_ids: torch.Tensor,  # (B, L) long: the id a slot is clamped to, -1 where the slot is free
    cfg: SamplerConfig = SamplerConfig(),
    processors: Sequence[LogitsProcessor] = (),
    seed: int | None | Sequence[int | None] = None,  # int: row r uses seed + r; or one seed per row
    init_canvas: torch.Tensor | None = None,  # (B, L) start here instead of pure noise (repairs, warm starts)
    on_step: Callable[[int, torch.Tensor], None] | None = None,  # (step, argmax canvas (B, L)) drafts
    cancelled: Callable[[], bool | torch.Tensor] | None = None,  # True: stop all; (B,) bool: drop those rows
    deadline: float | None = None,  # time.monotonic() limit
) -> SampleOutput:
    """Denoise B canvases of L slots each (one length per call: the engine never pads rows to each other).

    Vocabulary-sized work happens only in the C canvas columns some row denoises (clamped columns, such as
    the padding after a row's free slots, get no logits): one log-softmax over those logits, one exp, and
    one sample per *accepted* slot; the probabilities feed the next step's self-conditioning as they are.
    """
    device = backend.device
    clamp_ids = clamp_ids.to(device)
    clamped = clamp_ids >= 0  # (B, L)
    batch, length = clamp_ids.shape
    gens = row_generators(seed, batch, device)  # per row: a request's result does not depend on its batch mates

    # 1. Start from noise (or the given canvas), clamps in place.
    canvas = init_canvas.to(device).clone() if init_canvas is not None else initial_canvas(backend, (batch, length), gens)
    canvas = torch.where(clamped, clamp_ids, canvas)
    masked = ~clamped if backend.noise == "mask" else None  # (B, L) slots still holding the mask id
    cols = (~clamped).any(0).nonzero().squeeze(-1)  # (C,) the columns whose logits any row needs

    argmax = canvas.clone()
    logprobs = torch.zeros(batch, length, device=device)
    steps = torch.zeros(batch, dtype=torch.long, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    dropped = torch.zeros(batch, dtype=torch.bool, device=device)
    history: list[torch.Tensor] = []  # the last `stability` argmax canvases (B, L), for the stop test
    feedback: torch.Tensor | None = None  # (b, C, V) probabilities of the last step's rows, self-conditioning
    fed_rows: torch.Tensor | None = None  # (b,) the rows `feedback` belongs to
    self_conditioning = cfg.self_conditioning and backend.noise == "uniform"
    passes = 0

    for step in range(cfg.max_steps):
        if cancelled is not None:
            stop = cancelled()
            if isinstance(stop, torch.Tensor):  # some rows' requests went away: they leave the batch
                stop = stop.to(device) & ~finished
                dropped |= stop
                finished |= stop
                if bool(finished.all()):
                    break
            elif stop:
                raise CancelledError("request cancelled")
        if deadline is not None and time.monotonic() > deadline:
            raise DeadlineExceededError(f"deadline passed after {step} denoising steps")
        rows = (~finished).nonzero().squeeze(-1)  # (b,) rows still denoising; finished rows keep their result
        if feedback is not None and len(rows) != len(fed_rows):
            feedback = feedback[torch.isin(fed_rows, rows)]  # rows that finished leave the feedback too

        # 2. One decoder pass over the active rows: logits of the clean canvas in the denoised columns.
        raw = backend.denoise(state, canvas[rows], feedback, rows, cols)  # (b, C, V) float32, ours to change
        passes += 1
        for process in processors:
            raw = process(raw, step, rows, cols)

        # 3. The draft: the argmax, the same at any temperature.
        top, draft = raw.max(-1)  # (b, C) each

        # 4. One log-softmax at this step's temperature: probabilities and entropies.
        logp = torch.log_softmax(raw / temperature(cfg, step), dim=-1)  # (b, C, V)
        probs = logp.exp()  # (b, C, V)
        entropy = torch.zeros(len(rows), length, device=device)  # (b, L); clamped columns: never eligible
        entropy[:, cols] = -torch.linalg.vecdot(probs, logp.clamp_(min=LOG_FLOOR))  # banned ids: p = 0, log p = -inf

        # 5. Accept the lowest-entropy slots under the entropy bound; sample those slots only.
        free = ~clamped[rows]
        eligible = free & masked[rows] if masked is not None else free
        floor = fill_floor(cfg, step, eligible, masked is not None)
        accept = entropy_bound_accept(entropy, eligible, cfg.entropy_bound, floor)  # (b, L)
        column = torch.full((length,), -1, dtype=torch.long, device=device)
        column[cols] = torch.arange(len(cols), device=device)  # (L,) a slot's index among the columns
        row_gens = [gens[r] for r in rows.tolist()]  # each row draws from its own generator
        if masked is not None:  # mask noise: accepted slots are frozen, the rest stay masked
            nxt = canvas[rows]
            masked[rows] = masked[rows] & ~accept
        else:  # uniform noise: every slot that is not accepted is re-noised, earlier acceptances included
            nxt = torch.stack([torch.randint(0, backend.vocab_size, (length,), generator=g, device=device)
                               for g in row_gens])  # (b, L)
        for i, g in enumerate(row_gens):
            slots = accept[i].nonzero().squeeze(-1)  # (a,) this row's accepted slots
            nxt[i, slots] = draw(probs[i, column[slots]], g)
        canvas[rows] = torch.where(clamped[rows], clamp_ids[rows], nxt)  # 6. clamps are re-imposed every step

        # 7. Record the draft, then stop rows whose draft is stable and confident.
        fixed = clamped[rows][:, cols]  # (b, C): a column another row denoises may be clamped in this one
        argmax[rows[:, None], cols] = torch.where(fixed, clamp_ids[rows][:, cols], draft)
        steps[rows] += 1
        stable = torch.ones(batch, dtype=torch.bool, device=device)
        if cfg.stability:
            if len(history) < cfg.stability:
                stable[:] = False
            for past in history:
                stable &= (past == argmax).all(-1)
            history = [*history, argmax.clone()][-cfg.stability :]
        confident = torch.zeros(batch, dtype=torch.bool, device=device)
        mean_h = (entropy * free).sum(-1) / free.sum(-1).clamp(min=1)
        confident[rows] = mean_h < cfg.confidence
        done_now = stable & confident & ~finished
        if masked is not None:
            done_now |= ~finished & ~masked.any(-1)
        finished |= done_now
        # 8. A row's last draft gets its log-probabilities at temperature 1 (the engine's confidence).
        last = done_now[rows] | (step == cfg.max_steps - 1)  # (b,)
        if bool(last.any()):
            logprobs[rows[last][:, None], cols] = top[last] - raw[last].logsumexp(-1)
        if self_conditioning:
            feedback, fed_rows = probs, rows
        if on_step is not None:
            on_step(step, argmax)
        if bool(finished.all()):
            break

    return SampleOutput(tokens=argmax, logprobs=logprobs, steps=steps, finished=finished & ~dropped,
                        forward_passes=passes, dropped=dropped)
