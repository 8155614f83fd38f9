"""Training objectives: uniform-state (DiffusionGemma's) or absorbing-mask discrete diffusion.

One step, for a batch of (encoder prompt, clean canvas) from `DeviceBank.batch`:
  1. a noise level t ~ U(t_min, 1) per example; each free canvas slot is hit with probability t, and
     at least one is (a row with nothing to predict teaches nothing). Clamped slots stay clean, as at
     inference. A hit slot becomes a uniform random id (uniform) or the mask id (mask);
  2. the encoder runs once (causal) -> per-layer K/V, plus a next-token loss on the prompt;
  3. uniform only: self-conditioning on a share of the examples, from a first decoder pass without
     gradients (the sampler feeds each step's logits back); the mask sampler does not use it;
  4. canvas loss: cross-entropy of the clean canvas over the free slots (uniform: any of them may be
     corrupt) or over the hit slots (mask: the others are given).

`losses` runs on `LeanDiffusionGemma` (fast); `reference_losses` is the same objective through
transformers' class, kept for the parity test and for measuring the old loop against the new.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .config import OBJECTIVES, Objective, objective


def _gen(generator) -> dict:
    """generator=None passed explicitly breaks torch.compile with symbolic shapes: pass it only when set."""
    return {} if generator is None else {"generator": generator}


def noise_levels(batch: int, t_min: float, device, generator=None) -> torch.Tensor:
    return torch.rand(batch, 1, device=device, **_gen(generator)) * (1 - t_min) + t_min  # (B, 1)


def corrupt(canvas: torch.Tensor, free: torch.Tensor, t: torch.Tensor, obj: Objective, vocab: int,
            mask_id: int | None, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(noisy canvas (B, L), hit (B, L) bool). At least one free slot of each row is hit."""
    u = torch.rand(canvas.shape, device=canvas.device, **_gen(generator))  # (B, L)
    u = u.masked_fill(~free, 2.0)
    hit = (u < t) & free
    first = u.argmin(-1, keepdim=True)  # the lowest draw is hit whatever t is
    hit = hit | (torch.zeros_like(hit).scatter(-1, first, True) & free)
    if obj.noise == "mask":
        assert mask_id is not None, "the mask objective needs a mask id"
        replacement = torch.full_like(canvas, mask_id)
    else:
        replacement = torch.randint(0, vocab, canvas.shape, device=canvas.device, **_gen(generator))
    return torch.where(hit, replacement, canvas), hit


def _masked_mean(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    keep = keep.float()
    return (values * keep).sum() / keep.sum().clamp(min=1.0)


def canvas_loss(logits: torch.Tensor, canvas: torch.Tensor, free: torch.Tensor, hit: torch.Tensor,
                obj: Objective) -> torch.Tensor:
    ce = F.cross_entropy(logits.flatten(0, 1), canvas.flatten(), reduction="none").view(canvas.shape)  # (B, L)
    return _masked_mean(ce, hit if obj.loss_on == "hit" else free)


def next_token_loss(logits_of: Callable[[torch.Tensor], torch.Tensor], hidden: torch.Tensor, ids: torch.Tensor,
                    key_mask: torch.Tensor) -> torch.Tensor:
    """Encoder next-token loss over real prompt tokens: hidden (B, P, H) predicts ids shifted by one."""
    keep = key_mask[:, 1:] & key_mask[:, :-1]  # (B, P - 1)
    logits = logits_of(hidden[:, :-1])  # (B, P - 1, V)
    ce = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten(), reduction="none").view(keep.shape)
    return _masked_mean(ce, keep)


def losses(lean, batch: dict[str, torch.Tensor], obj: Objective, t: torch.Tensor, mask_id: int | None,
           self_cond_prob: float, ar: bool, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(canvas loss, encoder next-token loss) on the lean model; t (B, 1) noise levels."""
    vocab = lean.text_config.vocab_size
    noisy, hit = corrupt(batch["canvas"], batch["free"], t, obj, vocab, mask_id, generator)
    enc = lean.encode(batch["input_ids"], batch["positions"], batch["key_mask"])
    decode = dict(canvas=noisy, positions=batch["canvas_positions"], kv=enc.kv, key_mask=batch["key_mask"])
    sc_logits = sc_mask = None
    if obj.self_conditioning and self_cond_prob > 0:
        with torch.no_grad():
            sc_logits = lean.decode(**decode)
        sc_mask = torch.rand(noisy.shape[0], device=noisy.device, **_gen(generator)) < self_cond_prob
    logits = lean.decode(**decode, self_conditioning_logits=sc_logits, self_conditioning_mask=sc_mask)
    c_loss = canvas_loss(logits, batch["canvas"], batch["free"], hit, obj)
    a_loss = next_token_loss(lean.logits, enc.hidden, batch["input_ids"], batch["key_mask"]) if ar \
        else torch.zeros((), device=noisy.device)
    return c_loss, a_loss


def reference_losses(model, batch: dict[str, torch.Tensor], obj: Objective, t: torch.Tensor, mask_id: int | None,
                     self_cond_prob: float, ar: bool, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
    """`losses` through transformers' DiffusionGemmaForBlockDiffusion (the first GPU run's path)."""
    from transformers.cache_utils import DynamicCache

    text_cfg = model.config.get_text_config(decoder=True)
    noisy, hit = corrupt(batch["canvas"], batch["free"], t, obj, text_cfg.vocab_size, mask_id, generator)
    mask = batch["key_mask"].long()
    cache = DynamicCache(config=text_cfg)
    enc = model.model.encoder(input_ids=batch["input_ids"], attention_mask=mask, position_ids=batch["positions"],
                              cache=cache)
    decode = dict(cache=cache, decoder_input_ids=noisy, decoder_position_ids=batch["canvas_positions"],
                  decoder_attention_mask=torch.cat([mask, torch.ones_like(noisy)], dim=-1))
    sc_logits = sc_mask = None
    if obj.self_conditioning and self_cond_prob > 0:
        with torch.no_grad():
            sc_logits = model(**decode).logits.to(model.dtype)
        sc_mask = torch.rand(noisy.shape[0], device=noisy.device, generator=generator) < self_cond_prob
    logits = model(**decode, self_conditioning_logits=sc_logits, self_conditioning_mask=sc_mask).logits
    c_loss = canvas_loss(logits, batch["canvas"], batch["free"], hit, obj)
    if not ar:
        return c_loss, torch.zeros((), device=noisy.device)
    cap = text_cfg.final_logit_softcapping or 30.0

    def head(h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(model.lm_head(h).float() / cap) * cap

    return c_loss, next_token_loss(head, enc.last_hidden_state, batch["input_ids"], batch["key_mask"])


__all__ = ["Objective", "OBJECTIVES", "objective", "corrupt", "losses", "reference_losses", "noise_levels"]
