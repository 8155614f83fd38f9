"""Speed side by side: the engine against autoregressive-equivalent decoding and stock `generate()`.

Part 1, on the bundled (trained) model and the same holes, in one process (`--per-kind` holes of each kind:
statement = HumanEval single-line, line = SAFIM control, expression = random-span-light / SAFIM api,
block = SAFIM block, range = a HumanEval multi-line middle selected and regenerated):
  (a) AR-equivalent: the same model and backend, one token committed per decoder pass, greedy, left to right:
      every pass commits the leftmost free slot and re-noises the rest; it stops at the end token. This is the
      forward-pass count of an autoregressive model of the same size (prefill + one pass per token).
  (b) stock `model.generate(input_ids, max_new_tokens=L, max_denoising_steps=48)` of transformers'
      DiffusionGemma on the same FIM prompt. It emits whole canvases of `config.canvas_length`, so canvas_length
      and max_new_tokens are set to L = the canvas of the candidate the engine chose for that hole (the engine's
      sizing is given to it for free); its released settings otherwise (entropy bound 0.1, 0.8 -> 0.4, stop when
      stable and confident).
  (c) the engine (`balanced`, tree-sitter-sized candidates, constraints, adaptive stop).
  (a) and (b) middles go through the engine's own post-processing, so exact match compares decoders only.
  Forward passes count the encoder pass and every decoder pass (a pass over a batch of candidate canvases is
  one pass). Passes per generated token = all passes / all middle tokens.
Part 2, timing on a random-init `small` checkpoint (the bundled model's shape; random weights never stop early,
so every request runs its full step budget):
  - latency against canvas length 16..256 (engine, one candidate, `--steps` steps; and one decoder pass);
  - latency against file length, with and without encoder-cache reuse (typing a line, as cache_reuse.py does);
  - micro-batching: `Engine.fill_batch` with 1, 2, 4, 8 requests against the same requests one by one.
  (`fast` preset there: no repairs or escalation, so a request is its prefill and denoising loop.)
Part 3, no new runs: the H100 figures of gpu_speed.json and the daemon figures of cache_reuse.json.

    python benchmarks/speed.py --per-kind 6 --threads 1 --out benchmarks/results/speed.json

Writes JSON and a Markdown table (.md); `python benchmarks/plots.py` draws the figures and summary.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import cache_reuse  # noqa: E402  (the typed-line documents)
import humaneval  # noqa: E402
import quality  # noqa: E402  (hole loading, splicing, machine and commit)

RESULTS = ROOT / "benchmarks" / "results"
KINDS = ("line", "expression", "statement", "block", "range")
STOCK_STEPS = 48  # max_denoising_steps of the released settings
SWEEP_QUALITY = "fast"  # part 2: no repair rounds, no escalation, so a request is its denoising loop and no more
# Where each kind's holes come from, in order (the sizer decides the kind; sources are tried until full).
SOURCES = {"statement": ("single-line",), "line": ("safim-control", "random-span-light", "safim-api"),
           "expression": ("random-span-light", "safim-api", "safim-control"), "block": ("safim-block", "random-span-light"),
           "range": ("multi-line",)}


# -- (a) autoregressive-equivalent decoding ------------------------------------------------------------------
@dataclass
class ArOutput:
    ids: list[int]  # committed ids, the end token included when it came
    passes: int  # decoder passes (one per committed token)
    finished: bool  # the end token was committed inside the canvas


@torch.no_grad()
def ar_decode(backend, state, length: int, seed: int = 0, self_conditioning: bool = True) -> ArOutput:
    """Left to right through the diffusion decoder, one committed token per pass: pass k reads the canvas
    (k committed ids, then noise: random ids or the mask id), commits the argmax of slot k (banned ids
    excluded), and stops once that is an end token. Every other slot is re-noised, as the model expects."""
    ids = backend.ids
    generator = torch.Generator(device=backend.device).manual_seed(seed)
    banned = torch.tensor(sorted(set(ids.banned)), dtype=torch.long, device=backend.device)

    def noise() -> torch.Tensor:  # (1, L)
        if backend.noise == "mask":
            return torch.full((1, length), ids.mask, dtype=torch.long, device=backend.device)
        return torch.randint(0, backend.vocab_size, (1, length), generator=generator, device=backend.device)

    committed: list[int] = []
    canvas, previous, passes = noise(), None, 0
    for slot in range(length):
        logits = backend.denoise(state, canvas, previous)  # (1, L, V)
        passes += 1
        logits = logits.clone()
        if banned.numel():
            logits[..., banned] = float("-inf")
        token = int(logits[0, slot].argmax())
        committed.append(token)
        if token in ids.eos:
            return ArOutput(committed, passes, True)
        canvas = noise()
        canvas[0, : len(committed)] = torch.tensor(committed, device=backend.device)
        if self_conditioning and backend.noise == "uniform":
            previous = logits.softmax(-1)  # backends take the previous step's probabilities
    return ArOutput(committed, passes, False)


# -- (b) stock generate() ------------------------------------------------------------------------------------
def class_model(backend):
    """transformers' class, for stock generate(): the backend's own, or (the fused stack runs no transformers
    module) the same checkpoint loaded through the class once."""
    if backend.model is not None:
        return backend.model
    if getattr(backend, "class_model", None) is None:
        from infill.models import load_backend
        from infill.models.base import LoadOptions

        options = LoadOptions(device=str(backend.device), stack="transformers", threads=torch.get_num_threads())
        backend.class_model = load_backend(backend.model_id, options).model
    return backend.class_model


@torch.no_grad()
def stock_generate(backend, encoder_ids: list[int], length: int, seed: int = 0) -> tuple[list[int], int, int]:
    """transformers' DiffusionGemma `generate()` with a canvas of `length`: (canvas ids, encoder passes,
    decoder passes), the passes counted by hooks on the encoder and decoder modules."""
    model = class_model(backend)
    counts = {"encoder": 0, "decoder": 0}
    hooks = [model.model.encoder.register_forward_pre_hook(lambda *_: counts.__setitem__("encoder", counts["encoder"] + 1)),
             model.model.decoder.register_forward_pre_hook(lambda *_: counts.__setitem__("decoder", counts["decoder"] + 1))]
    saved = model.config.canvas_length
    model.config.canvas_length = length
    torch.manual_seed(seed)  # generate() samples from the global generator
    try:
        out = model.generate(torch.tensor([encoder_ids], device=backend.device), max_new_tokens=length,
                             max_denoising_steps=STOCK_STEPS, eos_token_id=list(backend.ids.eos),
                             pad_token_id=backend.ids.pad)
    finally:
        model.config.canvas_length = saved
        for h in hooks:
            h.remove()
    return out.sequences[0, len(encoder_ids):].tolist(), counts["encoder"], counts["decoder"]


# -- holes ---------------------------------------------------------------------------------------------------
@dataclass
class SpeedHole:
    source: str
    task_id: str
    text: str
    cursor: int | None
    span: tuple[int, int] | None
    truth: str
    kind: str


def pick_holes(engine, per_kind: int, seed: int) -> list[SpeedHole]:
    """`per_kind` holes of each kind, from the sources above in the quality benchmark's seeded order."""
    from infill import spans

    pools = {name: quality.load_holes(name, 0, seed) for name in {s for v in SOURCES.values() for s in v}}
    chosen: dict[str, list[SpeedHole]] = {k: [] for k in KINDS}
    used: set[str] = set()
    for kind in KINDS:
        for source in SOURCES[kind]:
            for h in pools[source]:
                if len(chosen[kind]) >= per_kind:
                    break
                if h.task_id in used:
                    continue
                if kind == "range":  # the canonical middle in place, selected
                    text = h.text[: h.cursor] + h.truth + h.text[h.cursor :]
                    hole = SpeedHole(source, h.task_id, text, None, (h.cursor, h.cursor + len(h.truth)), h.truth, kind)
                else:
                    hole = SpeedHole(source, h.task_id, h.text, h.cursor, None, h.truth, kind)
                sized = spans.size_hole(hole.text, "python", cursor=hole.cursor, span=hole.span,
                                        count_tokens=engine.count_tokens, config=engine.config.sizing)
                if str(sized.kind) == kind:
                    chosen[kind].append(hole)
                    used.add(h.task_id)
    return [h for k in KINDS for h in chosen[k]]


