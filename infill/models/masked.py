"""Mask-absorbing diffusion checkpoints (Dream, DiffuCoder, Open-dCoder, LLaDA) behind the same protocol.

These models have no encoder cache: prefix, canvas and suffix form one bidirectional sequence, and the
noised slots hold a mask id. Models adapted from autoregressive ones (Dream, DiffuCoder, Open-dCoder)
predict token i from position i - 1 ("shifted logits"); LLaDA, trained from scratch, does not.
Their modeling code ships with the checkpoint, so loading needs `trust_remote_code`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..errors import ModelLoadError
from .base import CacheStats, LoadOptions, PromptState, placement
from .tokenizer import HFTokenizer, special_ids


@dataclass(frozen=True)
class MaskedFamily:
    shift_logits: bool  # logits at position i predict token i + 1
    mask_id: int | None = None  # when neither tokenizer nor config names one


# model_type (config.json) -> family facts, from the checkpoints' own code (see research/dllm_anchors.md)
FAMILIES: dict[str, MaskedFamily] = {
    "Dream": MaskedFamily(shift_logits=True, mask_id=151666),  # Dream, Dream-Coder, DiffuCoder
    "qwen2": MaskedFamily(shift_logits=True),  # Open-dCoder ships a custom Qwen2
    "llada": MaskedFamily(shift_logits=False, mask_id=126336),
    "LLaDA": MaskedFamily(shift_logits=False, mask_id=126336),
}
DEFAULT_FAMILY = MaskedFamily(shift_logits=True)


class MaskedDiffusionBackend:
    noise = "mask"
    prompt_format = "masked"

    def __init__(self, model, tokenizer, model_id: str, family: MaskedFamily, mask_id: int) -> None:
        self.model = model.eval()
        self.tokenizer = HFTokenizer(tokenizer)
        self.model_id = model_id
        self.family = family
        base = special_ids(self.tokenizer)
        self.ids = type(base)(pad=base.pad, eos=base.eos, bos=base.bos, mask=mask_id,
                              banned=tuple(sorted({*base.banned, mask_id})))
        self.vocab_size = model.config.vocab_size
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.cache_stats = CacheStats()

    @classmethod
    def load(cls, model_id: str, options: LoadOptions = LoadOptions()) -> MaskedDiffusionBackend:
        from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

        device, dtype = placement(options)
        kw = dict(trust_remote_code=options.trust_remote_code, local_files_only=True)
        try:
            config = AutoConfig.from_pretrained(model_id, **kw)
            tokenizer = AutoTokenizer.from_pretrained(model_id, **kw)
            try:
                model = AutoModelForCausalLM.from_pretrained(model_id, dtype=dtype, **kw)
            except ValueError:
                model = AutoModel.from_pretrained(model_id, dtype=dtype, **kw)
        except ValueError as exc:
            hint = "" if options.trust_remote_code else " (masked-diffusion checkpoints usually need --trust-remote-code)"
            raise ModelLoadError(f"could not load {model_id!r}: {exc}{hint}") from exc
        except OSError as exc:
            raise ModelLoadError(f"could not load {model_id!r}: {exc}") from exc
        family = FAMILIES.get(getattr(config, "model_type", ""), DEFAULT_FAMILY)
        mask_id = tokenizer.mask_token_id
        if mask_id is None:
            mask_id = getattr(config, "mask_token_id", None) or family.mask_id
        if mask_id is None:
            raise ModelLoadError(f"{model_id!r} names no mask token; it does not look like a masked-diffusion model")
        return cls(model.to(device), tokenizer, model_id, family, int(mask_id))

    def describe(self) -> dict:
        return {"model": self.model_id, "backend": "masked", "parameters": sum(p.numel() for p in self.model.parameters()),
                "device": str(self.device), "dtype": str(self.dtype).removeprefix("torch."),
                "prompt_format": self.prompt_format, "shift_logits": self.family.shift_logits}

    def prefill(self, prompt) -> PromptState:
        """Nothing to encode ahead: every step reads prefix + canvas + suffix again."""
        started = time.perf_counter()
        if self.family.shift_logits and not prompt.prefix_ids:
            raise ModelLoadError("a shifted-logits model needs at least one prefix token (a BOS)")
        prefix = torch.tensor([prompt.prefix_ids], dtype=torch.long, device=self.device)
        suffix = torch.tensor([prompt.suffix_ids], dtype=torch.long, device=self.device)
        self.cache_stats.prefills += 1
        self.cache_stats.seconds += time.perf_counter() - started
        return PromptState(prompt=prompt, position=prefix.shape[1], payload=(prefix, suffix))

    @torch.no_grad()
    def denoise(self, state: PromptState, canvas: torch.Tensor, self_conditioning: torch.Tensor | None,
                rows: torch.Tensor | None = None, slots: torch.Tensor | None = None) -> torch.Tensor:
        if slots is not None:  # the whole sequence runs anyway; these models take no self-conditioning
            return self.denoise(state, canvas, None, rows)[:, slots]
        if "members" in state.extra:  # merged prompts: one pass per prompt (these models take no padding mask)
            members = state.extra["members"]  # (B,) index of each row's prompt
            rows = torch.arange(len(members)) if rows is None else rows.cpu()
            out = torch.empty(canvas.shape[0], canvas.shape[1], self.vocab_size, device=self.device)
            for k, member in enumerate(state.payload):
                pick = (members[rows] == k).nonzero().squeeze(-1)
                if len(pick):
                    out[pick.to(self.device)] = self.denoise(member, canvas[pick.to(self.device)], None)
            return out
        prefix, suffix = state.payload
        batch, length = canvas.shape
        seq = torch.cat([prefix.expand(batch, -1), canvas, suffix.expand(batch, -1)], dim=1)  # (B, P + L + S)
        logits = self.model(input_ids=seq).logits.float()  # (B, T, V)
        start = state.position - 1 if self.family.shift_logits else state.position
        return logits[:, start : start + length]  # (B, L, V)

    def merge(self, states: list[PromptState], rows: list[int]) -> PromptState:
        members = torch.tensor([k for k, n in enumerate(rows) for _ in range(n)])
        return PromptState(prompt=states[0].prompt, position=states[0].position, payload=list(states),
                           extra={"members": members})

