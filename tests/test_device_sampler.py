"""The device-side denoising loop (GPU path): acceptance, clamps and stopping without host reads."""

from __future__ import annotations

import torch

from infill.device_sampler import denoise_on_device
from infill.sampler import SamplerConfig

V = 50


def confident(target: torch.Tensor, sharpness: float = 40.0):
    """A decoder step that always predicts `target` (B, L) with near-zero entropy, and counts its calls."""
    calls = []

    def step(canvas, self_cond):
        calls.append(self_cond is not None)
        return torch.nn.functional.one_hot(target, V).float() * sharpness

    return step, calls


def test_confident_model_stops_after_the_stability_check_with_clamps_kept():
    target = torch.randint(5, V, (3, 8))
    clamp = torch.full((3, 8), -1)
    clamp[:, -2:] = 1  # a seam: the last two slots are clamped
    step, calls = confident(target)
    out = denoise_on_device(step, clamp, SamplerConfig(max_steps=16), "uniform", V, check_every=1,
                            generator=torch.Generator().manual_seed(0))
    assert out.finished.all() and (out.steps == 2).all() and out.forward_passes == 2
    assert torch.equal(out.tokens[:, :-2], target[:, :-2]) and (out.tokens[:, -2:] == 1).all()
    assert calls == [False, True]  # the second step sees the first one's logits


def test_mask_noise_unmasks_every_free_slot_and_freezes_accepted_ones():
    target = torch.randint(5, V, (2, 6))
    seen = []

    def step(canvas, self_cond):
        seen.append(canvas.clone())
        logits = torch.nn.functional.one_hot(target, V).float() * 2.0  # unconfident: few slots per step
        return logits

    out = denoise_on_device(step, torch.full((2, 6), -1), SamplerConfig(max_steps=30, entropy_bound=0.01),
                            "mask", V, mask_id=0, generator=torch.Generator().manual_seed(1))
    assert out.finished.all() and out.forward_passes <= 30
    assert seen[0].eq(0).all()  # starts all-mask
    for before, after in zip(seen, seen[1:], strict=False):
        kept = before != 0
        assert torch.equal(after[kept], before[kept])  # absorbing: an unmasked slot never changes again
    assert not out.tokens.eq(0).any()


def test_budget_ends_rows_that_never_settle_and_the_host_looks_rarely():
    def noisy(canvas, self_cond):
        return torch.randn(canvas.shape[0], canvas.shape[1], V)

    out = denoise_on_device(noisy, torch.full((2, 5), -1), SamplerConfig(max_steps=7), "uniform", V, check_every=4)
    assert out.forward_passes == 7 and not out.finished.any() and (out.steps == 7).all()
