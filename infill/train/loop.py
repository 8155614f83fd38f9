"""`infill train`: the training loop. Holes come from a bank on the device, the model is the lean stack.

    corpus --(worker processes)--> BankBuilder --chunks--> DeviceBank (per-bucket tensors on the device)
    DeviceBank.batch --> objective.losses(LeanDiffusionGemma) --> AdamW (fused on CUDA)
                                  every few minutes: export bf16 shards (loadable by from_pretrained)

Nothing in a step waits on the host: batches are drawn on the device, noise is drawn on the device,
losses are summed on the device and read back every `log_every` steps. The schedule is
warmup-stable-decay on training seconds (or steps, for equal-compute comparisons), so a budget means
the same on any machine and an export taken before the decay is already a usable model.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from ..errors import BadInputError
from ..models.lean import LeanDiffusionGemma
from ..models.presets import WEIGHTS_DIR, build_model, copy_tokenizer
from .bank import BankBuilder, DeviceBank, bucket_sizes, build_examples
from .config import TrainConfig
from .corpus import CorpusConfig, collect_corpus, write_manifest
from .examples import ExampleConfig
from .objective import Objective, losses, noise_levels, objective

PROMPT_MARKERS = 4  # <bos> <fim_suffix> ... <fim_prefix> ... <fim_middle>
# Dense bf16 peak of the chips a run may meet (vendor figures), for the MFU estimate.
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "GH200": 989e12, "A100": 312e12, "L40S": 362e12}


def example_config(cfg: TrainConfig) -> ExampleConfig:
    return ExampleConfig(max_canvas=max(cfg.buckets), max_prompt_tokens=cfg.prompt_len - PROMPT_MARKERS)


def lr_at(cfg: TrainConfig, progress: float) -> float:
    """Warmup-stable-decay on progress in [0, 1]: linear warmup, flat, linear decay over the last `decay_share`."""
    warmup = min(0.1, max(0.01, cfg.warmup_s / cfg.time_budget_s))
    if progress < warmup:
        return cfg.lr * max(progress / warmup, 0.01)
    start = 1.0 - cfg.decay_share
    if progress < start:
        return cfg.lr
    frac = min(1.0, (progress - start) / max(cfg.decay_share, 1e-9))
    return cfg.lr * (1.0 - frac * (1.0 - cfg.final_lr_ratio))


def machine_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, {os.cpu_count()} CPU cores"
    return f"CPU only ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in sorted(PEAK_BF16_FLOPS.items(), key=lambda kv: -len(kv[0])) if k in name), None)


def step_flops(lean: LeanDiffusionGemma, batch: int, prompt: int, canvas: int, obj: Objective, ar: bool) -> float:
    """Matmul FLOPs of one training step as executed (padding included): 3x forward, + the self-conditioning pass."""
    cfg = lean.text_config
    h, heads, vocab = cfg.hidden_size, cfg.num_attention_heads, cfg.vocab_size

    def layer(tokens: int, keys: int) -> float:
        total = 0.0
        for i, kind in enumerate(cfg.layer_types):
            own = cfg.per_layer_config[i]
            d, kvh = own.head_dim, own.num_key_value_heads
            proj = h * heads * d * 2 + h * kvh * d * (2 if kind == "sliding_attention" else 1)
            ffn = 3 * h * cfg.intermediate_size + h * cfg.num_experts
            ffn += 3 * h * cfg.moe_intermediate_size * min(cfg.num_experts, 8 if cfg.num_experts <= 8 else cfg.top_k_experts)
            total += 2 * tokens * (proj + ffn) + 4 * tokens * keys * heads * d
        return total

    enc = layer(batch * prompt, prompt) + (2 * batch * prompt * h * vocab if ar else 0)
    dec = layer(batch * canvas, prompt + canvas) + 2 * batch * canvas * (h * vocab + 3 * h * cfg.intermediate_size)
    sc = dec + 2 * batch * canvas * vocab * h if obj.self_conditioning else 0.0
    return 3 * (enc + dec) + sc


# ----------------------------------------------------------------------------- weights in and out

def _shape_of(config) -> tuple:
    t = config.get_text_config(decoder=True)
    return (t.vocab_size, t.hidden_size, t.num_hidden_layers, t.num_attention_heads, t.intermediate_size,
            t.num_experts, t.moe_intermediate_size, tuple(t.layer_types))


def initial_model(cfg: TrainConfig, tokenizer_dir: Path, log) -> tuple[object, str]:
    """The transformers model training starts from (CPU, float32) and where its weights came from."""
    model, _ = build_model(cfg.preset, tokenizer_dir=tokenizer_dir, seed=cfg.seed)
    source = cfg.init_from
    if source is None:
        return model.float(), "random init"
    path = WEIGHTS_DIR if source == "bundled" else Path(source)
    from transformers import DiffusionGemmaForBlockDiffusion

    try:
        start = DiffusionGemmaForBlockDiffusion.from_pretrained(str(path), dtype=torch.float32, local_files_only=True)
    except (OSError, ValueError) as exc:
        log(f"cannot start from {path} ({exc}); random init")
        return model.float(), "random init"
    if _shape_of(start.config) != _shape_of(model.config):
        log(f"{path} has another shape than preset {cfg.preset!r}; random init")
        return model.float(), "random init"
    model.load_state_dict(start.state_dict())
    return model.float(), f"weights of {path} (fresh optimizer)"


def export_weights(lean: LeanDiffusionGemma, hf_model, tokenizer_dir: Path, out_dir: Path, obj: Objective,
                   report: dict | None = None, max_shard_mb: int = 15) -> list[Path]:
    """bf16 shards of at most `max_shard_mb` MB + config + tokenizer, loadable by from_pretrained.

    Written to a temporary directory and moved into place file by file, so a run killed mid-export
    leaves the previous export's files, never half-written ones.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    lean.to_hf(hf_model)
    hf_model.config.infill_noise = obj.sampler  # the engine picks its sampler from this
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=f".{out_dir.name}.export-") as tmp:
        staged = Path(tmp)
        hf_model.to(torch.bfloat16).save_pretrained(staged, max_shard_size=f"{max_shard_mb}MB")
        hf_model.float()
        copy_tokenizer(tokenizer_dir, staged)
        if report is not None:
            (staged / "training_report.json").write_text(json.dumps(report, indent=2))
        fresh = {p.name for p in staged.iterdir()}
        for old in out_dir.glob("model*.safetensors*"):
            if old.name not in fresh:
                old.unlink()
        for p in sorted(staged.iterdir()):
            os.replace(p, out_dir / p.name)
    return sorted(out_dir.glob("model*.safetensors"))


