"""Named training configurations. Schedules run on wall-clock time, so a budget means the same on any machine."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import lookup


@dataclass(frozen=True)
class Objective:
    noise: str  # what a hit slot becomes: "uniform" (a random id) or "mask" (the mask id)
    loss_on: str  # "free" (every noisable slot) or "hit" (only the corrupted ones)
    self_conditioning: bool  # train the decoder to use the previous step's logits
    sampler: str  # which denoising loop serves a model trained this way (the checkpoint records it)


# Training objectives (the losses are in infill.train.objective; this table stays torch-free for the CLI).
OBJECTIVES: dict[str, Objective] = {
    "uniform": Objective(noise="uniform", loss_on="free", self_conditioning=True, sampler="uniform"),
    "mask": Objective(noise="mask", loss_on="hit", self_conditioning=False, sampler="mask"),
}


def objective(name: str) -> Objective:
    return lookup(OBJECTIVES, "training objective", name)


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "small"  # model shape from infill.models.presets (the bundled model's)
    objective: str = "mask"  # infill.train.objective.OBJECTIVES; chosen by the A/B in README ("Objective")
    init_from: str | None = "bundled"  # "bundled", a checkpoint directory, or None (random init); a shape
    #                                    that does not match the preset falls back to random init, with a log line
    prompt_len: int = 384  # encoder tokens per example (prefix + suffix + 4 markers), left-padded
    buckets: tuple[int, ...] = (32, 64, 128)  # canvas slots per bucket; the longest middle is max - 1
    tokens_per_batch: int = 16_384  # prompt + canvas slots per step; each bucket's batch size follows
    lr: float = 2e-3  # peak AdamW learning rate
    final_lr_ratio: float = 0.05  # the decay ends at lr * this
    warmup_s: float = 10.0  # linear warmup, seconds of training
    decay_share: float = 0.25  # warmup-stable-decay: the last quarter of the budget decays linearly
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 1.0
    time_budget_s: float = 600.0  # seconds of training (compile, bank warm-up, evaluation and export excluded)
    max_steps: int | None = None  # optional hard step limit (tests, equal-compute A/B runs)
    self_cond_prob: float = 0.5  # share of examples trained with self-conditioning (uniform objective only)
    ar_weight: float = 1.0  # weight of the encoder's next-token loss (NeMo's recipe uses 1.0)
    t_min: float = 0.02  # noise levels are drawn from U(t_min, 1)
    workers: int = 1  # processes that cut holes into the bank (all cores but one on the GPU machine)
    bank_capacity: int = 200_000  # examples the device bank holds per bucket
    bank_min: int = 2_000  # examples in hand before the first step
    files_per_job: int = 16  # files a bank worker cuts per job
    val_examples: int = 512  # validation holes (held-out packages)
    eval_every_s: float = 120.0
    export_every_s: float = 120.0  # weights exported this often, so a run cut off early still returns them
    log_every: int = 20  # steps between loss readbacks (each one is a host sync)
    amp: bool = True  # bf16 autocast on CUDA
    compile: bool = False  # torch.compile the loss (CUDA; pays after ~a minute of compiling)
    seed: int = 0
    max_files: int | None = None  # cap the corpus (tests, dry runs)


TRAIN_CONFIGS: dict[str, TrainConfig] = {
    # Seconds: proves the pipeline end to end in tests.
    "smoke": TrainConfig(preset="tiny", init_from=None, prompt_len=96, buckets=(16, 32), tokens_per_batch=1024,
                         time_budget_s=20, max_steps=6, warmup_s=1, eval_every_s=1e9, export_every_s=1e9,
                         max_files=40, bank_capacity=4096, bank_min=64, val_examples=32, log_every=2,
                         files_per_job=4),
    # An hour on 2 CPU cores. Proves the pipeline; does not make a useful model (see README).
    "cpu": TrainConfig(prompt_len=256, buckets=(32, 64), tokens_per_batch=3_072, lr=1.5e-3, time_budget_s=3600,
                       init_from=None, eval_every_s=600, export_every_s=600, bank_capacity=100_000, bank_min=500,
                       val_examples=128, log_every=10),
    # About 7 minutes of one H100/H200 inside a 9-minute device command: what the shipped weights come from.
    "gpu": TrainConfig(tokens_per_batch=98_304, lr=2e-3, time_budget_s=420, workers=14, compile=True,
                       bank_capacity=1_500_000, bank_min=20_000, val_examples=2048, log_every=25, warmup_s=15),
}


def train_config(name: str, **overrides) -> TrainConfig:
    cfg = lookup(TRAIN_CONFIGS, "training configuration", name)
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
