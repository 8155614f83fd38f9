"""A scripted backend for sampler and engine unit tests: its logits point at a known canvas."""

from __future__ import annotations

import torch

from infill.models.base import CacheStats, PromptState
from infill.prompt import SpecialIds


class CharTokenizer:
    """One token per character (ids 16..), so tests can read canvases as text."""

    OFFSET = 16

    def encode(self, text: str) -> list[int]:
        return [ord(c) + self.OFFSET for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(i - self.OFFSET) for i in ids if i >= self.OFFSET)


class ScriptedBackend:
    """Denoises toward `target` (one row, or one row per distinct first canvas id): logit `sharpness` on the
    target id, 0 elsewhere. A target id of -1, and every slot in `noisy_slots`, stays uncertain forever.

    Rows are told apart by the id clamped in their last slot (rows leave the batch as they finish).
    """

    prompt_format = "fim"
    device = torch.device("cpu")
    dtype = torch.float32

    def __init__(self, target: torch.Tensor, vocab: int = 200, sharpness: float = 30.0, noise: str = "uniform",
                 noisy_slots: tuple[int, ...] = ()) -> None:
        self.model_id = "scripted"
        self.target = target if target.dim() == 2 else target[None]
        self.vocab_size = vocab
        self.sharpness = sharpness
        self.noise = noise
        self.noisy_slots = noisy_slots
        self.rows_seen: list[int] = []
        self.tokenizer = CharTokenizer()
        self.ids = SpecialIds(pad=0, eos=(1,), bos=2, fim_prefix=6, fim_suffix=7, fim_middle=8, mask=9,
                              banned=(3, 4, 5, 6, 7, 8, 9))
        self.cache_stats = CacheStats()
        self.calls: list[torch.Tensor] = []
        self.self_conditioning_seen: list[bool] = []
        self.feedback: list[torch.Tensor | None] = []  # the self-conditioning probabilities of each call
        self.slots_seen: list[torch.Tensor] = []  # the canvas columns each call returned logits for

    def prefill(self, prompt) -> PromptState:
        self.cache_stats.prefills += 1
        return PromptState(prompt=prompt, position=len(prompt.encoder_ids))

    def merge(self, states, rows):
        return states[0]

    def denoise(self, state, canvas, self_conditioning, rows=None, slots=None):
        self.calls.append(canvas.clone())
        self.self_conditioning_seen.append(self_conditioning is not None)
        self.feedback.append(None if self_conditioning is None else self_conditioning.clone())
        b, length = canvas.shape
        if self.target.shape[0] == 1:
            target = self.target.expand(b, -1)[:, :length]
        else:  # pick each row's target by its clamped last slot
            keys = self.target[:, -1]
            target = torch.stack([self.target[int((keys == c[-1]).nonzero()[0])] for c in canvas])
        uncertain = target < 0
        logits = torch.zeros(b, length, self.vocab_size)
        logits.scatter_(-1, target.clamp(min=0)[..., None], self.sharpness)
        logits[uncertain] = 0.0
        self.rows_seen.append(b)
        for slot in self.noisy_slots:
            logits[:, slot] = 0.0  # uniform: maximal entropy, never confident
        self.slots_seen.append(torch.arange(length) if slots is None else slots.clone())
        return logits if slots is None else logits[:, slots]

    def describe(self) -> dict:
        return {"model": self.model_id}
