"""Named training configurations. Schedules run on wall-clock time, so a budget means the same on any machine."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import lookup


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "small"  # model shape from infill.models.presets
    prompt_len: int = 384  # encoder tokens per example (prefix + suffix + markers), left-padded
    canvas_len: int = 128  # canvas slots per example: the longest middle trained is canvas_len - 1
    batch_size: int = 32
    lr: float = 2e-3  # peak AdamW learning rate
    min_lr_ratio: float = 0.1  # cosine decays to lr * this at the end of the budget
    warmup: float = 0.03  # fraction of the budget spent warming up
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 1.0
    time_budget_s: float = 600.0  # training stops after this much wall time (evaluation excluded)
    max_steps: int | None = None  # optional hard step limit (tests)
    self_cond_prob: float = 0.5  # share of examples trained with self-conditioning logits
    ar_weight: float = 0.25  # weight of the encoder's next-token loss
    t_min: float = 0.02  # noise levels are drawn from U(t_min, 1)
    workers: int = 1  # data loader processes
    eval_every_s: float = 120.0
    eval_batches: int = 4
    ckpt_every_s: float = 300.0
    amp: bool = True  # bf16 autocast on CUDA
    compile: bool = False  # torch.compile the model (CUDA only)
    seed: int = 0
    max_files: int | None = None  # cap the corpus (tests)


TRAIN_CONFIGS: dict[str, TrainConfig] = {
    # Seconds: proves the pipeline end to end in tests.
    "smoke": TrainConfig(preset="tiny", prompt_len=96, canvas_len=32, batch_size=4, time_budget_s=20, max_steps=6,
                         eval_every_s=1e9, eval_batches=1, ckpt_every_s=1e9, max_files=40, workers=0),
    # About an hour on 2 CPU cores. Proves the pipeline; does not make a useful model (see README).
    "cpu": TrainConfig(batch_size=8, prompt_len=256, canvas_len=64, lr=1.5e-3, time_budget_s=3600, workers=1,
                       eval_every_s=600, ckpt_every_s=600),
    # About 10 minutes on one H100/H200: the configuration the shipped weights should come from.
    "gpu": TrainConfig(batch_size=128, lr=2e-3, time_budget_s=480, workers=14, eval_every_s=120, ckpt_every_s=120),
}


def train_config(name: str, **overrides) -> TrainConfig:
    cfg = lookup(TRAIN_CONFIGS, "training configuration", name)
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