# ----------------------------------------------------------------------------- evaluation

@torch.no_grad()
def evaluate(lean: LeanDiffusionGemma, batches, obj: Objective, cfg: TrainConfig, mask_id: int | None,
             device: torch.device) -> dict[str, float]:
    """Validation losses at fixed noise levels (a grid of t per batch, fixed seed), no self-conditioning."""
    lean.eval()
    total_c = total_a = 0.0
    n = 0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(1234)
        for _, batch in batches:
            b = batch["canvas"].shape[0]
            t = torch.linspace(cfg.t_min, 1.0, b, device=device)[:, None]
            with autocast(cfg, device):
                c, a = losses(lean, batch, obj, t, mask_id, 0.0, ar=True)
            total_c += float(c) * b
            total_a += float(a) * b
            n += b
    lean.train()
    return {"val_loss": total_c / max(n, 1), "val_ar_loss": total_a / max(n, 1)}


def autocast(cfg: TrainConfig, device: torch.device):
    if device.type == "cuda" and cfg.amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def plot_losses(history: list[dict], path: Path, title: str) -> bool:
    """A loss curve, when matplotlib is installed (it is not on every training machine)."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    train = [h for h in history if "loss" in h]
    val = [h for h in history if "val_loss" in h]
    if train:
        ax.plot([h["tokens"] / 1e6 for h in train], [h["loss"] for h in train], label="train (canvas)", alpha=0.7)
    if val:
        ax.plot([h["tokens"] / 1e6 for h in val], [h["val_loss"] for h in val], "o-", label="validation (canvas)")
    ax.set_xlabel("tokens seen (millions)")
    ax.set_ylabel("cross-entropy (nats)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ----------------------------------------------------------------------------- the loop

def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _fake_batch(bank: DeviceBank, bucket: int, size: int, vocab: int) -> dict[str, torch.Tensor]:
    """A batch of the right shapes (for compiling before the bank has data)."""
    dev, p = bank.device, bank.prompt_len
    key_mask = torch.ones(size, p, dtype=torch.bool, device=dev)
    key_mask[0, : p // 2] = False
    return {"input_ids": torch.randint(11, vocab, (size, p), device=dev), "key_mask": key_mask,
            "positions": (key_mask.long().cumsum(-1) - 1).clamp(min=0),
            "canvas": torch.randint(11, vocab, (size, bucket), device=dev),
            "free": torch.ones(size, bucket, dtype=torch.bool, device=dev),
            "canvas_positions": torch.full((size, 1), p, device=dev) + torch.arange(bucket, device=dev)}


def train(cfg: TrainConfig, name: str, run_dir: Path, out_dir: Path | None, tokenizer_dir: Path,
          device: str = "auto", roots: list[Path] | None = None, log=print, deadline: float | None = None,
          on_export: Callable[[], object] | None = None) -> dict:
    """Train, evaluate and export. `deadline` (time.monotonic()) ends training early enough to export;
    `on_export` runs after every export (the device script packs the files it returns).

    Returns the training report (also written to run_dir/report.json and next to the weights).
    """
    run = Run(cfg, name, run_dir, out_dir, tokenizer_dir, _device(device), log, on_export or (lambda: None))
    try:
        run.start(roots)
        run.compile()
        run.loop(deadline)
        return run.finish()
    finally:
        run.close()


class Run:
    """One training run, in the order `train` calls its parts: start, compile, loop, finish."""

    def __init__(self, cfg: TrainConfig, name: str, run_dir: Path, out_dir: Path | None, tokenizer_dir: Path,
                 dev: torch.device, log, on_export: Callable[[], object]) -> None:
        self.cfg, self.name, self.run_dir, self.out_dir, self.tokenizer_dir = cfg, name, run_dir, out_dir, tokenizer_dir
        self.dev, self.log, self.on_export = dev, log, on_export
        self.obj = objective(cfg.objective)
        self.wall0 = time.perf_counter()
        self.builder: BankBuilder | None = None
        self.state = {"step": 0, "tokens": 0, "history": [], "train_s": 0.0, "flops": 0.0, "compile_s": 0.0}

    # -- 1. data and model ---------------------------------------------------------------------------
    def start(self, roots: list[Path] | None) -> None:
        cfg, dev, log = self.cfg, self.dev, self.log
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if dev.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        ex_cfg = example_config(cfg)
        # The corpus, then the bank builder starts at once: it works while the model is built and compiled.
        self.corpus = collect_corpus(roots, CorpusConfig(workers=max(1, cfg.workers)))
        train_files, val_files = self.corpus.split("train"), self.corpus.split("val")
        if cfg.max_files:
            train_files, val_files = train_files[: cfg.max_files], val_files[: max(4, cfg.max_files // 10)]
        if not train_files or not val_files:
            raise BadInputError(f"the corpus has {len(train_files)} training and {len(val_files)} validation "
                                "files; point --roots at more source code")
        self.val_files = val_files
        write_manifest(self.corpus, self.run_dir / "corpus_manifest.json")
        log(f"corpus: {len(train_files)} training files, {len(val_files)} validation files "
            f"({time.perf_counter() - self.wall0:.1f}s)")
        if dev.type == "cpu":  # bank workers and the training step share the cores: oversubscribed BLAS crawls
            torch.set_num_threads(max(1, (os.cpu_count() or 2) - cfg.workers))
        self.builder = BankBuilder(train_files, self.tokenizer_dir, ex_cfg, cfg.workers, seed=cfg.seed,
                                   files_per_job=cfg.files_per_job, max_examples=cfg.bank_capacity * len(cfg.buckets))

        self.hf_model, self.source = initial_model(cfg, self.tokenizer_dir, log)
        log(f"model: preset {cfg.preset}, {self.source}, objective {cfg.objective}")
        self.lean = LeanDiffusionGemma.from_hf(self.hf_model).to(dev).train()
        from .tokenizer import load_tokenizer

        ids = load_tokenizer(self.tokenizer_dir).special_ids()
        self.mask_id = ids.mask
        vocab = self.lean.text_config.vocab_size
        self.sizes = bucket_sizes(cfg.buckets, cfg.prompt_len, cfg.tokens_per_batch)
        self.bank = DeviceBank(cfg.buckets, cfg.prompt_len, cfg.bank_capacity, dev, ids.pad, vocab)
        # Validation holes from held-out packages, cut by a small pool of their own.
        val_bank = DeviceBank(cfg.buckets, cfg.prompt_len, cfg.val_examples, dev, ids.pad, vocab)
        val_bank.add(build_examples(val_files, self.tokenizer_dir, ex_cfg, workers=min(2, max(1, cfg.workers)),
                                    seed=10_000 + cfg.seed, max_examples=cfg.val_examples))
        self.val_batches = val_bank.fixed_batches(size=min(64, max(self.sizes.values())),
                                                  per_bucket=max(1, cfg.val_examples // 64))
        decay = [p for n, p in self.lean.named_parameters() if p.ndim >= 2 and "embed" not in n]
        no_decay = [p for n, p in self.lean.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                      {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=cfg.betas,
                                     fused=dev.type == "cuda")
        self.fn = self.step_losses

    def step_losses(self, batch: dict[str, torch.Tensor], t: torch.Tensor):
        return losses(self.lean, batch, self.obj, t, self.mask_id, self.cfg.self_cond_prob, ar=self.cfg.ar_weight > 0)

    # -- 2. compile ----------------------------------------------------------------------------------
    def compile(self) -> None:
        """Compile while the bank fills: one graph with symbolic batch and canvas sizes serves every bucket
        (one compile, not one per bucket); each bucket runs once so nothing compiles during training.
        A compiler failure falls back to eager: slower, never fatal."""
        cfg, dev = self.cfg, self.dev
        if not cfg.compile:
            return
        t0 = time.perf_counter()
        compiled = torch.compile(self.step_losses, dynamic=True)
        try:
            for b, size in self.sizes.items():
                fake = _fake_batch(self.bank, b, size, self.lean.text_config.vocab_size)
                with autocast(cfg, dev):
                    c, a = compiled(fake, noise_levels(size, cfg.t_min, dev))
                (c + cfg.ar_weight * a).backward()
            self.fn = compiled
        except Exception as exc:  # noqa: BLE001 (any compiler failure: eager still trains)
            self.log(f"torch.compile failed ({type(exc).__name__}: {str(exc)[:200]}); training eagerly")
        self.opt.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        self.state["compile_s"] = time.perf_counter() - t0
        self.log(f"compile: {self.state['compile_s']:.0f}s ({'compiled' if self.fn is compiled else 'eager'})")

    # -- 3. the loop -----------------------------------------------------------------------------------
    def loop(self, deadline: float | None) -> None:
        cfg, dev, state, bank, sizes = self.cfg, self.dev, self.state, self.bank, self.sizes
        bank.add(self.builder.take(wait_for=cfg.bank_min))
        self.log(f"bank: {len(bank):,} holes in hand ({self.builder.rate():,.0f}/s from {self.builder.workers} "
                 "workers)")
        budget = cfg.time_budget_s
        if deadline is not None:  # leave room for the final evaluation, export and report
            budget = min(budget, deadline - time.monotonic() - 30.0)
            self.log(f"training budget {budget:.0f}s (deadline)")
        flops = {b: step_flops(self.lean, size, cfg.prompt_len, b, self.obj, cfg.ar_weight > 0)
                 for b, size in sizes.items()}
        sums = torch.zeros(3, device=dev)  # canvas loss, encoder loss, tokens (since the last read-back)
        window_steps, window_t = 0, time.perf_counter()
        last_eval = last_export = 0.0
        rng = random.Random(cfg.seed)
        clock = time.perf_counter()
        while True:
            elapsed = state["train_s"] + time.perf_counter() - clock
            progress = max(elapsed / budget if budget > 0 else 1.0,
                           state["step"] / cfg.max_steps if cfg.max_steps else 0.0)
            if progress >= 1.0:
                break
            lr = lr_at(cfg, progress)
            for group in self.opt.param_groups:
                group["lr"] = lr
            filled = [b for b in bank.buckets if bank.count[b]]
            b = rng.choices(filled, [bank.count[x] / sizes[x] for x in filled])[0]
            batch = bank.batch(b, sizes[b])
            with autocast(cfg, dev):
                c_loss, a_loss = self.fn(batch, noise_levels(sizes[b], cfg.t_min, dev))
                loss = c_loss + cfg.ar_weight * a_loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.lean.parameters(), cfg.grad_clip, foreach=True)
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            sums += torch.stack([c_loss.detach().float(), a_loss.detach().float(),
                                 (batch["key_mask"].sum() + batch["free"].sum()).float()])
            state["step"] += 1
            state["flops"] += flops[b]
            window_steps += 1
            if state["step"] % cfg.log_every == 0 or state["step"] <= 2:
                self._record(sums, window_steps, time.perf_counter() - window_t, elapsed, lr)
                window_steps, window_t = 0, time.perf_counter()
                if not bank.full():
                    bank.add(self.builder.take())
            if elapsed - last_eval >= cfg.eval_every_s or (self.out_dir and elapsed - last_export >= cfg.export_every_s):
                state["train_s"] += time.perf_counter() - clock  # evaluation and export do not eat the budget
                if elapsed - last_eval >= cfg.eval_every_s:
                    self._evaluate()
                    last_eval = elapsed
                if self.out_dir and elapsed - last_export >= cfg.export_every_s:
                    export_weights(self.lean, self.hf_model, self.tokenizer_dir, self.out_dir, self.obj,
                                   {"config": self.name, "partial": True, "step": state["step"],
                                    "train_config": asdict(cfg)})
                    self.on_export()
                    last_export = elapsed
                clock = time.perf_counter()
        state["train_s"] += time.perf_counter() - clock
        state["tokens"] += int(sums[2].item())

    def _record(self, sums: torch.Tensor, steps: int, seconds: float, elapsed: float, lr: float) -> None:
        c, a, tok = sums.tolist()  # the one host sync, every log_every steps
        sums.zero_()
        state = self.state
        state["tokens"] += int(tok)
        entry = {"step": state["step"], "tokens": state["tokens"], "elapsed": round(elapsed, 2),
                 "loss": c / steps, "ar_loss": a / steps, "lr": lr, "tokens_per_s": tok / max(seconds, 1e-9)}
        state["history"].append(entry)
        if state["step"] % (self.cfg.log_every * 10) == 0 or state["step"] <= 2:
            self.log(f"step {state['step']}: loss {entry['loss']:.3f} (encoder {entry['ar_loss']:.3f}), "
                     f"{entry['tokens_per_s']:,.0f} tok/s, lr {lr:.2e}, bank {len(self.bank):,}")

    def _evaluate(self) -> dict[str, float]:
        val = evaluate(self.lean, self.val_batches, self.obj, self.cfg, self.mask_id, self.dev)
        self.state["history"].append({"step": self.state["step"], "tokens": self.state["tokens"], **val})
        self.log(f"step {self.state['step']}: validation loss {val['val_loss']:.4f}")
        return val

    # -- 4. report and export --------------------------------------------------------------------------
    def finish(self) -> dict:
        cfg, dev, state = self.cfg, self.dev, self.state
        val = self._evaluate()
        train_s = state["train_s"]
        peak = peak_flops(dev)
        achieved = state["flops"] / max(train_s, 1e-9)
        stats = self.builder.stats
        report = {
            "config": self.name, "train_config": asdict(cfg), "objective": cfg.objective, "init": self.source,
            "parameters": sum(p.numel() for p in self.hf_model.parameters()), "steps": state["step"],
            "tokens": state["tokens"], "train_seconds": round(train_s, 1),
            "wall_seconds": round(time.perf_counter() - self.wall0, 1), "compile_seconds": round(state["compile_s"], 1),
            "tokens_per_second": round(state["tokens"] / max(train_s, 1e-9)),
            "model_tflops_per_second": round(achieved / 1e12, 2), "mfu": round(achieved / peak, 4) if peak else None,
            "machine": machine_description(dev), "torch": torch.__version__,
            "validation_loss": round(val["val_loss"], 4), "validation_encoder_loss": round(val["val_ar_loss"], 4),
            "bank": {**self.bank.summary(), "built": stats.examples, "epochs_started": stats.epochs_started,
                     "build_rate_per_s": round(self.builder.rate()), "worker_cpu_seconds": round(stats.cpu_seconds),
                     "kinds": dict(stats.kinds.most_common()), "seam": stats.seam},
            "batch_sizes": {str(k): v for k, v in self.sizes.items()},
            "data": {"train_files": len(self.corpus.split("train")), "validation_files": len(self.val_files),
                     "languages": dict(Counter(f.language for f in self.corpus.files).most_common())},
        }
        (self.run_dir / "report.json").write_text(json.dumps(report, indent=2))
        (self.run_dir / "history.json").write_text(json.dumps(state["history"]))
        plot_losses(state["history"], self.run_dir / "loss.png",
                    f"infill train --config {self.name} ({machine_description(dev)})")
        if self.out_dir is not None:
            shards = export_weights(self.lean, self.hf_model, self.tokenizer_dir, self.out_dir, self.obj, report)
            report["shards"] = [p.name for p in shards]
            report["size_bytes"] = sum(p.stat().st_size for p in shards)
            (self.out_dir / "training_report.json").write_text(json.dumps(report, indent=2))
            shutil.copy2(self.run_dir / "corpus_manifest.json", self.out_dir / "corpus_manifest.json")
            self.on_export()
        self.log(f"done: {state['step']} steps, {state['tokens']:,} tokens in {train_s:.0f}s "
                 f"({report['tokens_per_second']:,} tok/s), validation loss {val['val_loss']:.4f}")
        return report

    def close(self) -> None:
        if self.builder is not None:
            self.builder.close()


__all__ = ["train", "Run", "export_weights", "evaluate", "lr_at", "step_flops", "initial_model"]
