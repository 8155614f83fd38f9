"""GPU speed of a random-init DiffusionGemma of the released 26B-A4B shape (or a smaller preset), bf16.

Measures, on one GPU, in one process:
  - prefill of a 512-token prompt (encoder pass);
  - per-step decoder latency on 32 / 64 / 256-token canvases (batch 1);
  - tokens/s on a 256-token canvas at the released settings, through the project's sampler and through the
    stock `generate()`. Random weights are never confident, so both run all 48 steps; the released model
    stops after 12-16 steps, so a projection at 16 steps is printed beside the measured figure.

    python benchmarks/gpu_speed.py --preset diffusiongemma-26b-a4b --out benchmarks/results/gpu_speed.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infill.models.diffusiongemma import DiffusionGemmaBackend  # noqa: E402
from infill.models.presets import PRESETS, bundled_tokenizer_dir, diffusiongemma_config, special_ids_of  # noqa: E402
from infill.prompt import EncodedPrompt  # noqa: E402
from infill.sampler import SamplerConfig, sample  # noqa: E402

TYPICAL_STEPS = 16  # the released checkpoint stops after 12-16 of its 48 steps


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, repeats: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t)
    return out


def build(preset: str, device: torch.device, dtype: torch.dtype, layers: int | None = None):
    from transformers import AutoTokenizer, DiffusionGemmaForBlockDiffusion

    tok = AutoTokenizer.from_pretrained(str(bundled_tokenizer_dir()))
    shape = PRESETS[preset]
    if layers:  # the class builds encoder and decoder weights apart and ties them after: twice the memory
        shape = replace(shape, layers=layers)
    config = diffusiongemma_config(shape, shape.vocab or len(tok), special_ids_of(tok))
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # build straight in bf16: 25B parameters do not fit twice
    try:
        with torch.device(device):
            model = DiffusionGemmaForBlockDiffusion(config).eval()
    finally:
        torch.set_default_dtype(previous)
    return model, tok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="diffusiongemma-26b-a4b", choices=sorted(PRESETS))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--prompt", type=int, default=512)
    p.add_argument("--canvases", type=int, nargs="+", default=[32, 64, 256])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--steps", type=int, default=48, help="step budget of the full-canvas runs")
    p.add_argument("--layers", type=int, default=None, help="fewer layers than the preset, to fit the GPU")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    t0 = time.perf_counter()
    model, tok = build(args.preset, device, dtype, args.layers)
    build_s = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    backend = DiffusionGemmaBackend(model, tok, f"random-init {args.preset}")
    vocab = model.config.get_text_config(decoder=True).vocab_size
    g = torch.Generator(device="cpu").manual_seed(0)
    prompt_ids = torch.randint(16, vocab, (args.prompt,), generator=g).tolist()
    prompt = EncodedPrompt(tuple(prompt_ids), (), (), (), False)
    report: dict = {"preset": args.preset, "layers": model.config.get_text_config(decoder=True).num_hidden_layers,
                    "parameters": params, "device": torch.cuda.get_device_name(device)
                    if device.type == "cuda" else "cpu", "dtype": args.dtype, "build_seconds": round(build_s, 1),
                    "prompt_tokens": args.prompt, "torch": torch.__version__}

    with torch.no_grad():
        backend.clear_cache()
        prefill = timed(lambda: (backend.clear_cache(), backend.prefill(prompt)), max(3, args.repeats // 2))
        report["prefill_ms"] = round(1000 * statistics.median(prefill), 2)
        state = backend.prefill(prompt)
        per_step = {}
        for length in args.canvases:
            canvas = torch.randint(16, vocab, (1, length), device=device, generator=None)
            per_step[length] = round(1000 * statistics.median(timed(lambda c=canvas: backend.denoise(state, c, None),
                                                                     args.repeats)), 2)
        report["decoder_step_ms"] = per_step

        # The project's sampler: one 256-slot canvas, released settings, all steps (random weights never stop).
        cfg = SamplerConfig(max_steps=args.steps)
        length = max(args.canvases)
        clamp = torch.full((1, length), -1, dtype=torch.long)
        engine_s = timed(lambda: sample(backend, state, clamp, cfg, seed=0), 2, warmup=1)
        engine = statistics.median(engine_s)
        report["engine"] = {"canvas": length, "steps": args.steps, "seconds": round(engine, 3),
                            "tokens_per_s": round(length / engine, 1),
                            f"tokens_per_s_at_{TYPICAL_STEPS}_steps": round(length / (engine * TYPICAL_STEPS / args.steps), 1)}

        # Stock generate() on the same prompt and settings.
        ids = torch.tensor([prompt_ids], device=device)
        gen = lambda: model.generate(ids, max_new_tokens=length, max_denoising_steps=args.steps)  # noqa: E731
        model.config.canvas_length = length
        stock_s = statistics.median(timed(gen, 2, warmup=1))
        report["stock_generate"] = {"canvas": length, "steps": args.steps, "seconds": round(stock_s, 3),
                                    "tokens_per_s": round(length / stock_s, 1),
                                    f"tokens_per_s_at_{TYPICAL_STEPS}_steps": round(length / (stock_s * TYPICAL_STEPS / args.steps), 1)}
        report["ratio_engine_vs_stock_time"] = round(engine / stock_s, 3)
    if device.type == "cuda":
        report["max_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 1)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
