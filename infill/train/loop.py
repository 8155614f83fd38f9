"""`infill train`: uniform-state discrete diffusion with infilling examples, on DiffusionGemma's own class.

One step, for a batch of (encoder prompt, clean canvas):
  1. draw a noise level t ~ U(t_min, 1) per example; each free canvas slot is replaced by a random id with
     probability t (uniform-state noise, as DiffusionGemma; clamped slots stay clean, as at inference);
  2. encode the prompt once (causal encoder) -> KV cache, plus a next-token loss on the prompt (cheap signal);
  3. self-conditioning on half the examples: a first decoder pass without gradients gives logits that
     the second pass receives, as the sampler feeds the previous step's logits back;
  4. loss = cross-entropy of the clean canvas over free slots (+ ar_weight x the encoder loss).
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from ..models.presets import build_model, copy_tokenizer
from .config import TrainConfig


def lr_at(cfg: TrainConfig, progress: float) -> float:
    """Linear warmup, then cosine to min_lr_ratio; progress in [0, 1] of the time budget."""
    if progress < cfg.warmup:
        return cfg.lr * max(progress / cfg.warmup, 1e-3)
    p = min(1.0, (progress - cfg.warmup) / max(1e-9, 1 - cfg.warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def noise_canvas(canvas: torch.Tensor, noise_mask: torch.Tensor, vocab: int, t_min: float,
                 generator: torch.Generator | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
    """Replace each noisable slot by a uniform random id with probability t (per example)."""
    b, length = canvas.shape
    if t is None:
        t = torch.rand(b, 1, device=canvas.device, generator=generator) * (1 - t_min) + t_min  # (B, 1)
    hit = (torch.rand(b, length, device=canvas.device, generator=generator) < t) & noise_mask
    noise = torch.randint(0, vocab, (b, length), device=canvas.device, generator=generator)
    return torch.where(hit, noise, canvas)


def diffusion_losses(model, batch: dict[str, torch.Tensor], cfg: TrainConfig, generator=None,
                     t: torch.Tensor | None = None, self_cond: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(canvas loss, encoder next-token loss) for one batch."""
    from transformers.cache_utils import DynamicCache

    text_cfg = model.config.get_text_config(decoder=True)
    vocab = text_cfg.vocab_size
    canvas, free = batch["canvas"], batch["noise_mask"]
    noisy = noise_canvas(canvas, free, vocab, cfg.t_min, generator, t)  # (B, L)
    decoder_mask = torch.cat([batch["attention_mask"], torch.ones_like(canvas)], dim=-1)  # (B, P + L)

    # Encoder: one pass, its KV cache serves both decoder passes.
    cache = DynamicCache(config=text_cfg)
    enc = model.model.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                              position_ids=batch["position_ids"], cache=cache)
    decode = dict(cache=cache, decoder_input_ids=noisy, decoder_position_ids=batch["decoder_position_ids"],
                  decoder_attention_mask=decoder_mask)
    sc_logits = sc_mask = None
    if self_cond and cfg.self_cond_prob > 0:
        with torch.no_grad():
            sc_logits = model(**decode).logits.to(model.dtype)  # (B, L, V)
        sc_mask = torch.rand(canvas.shape[0], device=canvas.device, generator=generator) < cfg.self_cond_prob
    logits = model(**decode, self_conditioning_logits=sc_logits, self_conditioning_mask=sc_mask).logits
    canvas_loss = F.cross_entropy(logits[free].float(), canvas[free])

    # Encoder next-token loss on real (non-pad) prompt tokens.
    if cfg.ar_weight > 0:
        hidden = enc.last_hidden_state[:, :-1]  # (B, P - 1, H)
        target = batch["input_ids"][:, 1:]
        keep = batch["attention_mask"][:, 1:].bool() & batch["attention_mask"][:, :-1].bool()
        ar_logits = model.lm_head(hidden[keep])
        cap = text_cfg.final_logit_softcapping or 30.0
        ar_logits = torch.tanh(ar_logits.float() / cap) * cap
        ar_loss = F.cross_entropy(ar_logits, target[keep])
    else:
        ar_loss = torch.zeros((), device=canvas.device)
    return canvas_loss, ar_loss


@torch.no_grad()
def evaluate(model, batches: list[dict[str, torch.Tensor]], cfg: TrainConfig, device) -> float:
    """Validation canvas loss at fixed noise levels (t on a grid, fixed seed), without self-conditioning."""
    model.eval()
    g = torch.Generator(device=device)
    g.manual_seed(1234)
    total, n = 0.0, 0
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        b = batch["canvas"].shape[0]
        t = torch.linspace(cfg.t_min, 1.0, b, device=device)[:, None]
        with _autocast(cfg, device):
            loss, _ = diffusion_losses(model, batch, cfg, g, t=t, self_cond=False)
        total += float(loss) * b
        n += b
    model.train()
    return total / max(n, 1)