def completion_of(hole: SpeedHole, start: int, end: int, text: str) -> str:
    """What replaced the hole, comparable with the truth (the sizer may widen a cursor hole)."""
    if hole.span is not None:
        return text

    @dataclass
    class _R:
        start: int
        end: int
        text: str

    return quality.middle_of(hole.text, hole.cursor, _R(start, end, text))


def run_three(engine, hole: SpeedHole, seed: int) -> dict:
    """(c) the engine, then (a) AR-equivalent and (b) stock generate() on the engine's chosen canvas."""
    from infill import spans
    from infill.prompt import encode_prompt, middle_ids
    from infill.request import InfillRequest

    backend = engine.backend
    out = {"source": hole.source, "task_id": hole.task_id, "kind": hole.kind}

    backend.clear_cache()  # every method pays its own prefill
    t = time.perf_counter()
    res = engine.fill(InfillRequest(text=hole.text, cursor=hole.cursor, span=hole.span, language="python",
                                    quality="balanced", seed=seed))
    seconds = time.perf_counter() - t
    chosen = next((c.length for c in res.candidates if c.text == res.text), max(c.length for c in res.candidates))
    middle = completion_of(hole, res.start, res.end, res.text)
    out["canvas"] = chosen
    out["candidates"] = [c.length for c in res.candidates]
    out["engine"] = {"passes": res.forward_passes, "tokens": res.tokens, "seconds": round(seconds, 4),
                     "steps": res.steps, "exact": humaneval.exact(middle, hole.truth), "syntax_ok": res.syntax_ok,
                     "stopped_early": res.steps < STOCK_STEPS, "text": res.text}

    sized = spans.size_hole(hole.text, "python", cursor=hole.cursor, span=hole.span,
                            count_tokens=engine.count_tokens, config=engine.config.sizing)
    prefix, suffix = hole.text[: sized.start], hole.text[sized.end :]
    prompt = encode_prompt(backend.prompt_format, backend.tokenizer, backend.ids, prefix, suffix,
                           replace(engine.config.prompt, seam_tokens=0))

    def finish(ids: list[int], passes: int, seconds: float, started: float) -> dict:
        body, finished = middle_ids(ids, chosen, backend.ids, False)
        text, verdict = engine._postprocess(backend.tokenizer.decode(body).replace("\ufffd", ""), hole.text, sized)
        return {"passes": passes, "tokens": len(body), "finished": finished,
                "seconds": round(seconds + (time.perf_counter() - started), 4),
                "exact": humaneval.exact(completion_of(hole, sized.start, sized.end, text), hole.truth),
                "syntax_ok": verdict.ok, "text": text}

    backend.clear_cache()
    t = time.perf_counter()
    state = backend.prefill(prompt)
    ar = ar_decode(backend, state, chosen, seed)
    seconds = time.perf_counter() - t
    out["ar_equivalent"] = finish(ar.ids, 1 + ar.passes, seconds, time.perf_counter())
    out["ar_equivalent"]["stopped_early"] = ar.finished  # committed the end token inside the canvas

    backend.clear_cache()
    t = time.perf_counter()
    ids, enc, dec = stock_generate(backend, list(prompt.encoder_ids), chosen, seed)
    seconds = time.perf_counter() - t
    out["stock_generate"] = finish(ids, enc + dec, seconds, time.perf_counter())
    out["stock_generate"]["stopped_early"] = dec < STOCK_STEPS
    return out


