"""The released 26B-A4B shape on one GPU: the project's fast path against the stock one, side by side in one run.

Random weights of the published shape (30 layers, 128 experts top-8, hidden 2816, vocab 262144), bf16:

  build            the lean stack built straight on the GPU (one copy of the weights) -> peak VRAM
  prefill          encoder pass over 512 and 2,048 prompt tokens
  decoder step     canvas 32 / 64 / 256, batch 1: concatenating step (like transformers') vs the static
                   preallocated step, eager and captured as a CUDA graph
  full canvas      256 slots at 16 and 48 steps: tokens/s through the device-side sampler (host looks
                   every 4 steps) on the captured step (random weights never stop early: all steps run)
  single line      prompt 512, canvas 32, 8 steps, end to end (prefill + load + denoise)
  batching         1 / 4 / 16 canvases of 32 slots in one captured step: latency and canvases/s
  quantized        int8 / fp8 / int4 experts and projections: VRAM, step time, logits' KL to bf16
  stock            transformers' DiffusionGemmaForBlockDiffusion.generate() on the same canvas, when its
                   build fits (it builds encoder and decoder weights apart before tying them)

    python benchmarks/gpu_speed.py --out benchmarks/results/gpu_fast.json          # on the lent GPU
    python benchmarks/gpu_speed.py --dry-run                                       # same code, tiny shape, CPU

Prepared before any GPU was lent: the dry run proves the code path, not the figures.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infill.device_sampler import denoise_on_device  # noqa: E402
from infill.models.lean import LeanDiffusionGemma  # noqa: E402
from infill.models.presets import PRESETS, bundled_tokenizer_dir, diffusiongemma_config, special_ids_of  # noqa: E402
from infill.models.quant import quantize, weight_bytes  # noqa: E402
from infill.models.static_decode import StaticDecoder  # noqa: E402
from infill.sampler import SamplerConfig  # noqa: E402

GIB = 2**30


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeats: int, warmup: int = 2) -> float:
    """Median seconds of fn()."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def peak_gib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / GIB, 2) if device.type == "cuda" else None


def config_of(preset: str, layers: int | None):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(bundled_tokenizer_dir()))
    shape = PRESETS[preset]
    if layers:
        shape = replace(shape, layers=layers)
    return diffusiongemma_config(shape, shape.vocab or len(tok), special_ids_of(tok))