def _autocast(cfg: TrainConfig, device: torch.device):
    if device.type == "cuda" and cfg.amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def export_weights(model, tokenizer_dir: Path, out_dir: Path, max_shard_mb: int = 15) -> list[Path]:
    """Save in bf16 shards of at most `max_shard_mb` MB, with the tokenizer, loadable by from_pretrained."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("model*.safetensors*"):
        old.unlink()
    state_dtype = next(model.parameters()).dtype
    model.to(torch.bfloat16).save_pretrained(out_dir, max_shard_size=f"{max_shard_mb}MB")
    model.to(state_dtype)
    copy_tokenizer(tokenizer_dir, out_dir)
    return sorted(out_dir.glob("model*.safetensors*"))


def plot_losses(history: list[dict], path: Path, title: str) -> None:
    import matplotlib

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


def machine_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, {os.cpu_count()} CPU cores"
    return f"CPU only ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def train(cfg: TrainConfig, name: str, run_dir: Path, out_dir: Path | None, tokenizer_dir: Path,
          device: str = "auto", resume: bool = False, roots: list[Path] | None = None, log=print) -> dict:
    """Train, checkpoint, evaluate and export. Returns the training report."""
    from tqdm import tqdm

    from .data import make_data

    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    torch.manual_seed(cfg.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    model, _ = build_model(cfg.preset, tokenizer_dir=tokenizer_dir, seed=cfg.seed, device=str(dev))
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    train_iter, val_batches, data_info = make_data(cfg, tokenizer_dir, roots=roots, log=log,
                                                   manifest_path=run_dir / "corpus_manifest.json")
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=cfg.betas,
                            fused=dev.type == "cuda")
    state = {"step": 0, "elapsed": 0.0, "tokens": 0, "history": []}
    ckpt_path = run_dir / "checkpoint.pt"
    if resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=dev, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        state = ck["state"]
        log(f"resumed from {ckpt_path} at step {state['step']} ({state['elapsed']:.0f}s trained)")
    step_fn = torch.compile(diffusion_losses) if (cfg.compile and dev.type == "cuda") else diffusion_losses

    def save_checkpoint() -> None:
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "state": state,
                    "config": asdict(cfg)}, tmp)
        os.replace(tmp, ckpt_path)

    bar = tqdm(total=int(cfg.time_budget_s), unit="s", initial=int(state["elapsed"]), dynamic_ncols=True,
               mininterval=2.0, desc=f"train {name}")
    last_eval = last_ckpt = state["elapsed"]
    window_tokens, window_t0 = 0, time.perf_counter()
    t0 = time.perf_counter() - state["elapsed"]
    while True:
        elapsed = time.perf_counter() - t0
        if elapsed >= cfg.time_budget_s or (cfg.max_steps and state["step"] >= cfg.max_steps):
            break
        lr = lr_at(cfg, elapsed / cfg.time_budget_s)
        for group in opt.param_groups:
            group["lr"] = lr
        batch = {k: v.to(dev, non_blocking=True) for k, v in next(train_iter).items()}
        with _autocast(cfg, dev):
            canvas_loss, ar_loss = step_fn(model, batch, cfg)
            loss = canvas_loss + cfg.ar_weight * ar_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        state["step"] += 1
        n_tok = int(batch["attention_mask"].sum()) + int(batch["noise_mask"].sum())
        state["tokens"] += n_tok
        window_tokens += n_tok
        if state["step"] % 10 == 0 or state["step"] <= 3:
            now = time.perf_counter()
            tps = window_tokens / max(now - window_t0, 1e-6)
            window_tokens, window_t0 = 0, now
            state["history"].append({"step": state["step"], "tokens": state["tokens"], "elapsed": elapsed,
                                     "loss": canvas_loss.item(), "ar_loss": ar_loss.item(), "lr": lr})
            bar.set_postfix(loss=f"{canvas_loss.item():.3f}", ar=f"{ar_loss.item():.2f}", tok_s=f"{tps:,.0f}",
                            step=state["step"])
        bar.update(int(elapsed) - bar.n)
        state["elapsed"] = time.perf_counter() - t0
        if state["elapsed"] - last_eval >= cfg.eval_every_s:
            pause = time.perf_counter()
            val = evaluate(model, val_batches, cfg, dev)
            state["history"].append({"step": state["step"], "tokens": state["tokens"], "val_loss": val})
            log(f"step {state['step']}: validation loss {val:.4f}")
            last_eval = state["elapsed"]
            t0 += time.perf_counter() - pause  # evaluation does not eat the training budget
        if state["elapsed"] - last_ckpt >= cfg.ckpt_every_s:
            pause = time.perf_counter()
            save_checkpoint()
            if out_dir is not None:
                export_weights(model, tokenizer_dir, out_dir)
            last_ckpt = state["elapsed"]
            t0 += time.perf_counter() - pause
    bar.close()
    val = evaluate(model, val_batches, cfg, dev)
    state["history"].append({"step": state["step"], "tokens": state["tokens"], "val_loss": val})
    save_checkpoint()
    plot_losses(state["history"], run_dir / "loss.png", f"infill train --config {name} ({machine_description(dev)})")
    report = {
        "config": name, "train_config": asdict(cfg), "parameters": n_params, "steps": state["step"],
        "tokens": state["tokens"], "wall_seconds": round(state["elapsed"], 1), "machine": machine_description(dev),
        "validation_loss": round(val, 4), "data": data_info, "torch": torch.__version__,
    }
    (run_dir / "report.json").write_text(json.dumps(report, indent=2))
    (run_dir / "history.json").write_text(json.dumps(state["history"]))
    if out_dir is not None:
        shards = export_weights(model, tokenizer_dir, out_dir)
        report["shards"] = [p.name for p in shards]
        report["size_bytes"] = sum(p.stat().st_size for p in out_dir.glob("model*.safetensors"))
        (out_dir / "training_report.json").write_text(json.dumps(report, indent=2))
    log(f"done: {state['step']} steps, {state['tokens']:,} tokens, validation loss {val:.4f}")
    return report


__all__ = ["train", "export_weights", "diffusion_losses", "evaluate", "lr_at", "noise_canvas"]