METHODS = ("engine", "ar_equivalent", "stock_generate")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return 0.0
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def method_summary(rows: list[dict], method: str) -> dict:
    runs = [r[method] for r in rows]
    passes, tokens, secs = sum(r["passes"] for r in runs), sum(r["tokens"] for r in runs), sum(r["seconds"] for r in runs)
    return {"holes": len(runs), "passes_per_token": round(passes / max(tokens, 1), 3),
            "passes_per_hole": round(passes / max(len(runs), 1), 2), "tokens_per_hole": round(tokens / max(len(runs), 1), 2),
            "tokens_per_s": round(tokens / secs, 2) if secs else 0.0,
            "latency_p50_s": round(pct([r["seconds"] for r in runs], 0.5), 3),
            "latency_p95_s": round(pct([r["seconds"] for r in runs], 0.95), 3),
            "exact_match": round(sum(r["exact"] for r in runs) / max(len(runs), 1), 4),
            "syntax_ok": round(sum(r["syntax_ok"] for r in runs) / max(len(runs), 1), 4),
            "empty": round(sum(r["tokens"] == 0 for r in runs) / max(len(runs), 1), 4),
            # engine and stock: the chosen run stopped before its 48 steps; AR: it committed the end token
            "stopped_early": round(sum(bool(r.get("stopped_early")) for r in runs) / max(len(runs), 1), 4)}