def prompt(vocab: int, n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator(device="cpu").manual_seed(n)
    ids = torch.randint(11, vocab, (1, n), generator=g).to(device)
    return ids, torch.arange(n, device=device)[None]


def decoder_steps(lean, kv, n: int, canvases: list[int], device, repeats: int) -> dict:
    """Per-step latency at each canvas size: concatenating, static eager, static captured."""
    vocab = lean.text_config.vocab_size
    out = {}
    for length in canvases:
        canvas = torch.randint(11, vocab, (1, length), device=device)
        pos = n + torch.arange(length, device=device)[None]
        row = {"concat_ms": 1e3 * timed(lambda c=canvas, p=pos: lean.decode(c, p, kv), device, repeats)}
        dec = StaticDecoder(lean, batch=1, prompt_capacity=n, canvas=length)
        dec.load(kv, n)
        row["static_ms"] = 1e3 * timed(lambda c=canvas, p=pos, d=dec: d.step(c, p), device, repeats)
        if dec.capture():
            row["graph_ms"] = 1e3 * timed(lambda c=canvas, p=pos, d=dec: d.step(c, p), device, repeats)
        out[str(length)] = {k: round(v, 3) for k, v in row.items()}
        del dec
    return out


def run_canvas(lean, kv, n: int, batch: int, length: int, steps: int, device, capture: bool = True):
    """(seconds, decoder passes) of a full denoise of `batch` canvases of `length` through the device sampler."""
    dec = StaticDecoder(lean, batch=batch, prompt_capacity=n, canvas=length)
    dec.load(kv, n)
    if capture:
        dec.capture()
    pos = (n + torch.arange(length, device=device))[None]
    clamp = torch.full((batch, length), -1, device=device)
    g = torch.Generator(device=device).manual_seed(0)

    def go():
        return denoise_on_device(lambda c, sc: dec.step(c, pos, sc), clamp, SamplerConfig(max_steps=steps),
                                 "uniform", lean.text_config.vocab_size, generator=g)

    go()  # warm up
    sync(device)
    t = time.perf_counter()
    res = go()
    sync(device)
    return time.perf_counter() - t, res.forward_passes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="diffusiongemma-26b-a4b", choices=sorted(PRESETS))
    p.add_argument("--layers", type=int, default=None, help="fewer layers than the preset")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--stock", action=argparse.BooleanOptionalAction, default=True,
                   help="also time transformers' generate() (its build needs about twice the weights)")
    p.add_argument("--dry-run", action="store_true", help="tiny shape on the CPU: proves the code path")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.dry_run:
        args.preset, args.repeats, device, dtype = "tiny", 2, torch.device("cpu"), torch.float32
    else:
        device, dtype = torch.device("cuda"), torch.bfloat16
    prompts = (512, 2048) if not args.dry_run else (64, 128)
    canvases = [32, 64, 256] if not args.dry_run else [8, 16]
    config = config_of(args.preset, args.layers)
    vocab = config.get_text_config(decoder=True).vocab_size
    result: dict = {"command": "python benchmarks/gpu_speed.py " + " ".join(argv or sys.argv[1:]),
                    "preset": args.preset, "layers": config.get_text_config(decoder=True).num_hidden_layers,
                    "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                    "torch": torch.__version__}

    # Stock first, alone on the device: its build needs the memory the lean copy would hold.
    if args.stock:
        result["stock"] = stock_generate(config, device, dtype, prompts[0], canvases[-1])
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)

    t = time.perf_counter()
    lean = LeanDiffusionGemma.empty(config, device, dtype, seed=0)
    sync(device)
    result["build"] = {"seconds": round(time.perf_counter() - t, 1), "peak_gib": peak_gib(device),
                       "weights_gib": round(weight_bytes(lean) / GIB, 2),
                       "parameters": sum(x.numel() for x in lean.parameters())}
    print("build", result["build"], flush=True)

    with torch.no_grad():
        result["prefill_ms"] = {}
        for n in prompts:
            ids, pos = prompt(vocab, n, device)
            result["prefill_ms"][str(n)] = round(1e3 * timed(lambda i=ids, q=pos: lean.encode(i, q), device,
                                                             max(2, args.repeats // 2)), 2)
        n = prompts[0]
        ids, pos = prompt(vocab, n, device)
        kv = lean.encode(ids, pos).kv
        result["decoder_step"] = decoder_steps(lean, kv, n, canvases, device, args.repeats)
        print("decoder step", result["decoder_step"], flush=True)

        full = canvases[-1]
        result["full_canvas"] = {}
        for steps in (16, 48):
            secs, passes = run_canvas(lean, kv, n, 1, full, steps, device)
            result["full_canvas"][str(steps)] = {"seconds": round(secs, 4), "passes": passes,
                                                 "tokens_per_s": round(full / secs, 1)}
        print("full canvas", result["full_canvas"], flush=True)

        line = canvases[0]
        sync(device)
        t0 = time.perf_counter()
        kv_line = lean.encode(ids, pos).kv
        secs, passes = run_canvas(lean, kv_line, n, 1, line, 8, device)
        result["single_line"] = {"canvas": line, "steps": 8, "denoise_s": round(secs, 4),
                                 "end_to_end_s_incl_prefill_and_capture": round(time.perf_counter() - t0, 4)}

        result["batching"] = {}
        for b in (1, 4, 16):
            secs, _ = run_canvas(lean, kv, n, b, line, 8, device)
            result["batching"][str(b)] = {"seconds": round(secs, 4), "canvases_per_s": round(b / secs, 1)}
        print("single line", result["single_line"], "batching", result["batching"], flush=True)

        result["quantized"] = quantized_variants(lean, kv, n, line, device, args.repeats)
    result["peak_gib"] = peak_gib(device)
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return 0


def quantized_variants(lean, kv, n: int, length: int, device, repeats: int) -> dict:
    """VRAM, step time and KL to the bf16 logits (same inputs) of each weight-only quantization. The 26B
    shape holds one copy at a time: int8 quantizes the bf16 model in place, fp8 and int4 rebuild the same
    random weights (same seed) first; small shapes start each kind from a saved float copy."""
    vocab = lean.text_config.vocab_size
    canvas = torch.randint(11, vocab, (1, length), device=device)
    pos = n + torch.arange(length, device=device)[None]
    ref = lean.decode(canvas, pos, kv).float().log_softmax(-1)
    state = {k: v.detach().to("cpu") for k, v in lean.state_dict().items()} if device.type == "cpu" else None
    out = {"bf16": {"weights_gib": round(weight_bytes(lean) / GIB, 2)}}
    for kind in ("int8", "fp8", "int4"):
        if state is not None:  # small shapes: start each kind from the float weights
            fresh = LeanDiffusionGemma(lean.config).to(device)
            fresh.load_state_dict(state)
            model = fresh
        else:  # the 26B shape: one copy at a time; rebuild the same random weights (same seed)
            model = lean if kind == "int8" else LeanDiffusionGemma.empty(lean.config, device, torch.bfloat16, seed=0)
        quantize(model, kind)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        got = model.decode(canvas, pos, model.encode(*prompt(vocab, n, device)).kv).float().log_softmax(-1)
        kl = torch.nn.functional.kl_div(got, ref, log_target=True, reduction="batchmean").item()
        step = timed(lambda m=model: m.decode(canvas, pos, kv), device, max(2, repeats // 2))
        out[kind] = {"weights_gib": round(weight_bytes(model) / GIB, 2), "kl_to_bf16": round(kl, 5),
                     "step_ms_concat": round(1e3 * step, 3), "memory_gib": peak_gib(device)}
        print("quantized", kind, out[kind], flush=True)
        del model
        gc.collect()
    return out


def stock_generate(config, device, dtype, n: int, length: int) -> dict:
    """transformers' own path: build the class (twice the weights at its peak), then generate() one canvas."""
    from transformers import DiffusionGemmaForBlockDiffusion

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = DiffusionGemmaForBlockDiffusion(replace_canvas(config, length)).eval()
    except torch.OutOfMemoryError as exc:
        return {"error": f"the class does not fit: {str(exc)[:120]}"}
    finally:
        torch.set_default_dtype(previous)
    vocab = config.get_text_config(decoder=True).vocab_size
    ids, _ = prompt(vocab, n, device)
    out = {"build_peak_gib": peak_gib(device)}
    for steps in (16, 48):
        def go(s=steps, m=model):
            return m.generate(input_ids=ids, max_new_tokens=length, max_denoising_steps=s)

        secs = timed(go, device, 1, warmup=1)
        out[str(steps)] = {"seconds": round(secs, 4), "tokens_per_s": round(length / secs, 1)}
    print("stock", out, flush=True)
    del model
    return out


def replace_canvas(config, length: int):
    config.canvas_length = length
    return config


if __name__ == "__main__":
    sys.exit(main())
