"""The denoising loop with nothing on the host: for a GPU, where every host look stalls the queue.

`infill.sampler.sample` reads results back every step (finished rows leave the batch, per-row random
generators, drafts streamed): right for a CPU, where a step costs tens of milliseconds anyway. On a GPU
a decoder step of the 26B model is a few milliseconds and each read-back drains the queue. This loop
keeps the batch fixed (finished rows are frozen, not removed), draws with one generator, samples with
the Gumbel-max trick (one argmax, no `multinomial`), applies acceptance, clamps and the stop test as
tensor ops, and looks at the host once every `check_every` steps. With `StaticDecoder.step` captured as
a CUDA graph, a step is one graph launch plus a handful of kernels.

    out = denoise_on_device(decoder_step, clamp_ids, SamplerConfig(max_steps=16), noise="uniform",
                            vocab_size=V, generator=g)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .sampler import SamplerConfig, entropy_bound_accept

# decoder_step(canvas (B, L), self-conditioning logits (B, L, V) or None) -> logits (B, L, V) float32
DecoderStep = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


@dataclass
class DeviceSampleOutput:
    tokens: torch.Tensor  # (B, L) argmax canvas at each row's last step
    steps: torch.Tensor  # (B,) steps each row ran before it stopped (or the budget)
    finished: torch.Tensor  # (B,) rows that stopped adaptively
    forward_passes: int  # decoder passes run (the whole batch each time)


@torch.no_grad()
def denoise_on_device(step: DecoderStep, clamp_ids: torch.Tensor, cfg: SamplerConfig, noise: str, vocab_size: int,
                      mask_id: int | None = None, generator: torch.Generator | None = None,
                      check_every: int = 4) -> DeviceSampleOutput:
    device = clamp_ids.device
    batch, length = clamp_ids.shape
    clamped = clamp_ids >= 0  # (B, L)
    free = ~clamped
    n_free = free.sum(-1).clamp(min=1)  # (B,)
    # Temperatures of every step, computed once: t_max at step 0 down to ~t_min at the last.
    remaining = cfg.max_steps - torch.arange(cfg.max_steps, device=device, dtype=torch.float32)
    temps = cfg.t_min + (cfg.t_max - cfg.t_min) * remaining / cfg.max_steps  # (S,)

    if noise == "mask":
        assert mask_id is not None, "mask noise needs a mask id"
        canvas = torch.full_like(clamp_ids, mask_id)
    else:
        canvas = torch.randint(0, vocab_size, (batch, length), device=device, generator=generator)
    canvas = torch.where(clamped, clamp_ids, canvas)
    masked = free.clone() if noise == "mask" else None  # (B, L) slots still holding the mask id
    argmax = canvas.clone()
    previous = torch.full_like(canvas, -1)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    steps = torch.zeros(batch, dtype=torch.long, device=device)
    self_cond = None
    passes = 0

    for i in range(cfg.max_steps):
        logits = step(canvas, self_cond)  # (B, L, V)
        passes += 1
        scaled = logits / temps[i]
        logp = torch.log_softmax(scaled, dim=-1)
        entropy = -(logp.exp() * logp).sum(-1)  # (B, L)
        draft = scaled.argmax(-1)  # (B, L)
        gumbel = -torch.log(-torch.log(torch.rand(scaled.shape, device=device, generator=generator)
                                       .clamp_(1e-20, 1.0)))
        proposal = (logp + gumbel).argmax(-1)  # a sample of softmax(scaled) per slot, in one argmax

        eligible = free & masked if masked is not None else free
        accept = entropy_bound_accept(entropy, eligible, cfg.entropy_bound) & ~finished[:, None]
        if masked is not None:
            nxt = torch.where(accept, proposal, canvas)
            masked &= ~accept
        else:
            renoise = torch.randint(0, vocab_size, (batch, length), device=device, generator=generator)
            nxt = torch.where(accept, proposal, renoise)
        nxt = torch.where(clamped, clamp_ids, nxt)
        live = ~finished[:, None]
        canvas = torch.where(live, nxt, canvas)  # finished rows stay as they were
        current = torch.where(clamped, clamp_ids, draft)
        argmax = torch.where(live, current, argmax)
        steps += (~finished).long()

        stable = (current == previous).all(-1) if cfg.stability else torch.ones_like(finished)
        confident = (entropy * free).sum(-1) / n_free < cfg.confidence
        done = stable & confident
        if masked is not None:
            done |= ~masked.any(-1)
        finished |= done
        previous = current
        if cfg.self_conditioning and noise == "uniform":
            self_cond = scaled
        if (i + 1) % check_every == 0 and bool(finished.all()):  # the only host look
            break
    return DeviceSampleOutput(tokens=argmax, steps=steps, finished=finished, forward_passes=passes)


__all__ = ["denoise_on_device", "DeviceSampleOutput"]