def compare(rows: list[dict]) -> dict:
    out = {"all": {m: method_summary(rows, m) for m in METHODS}}
    for kind in KINDS:
        mine = [r for r in rows if r["kind"] == kind]
        if mine:
            out[kind] = {m: method_summary(mine, m) for m in METHODS}
    for group in out.values():
        e, a, s = (group[m] for m in METHODS)
        group["ratio_vs_ar"] = round(e["passes_per_token"] / a["passes_per_token"], 3) if a["passes_per_token"] else None
        group["ratio_vs_stock"] = round(e["passes_per_token"] / s["passes_per_token"], 3) if s["passes_per_token"] else None
        group["passes_per_hole_ratio_vs_ar"] = round(e["passes_per_hole"] / a["passes_per_hole"], 3) if a["passes_per_hole"] else None
        group["passes_per_hole_ratio_vs_stock"] = round(e["passes_per_hole"] / s["passes_per_hole"], 3) if s["passes_per_hole"] else None
    return out


# -- part 2: timing on a random-init checkpoint --------------------------------------------------------------
def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def canvas_sweep(engine, doc: str, cursor: int, lengths: list[int], steps: int, repeats: int) -> list[dict]:
    from infill.prompt import encode_prompt
    from infill.request import InfillRequest

    backend = engine.backend
    prompt = encode_prompt(backend.prompt_format, backend.tokenizer, backend.ids, doc[:cursor], doc[cursor:],
                           engine.config.prompt)
    state = backend.prefill(prompt)
    rows = []
    for length in lengths:
        canvas = torch.randint(0, backend.vocab_size, (1, length))
        backend.denoise(state, canvas, None)  # warm
        step = median_time(lambda c=canvas: backend.denoise(state, c, None), repeats)
        req = InfillRequest(text=doc, cursor=cursor, language="python", lengths=(length,), max_steps=steps, seed=0,
                            quality=SWEEP_QUALITY)
        engine.fill(req)  # warm (the prompt is cached from here on: this measures the canvas, not the prefill)
        fill = median_time(lambda r=req: engine.fill(r), repeats)
        rows.append({"canvas": length, "decoder_pass_ms": round(step * 1000, 2), "request_s": round(fill, 4),
                     "steps": steps, "canvas_tokens_per_s": round(length / fill, 1)})
        print(f"  canvas {length}: pass {step * 1000:.1f} ms, request {fill:.3f} s", file=sys.stderr, flush=True)
    return rows


