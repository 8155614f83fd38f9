"""Figures and the machine-checkable summary from the result files (no model runs).

Reads benchmarks/results/{quality,speed,cache_reuse,gpu_speed,humaneval_bundled}.json (whichever exist) and
writes the PNGs next to them (matplotlib, Agg) and summary.json:

    python benchmarks/plots.py [--results benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
METHODS = ("engine", "ar_equivalent", "stock_generate")
LABELS = {"engine": "engine (c)", "ar_equivalent": "AR-equivalent (a)", "stock_generate": "stock generate() (b)"}
TARGETS = {"ratio_vs_ar_line_block": 0.25, "ratio_vs_stock": 0.5, "prefill_speedup_typing_2000_lines": 5.0}


def _load(results: Path, name: str) -> dict | None:
    path = results / name
    return json.loads(path.read_text()) if path.exists() else None


# -- summary.json ----------------------------------------------------------------------------------------------
def build_summary(quality: dict | None, speed: dict | None, cache: dict | None, humaneval: dict | None,
                  gpu: dict | None = None) -> dict:
    """The shape anyone can check mechanically (see the README's Results section); extra keys explain it."""
    holes = (speed or {}).get("holes", {}).get("summary", {})
    overall = holes.get("all", {})
    ppt = {m: float(overall.get(m, {}).get("passes_per_token", 0.0)) for m in METHODS}

    keys = ("pass_at_1", "exact_match", "syntax_ok")
    single = dict.fromkeys(keys, 0.0) | {"source": "missing"}
    if quality and "single-line" in quality.get("sets", {}):  # fallback: the variants run's few holes
        s = quality["sets"]["single-line"]["balanced"]
        single = {k: float(s[k]) for k in keys} | {"holes": s["holes"], "source": quality["command"]}
    sets = {}
    for name, s in (humaneval or {}).get("sets", {}).items():  # the full runs, one hole per problem
        sets["humaneval_" + name.replace("-", "_")] = {k: float(s[k]) for k in keys} | {
            "holes": s["holes"], "forward_passes_mean": s.get("forward_passes_mean"),
            "source": s.get("command", humaneval["command"])}
    sets = {"humaneval_single_line": sets.pop("humaneval_single_line", single), **sets}

    daemon = (cache or {}).get("files", {}).get("2000", {}).get("prefill_speedup", 0.0)
    in_process = next((f["prefill_speedup"] for f in (speed or {}).get("timing", {}).get("files", [])
                       if f["file_lines"] == 2000), None)

    by_kind = {k: {"ratio_vs_ar": v["ratio_vs_ar"], "ratio_vs_stock": v["ratio_vs_stock"],
                   "exact_match": {m: v[m]["exact_match"] for m in METHODS}}
               for k, v in holes.items() if k != "all"}
    ratio_ar = float(overall.get("ratio_vs_ar") or 0.0)
    ratio_stock = float(overall.get("ratio_vs_stock") or 0.0)
    line_block = [by_kind[k]["ratio_vs_ar"] for k in ("line", "block") if k in by_kind]
    summary = {
        "commit": (speed or {}).get("holes_commit") or (speed or {}).get("commit") or (quality or {}).get("commit", "unknown"),
        "machine": (speed or quality or {}).get("machine", "unknown"),
        "model": f"bundled DiffusionGemma-class model ({(speed or quality or {}).get('model', 'infill/weights')}, "
                 f"{((speed or quality or {}).get('parameters') or 0) / 1e6:.1f}M parameters, trained 450 s on one H100)",
        "speed": {"passes_per_token": ppt, "ratio_vs_ar": ratio_ar, "ratio_vs_stock": ratio_stock,
                  "by_kind": by_kind, "command": (speed or {}).get("holes_command"),
                  "holes": (speed or {}).get("holes", {}).get("count", 0)},
        "quality": sets,
        "cache": {"prefill_speedup_typing_2000_lines": float(daemon),
                  "source": (cache or {}).get("command"), "in_process_speed_py": in_process},
        "commits": {"quality": (quality or {}).get("commit"), "speed_holes": (speed or {}).get("holes_commit"),
                    "speed_timing": (speed or {}).get("timing_commit")},
        "targets": {
            "fewer_passes_than_ar_line_and_block_4x": {"target_ratio": TARGETS["ratio_vs_ar_line_block"],
                                                       "measured": line_block,
                                                       "met": bool(line_block) and max(line_block) <= 0.25},
            "fewer_passes_than_stock_2x": {"target_ratio": TARGETS["ratio_vs_stock"], "measured": ratio_stock,
                                           "met": 0 < ratio_stock <= 0.5},
            "prefill_5x_less_typing_2000_lines": {"target": TARGETS["prefill_speedup_typing_2000_lines"],
                                                  "measured": float(daemon), "met": float(daemon) >= 5.0},
        },
    }
    if quality:
        summary["quality"]["variants"] = {name: {v: {k: s[k] for k in ("holes", "pass_at_1", "exact_match", "syntax_ok")}
                                                 for v, s in variants.items() if s["holes"]}
                                          for name, variants in quality["sets"].items()}
        summary["quality"]["variants_command"] = quality["command"]
    if gpu:
        summary["gpu"] = {"device": gpu["device"], "engine_vs_stock_time": gpu["ratio_engine_vs_stock_time"],
                          "engine_tokens_per_s": gpu["engine"]["tokens_per_s"],
                          "stock_tokens_per_s": gpu["stock_generate"]["tokens_per_s"]}
    return summary


# -- figures ---------------------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_quality(quality: dict, out: Path) -> None:
    plt = _plt()
    sets = list(quality["sets"])
    variants = [v for v in next(iter(quality["sets"].values()))]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8), sharey=False)
    width = 0.8 / len(variants)
    for ax, (key, title) in zip(axes, (("pass_at_1", "pass@1"), ("exact_match", "exact match"),
                                       ("syntax_ok", "syntax valid")), strict=True):
        for i, v in enumerate(variants):
            vals = [quality["sets"][s][v][key] for s in sets]
            lo = [quality["sets"][s][v][key] - quality["sets"][s][v][key + "_ci95"][0] for s in sets]
            hi = [quality["sets"][s][v][key + "_ci95"][1] - quality["sets"][s][v][key] for s in sets]
            xs = [j + (i - (len(variants) - 1) / 2) * width for j in range(len(sets))]
            ax.bar(xs, vals, width, label=v, yerr=[lo, hi], capsize=1.5, error_kw={"lw": 0.6, "alpha": 0.5})
        ax.set_xticks(range(len(sets)), sets, rotation=25, ha="right", fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title(title)
    axes[0].legend(fontsize=7)
    n = ", ".join(f"{k} {v}" for k, v in quality["holes_per_set"].items())
    fig.suptitle(f"Bundled 18.5M model, same holes for every variant (holes per set: {n}); bars: 95% Wilson intervals",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_passes(speed: dict, out: Path) -> None:
    plt = _plt()
    summary = speed["holes"]["summary"]
    kinds = list(summary)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    width = 0.27
    for i, m in enumerate(METHODS):
        xs = [j + (i - 1) * width for j in range(len(kinds))]
        axes[0].bar(xs, [summary[k][m]["passes_per_token"] for k in kinds], width, label=LABELS[m])
        axes[1].bar(xs, [summary[k][m]["exact_match"] for k in kinds], width, label=LABELS[m])
    axes[0].set_yscale("log")
    axes[0].axhline(1.0, color="grey", lw=0.6, ls="--")
    axes[0].set_title("forward passes per generated token (log)")
    axes[1].set_title("exact match on the same holes")
    axes[1].set_ylim(0, 1)
    if not any(summary[k][m]["exact_match"] for k in kinds for m in METHODS):  # no bars: say so
        axes[1].text(0.5, 0.5, "0% for every method and kind", ha="center", transform=axes[1].transAxes)
    for ax in axes:
        ax.set_xticks(range(len(kinds)), kinds)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Bundled model, {speed['holes']['count']} holes; CPU", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_latency(speed: dict, out: Path) -> None:
    plt = _plt()
    summary = speed["holes"]["summary"]
    kinds = [k for k in summary if k != "all"]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.27
    for i, m in enumerate(METHODS):
        xs = [j + (i - 1) * width for j in range(len(kinds))]
        p50 = [summary[k][m]["latency_p50_s"] for k in kinds]
        p95 = [summary[k][m]["latency_p95_s"] for k in kinds]
        ax.bar(xs, p50, width, label=f"{LABELS[m]} p50")
        ax.scatter(xs, p95, marker="_", s=120, color="black", zorder=3, label="p95" if i == 0 else None)
    ax.set_xticks(range(len(kinds)), kinds)
    ax.set_ylabel("seconds per hole")
    ax.set_title("Latency per hole kind, bundled model on 1 CPU thread (shared 2-core machine)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_scaling(speed: dict, cache: dict | None, out: Path) -> None:
    plt = _plt()
    t = speed["timing"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    c = t["canvas"]
    ax = axes[0]
    ax.plot([r["canvas"] for r in c], [r["request_s"] for r in c], "o-", label=f"request ({c[0]['steps']} steps)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("canvas length (tokens)")
    ax.set_ylabel("seconds per request")
    ax2 = ax.twinx()
    ax2.plot([r["canvas"] for r in c], [r["decoder_pass_ms"] for r in c], "s--", color="tab:orange",
             label="one decoder pass (ms, right)")
    ax2.set_ylabel("ms per decoder pass")
    ax.legend(loc="upper left", fontsize=8)
    ax2.legend(loc="lower right", fontsize=8)
    ax.set_title(f"Latency against canvas length (random-init {t['preset']}, CPU)", fontsize=9)

    f = t["files"]
    ax = axes[1]
    ax.plot([r["file_lines"] for r in f], [r["cache"]["prefill_ms_mean"] for r in f], "o-", label="prefill, cache reuse")
    ax.plot([r["file_lines"] for r in f], [r["no_cache"]["prefill_ms_mean"] for r in f], "o-", label="prefill, no cache")
    ax.plot([r["file_lines"] for r in f], [r["cache"]["latency_ms_mean"] for r in f], "^:", label="request, cache reuse")
    ax.plot([r["file_lines"] for r in f], [r["no_cache"]["latency_ms_mean"] for r in f], "^:", label="request, no cache")
    if cache:
        pts = cache["files"].values()
        ax.scatter([p["file_lines"] for p in pts], [p["cache"]["mean_prefill_ms"] for p in pts], marker="x",
                   color="black", label="daemon, cache (cache_reuse.json)")
        ax.scatter([p["file_lines"] for p in pts], [p["no_cache"]["mean_prefill_ms"] for p in pts], marker="+",
                   color="black", label="daemon, no cache")
    ax.set_xscale("log")
    ax.set_xlabel("file length (lines) while typing a line")
    ax.set_ylabel("ms per keystroke")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.45)  # room for the legend above the data
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    ax.set_title("Latency against file length: encoder-cache reuse", fontsize=9)

    b = t["batch"]
    ax = axes[2]
    ax.plot([r["requests"] for r in b], [r["canvas_tokens_per_s"] for r in b], "o-", label="fill_batch: canvas tokens/s")
    ax.plot([r["requests"] for r in b], [r["canvas_tokens_per_s_sequential"] for r in b], "o--",
            label="one by one: canvas tokens/s")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent requests")
    ax.set_ylabel("canvas tokens per second")
    ax2 = ax.twinx()
    ax2.plot([r["requests"] for r in b], [r["per_request_latency_s"] for r in b], "s:", color="tab:red",
             label="per-request latency, batched (s, right)")
    ax2.set_ylabel("seconds")
    ax.legend(loc="upper left", fontsize=7)
    ax2.legend(loc="lower right", fontsize=7)
    ax.set_title(f"Micro-batching (canvas {b[0]['canvas']}, {b[0]['steps']} steps)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_gpu(gpu: dict, out: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    steps = gpu["decoder_step_ms"]
    axes[0].bar(list(steps), list(steps.values()))
    axes[0].set_xlabel("canvas length")
    axes[0].set_ylabel("ms per decoder pass")
    axes[0].set_title("Decoder pass: flat in canvas length", fontsize=9)
    names = ["engine", "stock generate()"]
    axes[1].bar(names, [gpu["engine"]["tokens_per_s"], gpu["stock_generate"]["tokens_per_s"]], label="48 steps (measured)")
    axes[1].bar(names, [gpu["engine"]["tokens_per_s_at_16_steps"], gpu["stock_generate"]["tokens_per_s_at_16_steps"]],
                alpha=0.35, label="16 steps (projected)")
    axes[1].set_ylabel("tokens/s, 256-slot canvas")
    axes[1].legend(fontsize=8)
    axes[1].set_title("Engine vs stock generate(), same canvas and steps", fontsize=9)
    fig.suptitle(f"{gpu['device']}, bf16, random-init 26B-A4B shape, {gpu['layers']} of 30 layers "
                 f"({gpu['parameters'] / 1e9:.1f}B parameters); gpu_speed.json", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    r = args.results
    quality, speed = _load(r, "quality.json"), _load(r, "speed.json")
    cache, gpu, humaneval = _load(r, "cache_reuse.json"), _load(r, "gpu_speed.json"), _load(r, "humaneval_bundled.json")
    written = []
    if quality:
        plot_quality(quality, r / "quality.png")
        written.append("quality.png")
    if speed and "holes" in speed:
        plot_passes(speed, r / "speed_passes.png")
        plot_latency(speed, r / "speed_latency.png")
        written += ["speed_passes.png", "speed_latency.png"]
    if speed and "timing" in speed:
        plot_scaling(speed, cache, r / "speed_scaling.png")
        written.append("speed_scaling.png")
    if gpu:
        plot_gpu(gpu, r / "gpu_speed.png")
        written.append("gpu_speed.png")
    summary = build_summary(quality, speed, cache, humaneval, gpu)
    (r / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print("wrote " + ", ".join([*written, "summary.json"]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