def file_sweep(engines: dict, sizes: list[int], keystrokes: int, length: int, steps: int) -> list[dict]:
    """Typing a new line in files of each size (cache_reuse.py's documents), one request per keystroke, on two
    engines over two copies of the model: `cache` keeps its encoder caches, `no_cache` clears them before every
    request. Per keystroke: prefill seconds (the backend's accounting) and request latency."""
    from infill.request import InfillRequest

    rows = []
    for lines in sizes:
        docs = cache_reuse.keystrokes(lines)[:keystrokes]
        got: dict[str, list[dict]] = {"cache": [], "no_cache": []}
        for engine in engines.values():
            engine.backend.clear_cache()
        for k, (doc, cursor) in enumerate(docs):
            for mode in (("cache", "no_cache") if k % 2 == 0 else ("no_cache", "cache")):  # take turns going first
                backend = engines[mode].backend
                if mode == "no_cache":
                    backend.clear_cache()
                before = backend.cache_stats.seconds
                t = time.perf_counter()
                engines[mode].fill(InfillRequest(text=doc, cursor=cursor, language="python", lengths=(length,),
                                                 max_steps=steps, seed=0, quality=SWEEP_QUALITY))
                got[mode].append({"latency": time.perf_counter() - t, "prefill": backend.cache_stats.seconds - before})
        row = {"file_lines": lines, "keystrokes": len(docs)}
        for mode, runs in got.items():
            runs = runs[1:] if len(runs) > 1 else runs  # the first keystroke encodes the whole prompt either way
            row[mode] = {"prefill_ms_mean": round(1000 * statistics.fmean(r["prefill"] for r in runs), 1),
                         "latency_ms_mean": round(1000 * statistics.fmean(r["latency"] for r in runs), 1),
                         "latency_ms_p50": round(1000 * statistics.median(r["latency"] for r in runs), 1)}
        row["prefill_speedup"] = round(row["no_cache"]["prefill_ms_mean"] / max(row["cache"]["prefill_ms_mean"], 1e-6), 2)
        row["latency_speedup"] = round(row["no_cache"]["latency_ms_mean"] / max(row["cache"]["latency_ms_mean"], 1e-6), 2)
        rows.append(row)
        print(f"  {lines} lines: prefill {row['cache']['prefill_ms_mean']} vs {row['no_cache']['prefill_ms_mean']} ms",
              file=sys.stderr, flush=True)
    return rows


def batch_sweep(engine, docs: list[tuple[str, int]], sizes: list[int], length: int, steps: int, repeats: int) -> list[dict]:
    """fill_batch with n requests (distinct holes) against the same n requests one after another."""
    from infill.request import InfillRequest

    rows = []
    for n in sizes:
        reqs = [InfillRequest(text=d, cursor=c, language="python", lengths=(length,), max_steps=steps, seed=i,
                              quality=SWEEP_QUALITY) for i, (d, c) in enumerate(docs[:n])]

        def batched(reqs=reqs):
            engine.backend.clear_cache()
            return engine.fill_batch(reqs)

        def one_by_one(reqs=reqs):
            engine.backend.clear_cache()
            return [engine.fill(r) for r in reqs]

        batched()  # warm
        together = median_time(batched, repeats)
        apart = median_time(one_by_one, repeats)
        results = batched()
        tokens = sum(r.tokens for r in results if not isinstance(r, Exception))
        rows.append({"requests": n, "canvas": length, "steps": steps, "batch_s": round(together, 3),
                     "sequential_s": round(apart, 3), "per_request_latency_s": round(together, 3),
                     "per_request_latency_sequential_mean_s": round(apart / n * (n + 1) / 2, 3),
                     "canvas_tokens_per_s": round(n * length / together, 1),
                     "canvas_tokens_per_s_sequential": round(n * length / apart, 1),
                     "generated_tokens_per_s": round(tokens / together, 1),
                     "speedup_vs_sequential": round(apart / together, 2)})
        print(f"  batch {n}: {together:.2f} s together, {apart:.2f} s one by one", file=sys.stderr, flush=True)
    return rows


# -- report --------------------------------------------------------------------------------------------------
def gpu_projection(gpu: dict, summary: dict) -> dict:
    """Measured pass counts of the diffusion methods priced at the H100 times of gpu_speed.json (20-layer
    26B-A4B shape): prefill + decoder passes x the 64-slot step. Not for AR: one token through a MoE reads
    only its active experts, so an AR step costs less than a canvas step (not measured here)."""
    prefill, step = gpu["prefill_ms"], gpu["decoder_step_ms"]["64"]
    out = {}
    for m in ("engine", "stock_generate"):
        s = summary["all"][m]
        out[m] = {"ms_per_hole": round(prefill + (s["passes_per_hole"] - 1) * step, 1),
                  "tokens_per_s": round(1000 * s["tokens_per_hole"] / (prefill + (s["passes_per_hole"] - 1) * step), 1)}
    return out


def markdown(r: dict) -> str:
    s = r["holes"]["summary"]
    out = [
        "# Speed side by side: engine vs AR-equivalent vs stock generate()",
        "",
        f"Part 1: `{r['holes_command']}` (commit `{r['holes_commit'][:10]}`); part 2: `{r['timing_command']}` "
        f"(commit `{r['timing_commit'][:10]}`); on {r['machine']}. "
        "CPU timings on a 2-core machine shared with other work: ratios of pass counts are exact, seconds are noisy.",
        "",
        f"## Forward passes on the bundled model ({r['holes']['count']} holes: {r['holes']['per_kind']} per kind)",
        "",
        r["holes"]["note"],
        "",
        "| kind | method | passes/token | passes/hole | tokens/hole | tokens/s | p50 s | p95 s | exact | syntax ok | empty "
        "| stopped early |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, group in s.items():
        for m in METHODS:
            g = group[m]
            out.append(f"| {kind} | {m} | {g['passes_per_token']:g} | {g['passes_per_hole']:g} | {g['tokens_per_hole']:g} "
                       f"| {g['tokens_per_s']:g} | {g['latency_p50_s']:g} | {g['latency_p95_s']:g} | {g['exact_match']:.0%} "
                       f"| {g['syntax_ok']:.0%} | {g['empty']:.0%} | {g['stopped_early']:.0%} |")
    out += ["", "| kind | engine/AR passes per token | engine/stock passes per token | engine/AR passes per hole "
            "| engine/stock passes per hole |", "|---|---:|---:|---:|---:|"]
    for kind, group in s.items():
        out.append(f"| {kind} | {group['ratio_vs_ar']} | {group['ratio_vs_stock']} | {group['passes_per_hole_ratio_vs_ar']} "
                   f"| {group['passes_per_hole_ratio_vs_stock']} |")
    t = r["timing"]
    out += ["", f"## Timing on a random-init `{t['preset']}` checkpoint (every request runs all its steps)", "",
            f"Requests use the `{SWEEP_QUALITY}` preset with a fixed step budget: no repairs and no escalation, so a "
            "request is its prefill (when not cached), its denoising loop and post-processing.", "",
            f"Latency against canvas length ({t['canvas'][0]['steps']} steps, one candidate, prompt cached):", "",
            "| canvas | one decoder pass ms | request s | canvas tokens/s |", "|---:|---:|---:|---:|"]
    out += [f"| {c['canvas']} | {c['decoder_pass_ms']} | {c['request_s']} | {c['canvas_tokens_per_s']} |" for c in t["canvas"]]
    out += ["", f"Latency against file length while typing a line ({t['files'][0]['keystrokes']} keystrokes per file, "
            f"canvas {t['file_canvas']}, {t['file_steps']} steps; means over keystrokes 2..n):", "",
            "| file lines | prefill ms cache | prefill ms no cache | prefill speedup | latency ms cache | latency ms no cache |",
            "|---:|---:|---:|---:|---:|---:|"]
    out += [f"| {f['file_lines']} | {f['cache']['prefill_ms_mean']} | {f['no_cache']['prefill_ms_mean']} | {f['prefill_speedup']}x "
            f"| {f['cache']['latency_ms_mean']} | {f['no_cache']['latency_ms_mean']} |" for f in t["files"]]
    out += ["", f"Micro-batching (`Engine.fill_batch`, canvas {t['batch'][0]['canvas']}, {t['batch'][0]['steps']} steps):", "",
            "| requests | batch s (= per-request latency) | one by one s | speedup | canvas tokens/s batched | one by one |",
            "|---:|---:|---:|---:|---:|---:|"]
    out += [f"| {b['requests']} | {b['batch_s']} | {b['sequential_s']} | {b['speedup_vs_sequential']}x "
            f"| {b['canvas_tokens_per_s']} | {b['canvas_tokens_per_s_sequential']} |" for b in t["batch"]]
    g = r.get("gpu_h100")
    if g:
        out += ["", "## GPU (no new runs: benchmarks/results/gpu_speed.json)", "",
                f"{g['device']}, {g['dtype']}, random-init {g['preset']} with {g['layers']} of its 30 layers "
                f"({g['parameters'] / 1e9:.1f}B parameters): prefill of {g['prompt_tokens']} tokens {g['prefill_ms']} ms; "
                f"decoder pass {g['decoder_step_ms']} ms by canvas; 256-slot canvas, 48 steps: engine {g['engine']['seconds']} s "
                f"({g['engine']['tokens_per_s']} tokens/s) vs stock generate() {g['stock_generate']['seconds']} s "
                f"({g['stock_generate']['tokens_per_s']} tokens/s), time ratio {g['ratio_engine_vs_stock_time']}.",
                "", "Projected: this run's pass counts at those per-pass times: "
                + "; ".join(f"{m} {v['ms_per_hole']} ms per hole, {v['tokens_per_s']} tokens/s" for m, v in r["gpu_projection"].items())
                + " (AR not projected: its one-token MoE step reads only the active experts)."]
    c = r.get("cache_reuse")
    if c:
        out += ["", "## Encoder-cache reuse through the daemon (no new runs: benchmarks/results/cache_reuse.json)", "",
                f"`{c['command']}`: prefill speedup while typing " + ", ".join(
                    f"{k} lines {v}x" for k, v in c["prefill_speedup"].items()) + "."]
    out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    from infill.engine import Engine
    from infill.models.base import LoadOptions
    from infill.models.presets import write_random_checkpoint

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="trained checkpoint for part 1 (default: the bundled model)")
    p.add_argument("--per-kind", type=int, default=6, help="holes of each kind in part 1")
    p.add_argument("--preset", default="small", help="random-init preset for part 2")
    p.add_argument("--canvases", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    p.add_argument("--steps", type=int, default=8, help="denoising steps per request in the canvas and batch sweeps")
    p.add_argument("--files", type=int, nargs="+", default=[50, 200, 500, 1000, 2000])
    p.add_argument("--keystrokes", type=int, default=10)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-holes", action="store_true", help="no part 1 (keep the one already in --out)")
    p.add_argument("--skip-timing", action="store_true", help="no part 2 (keep the one already in --out)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    started = time.perf_counter()
    options = LoadOptions(device="cpu", threads=args.threads)

    command = "python benchmarks/speed.py " + " ".join(argv if argv is not None else sys.argv[1:])
    previous = json.loads(args.out.read_text()) if args.out and args.out.exists() else {}
    report: dict = {"command": command, "commit": quality.git_commit(), "torch": torch.__version__}
    if args.skip_holes and "holes" in previous:  # a part run apart keeps the other part's figures and command
        report["holes"], report["holes_command"] = previous["holes"], previous.get("holes_command", previous["command"])
        report["holes_commit"] = previous.get("holes_commit", previous["commit"])
    if args.skip_timing and "timing" in previous:
        report["timing"], report["timing_command"] = previous["timing"], previous.get("timing_command", previous["command"])
        report["timing_commit"] = previous.get("timing_commit", previous["commit"])
    engine = Engine.load(args.model, options)
    report["machine"] = quality.machine_name(engine)
    report["model"] = engine.model_id
    report["parameters"] = engine.backend.describe()["parameters"]

    def save() -> None:
        report["wall_seconds"] = round(time.perf_counter() - started, 1)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=1) + "\n")

    if not args.skip_holes:
        holes = pick_holes(engine, args.per_kind, args.seed)
        rows = []
        for i, hole in enumerate(holes):
            rows.append(run_three(engine, hole, args.seed))
            r = rows[-1]
            print(f"[{i + 1}/{len(holes)}] {hole.kind:10} {hole.task_id:40} canvas {r['canvas']:3}: passes "
                  + " ".join(f"{m}={r[m]['passes']}/{r[m]['tokens']}t" for m in METHODS), file=sys.stderr, flush=True)
        report["holes_command"], report["holes_commit"] = command, report["commit"]
        report["holes"] = {"count": len(rows), "per_kind": args.per_kind, "rows": rows, "summary": compare(rows),
                           "note": "AR-equivalent and stock generate() get the canvas of the candidate the engine chose "
                                   "(stock: canvas_length = max_new_tokens = that length; 48 steps). Passes include "
                                   "the encoder pass. passes/token = all passes / all middle tokens (an empty middle "
                                   "adds passes and no tokens). exact: line-wise match with the true middle. stopped early: the "
                                   "engine's chosen run or stock generate() stopped before 48 steps (adaptive stop); "
                                   "AR: committed the end token before the canvas ran out."}
        save()

    if not args.skip_timing:
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = write_random_checkpoint(Path(tmp) / "model", args.preset, seed=0)
            rand = Engine.load(str(ckpt), options)
            docs = [(h.text, h.cursor) for h in quality.load_holes("single-line", max(args.batches), args.seed)]
            print("canvas sweep", file=sys.stderr)
            canvas = canvas_sweep(rand, docs[0][0], docs[0][1], args.canvases, args.steps, args.repeats)
            print("file sweep", file=sys.stderr)
            files = file_sweep({"cache": rand, "no_cache": Engine.load(str(ckpt), options)}, args.files,
                               args.keystrokes, 16, 2)
            print("batch sweep", file=sys.stderr)
            batch = batch_sweep(rand, docs, args.batches, 32, args.steps, args.repeats)
        report["timing_command"], report["timing_commit"] = command, report["commit"]
        report["timing"] = {"preset": args.preset, "canvas": canvas, "files": files, "file_canvas": 16,
                            "file_steps": 2, "batch": batch}

    gpu_path, cache_path = RESULTS / "gpu_speed.json", RESULTS / "cache_reuse.json"
    if gpu_path.exists():
        report["gpu_h100"] = json.loads(gpu_path.read_text())
        if "holes" in report:
            report["gpu_projection"] = gpu_projection(report["gpu_h100"], report["holes"]["summary"])
    if cache_path.exists():
        c = json.loads(cache_path.read_text())
        report["cache_reuse"] = {"command": c["command"], "preset": c["preset"],
                                 "prefill_speedup": {k: v["prefill_speedup"] for k, v in c["files"].items()},
                                 "latency_speedup": {k: v["latency_speedup"] for k, v in c["files"].items()}}
    save()
    if args.out and "holes" in report and "timing" in report:
        args.out.with_suffix(".md").write_text(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
