"""Quality before and after, side by side in one run: HumanEval-Infilling single-line through the engine.

The baseline tree (`baseline.BASELINE`, main before issue 16, extracted with `git archive`) and this checkout
run the same holes with the same seed, each variant in its own process (`benchmarks/humaneval.py`, 1 thread):

    before  fast, balanced                                   (the old engine: 4 padded rows, 16 / 48 steps)
    after   fast as you type, 3 / 4 / 5 / 6 steps, float32   (one canvas row: the language server's requests)
            fast as you type, 3 steps, int8                  (item 5: int8 matmuls against float32, same seeds)
            fast (invoked, the CLI), balanced; float32 and int8

Reported per variant: exact match, syntax-valid and pass@1 with 95% Wilson intervals, forward passes and
steps per hole, tokens per pass, seconds per hole (p50; CPU-noisy). Every variant's middles are judged by this
checkout's checker (`infill.syntax.check_splice`: for Python, CPython compiles the spliced file), not by the
looser check the old tree shipped, and a middle with no code never passes. Each "after" variant is compared with its
reference on the same problems: the paired difference of syntax-valid and pass@1 with a 95% bootstrap
interval (problems resampled); "within noise" means the interval holds 0.

    python benchmarks/quality_sxs.py --limit 60 --out benchmarks/results/quality_sxs.json

A variant's JSON is kept in `--work` (default a temporary directory) and reused when the run is repeated
with the same commit, baseline, limit and seed (`--fresh` recomputes).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from baseline import BASELINE, ROOT, checkout, env_for, publish, resolve
from quality import wilson

DATA = Path("/work/shared/benchmarks/humaneval-infilling")

# name -> (tree, humaneval.py arguments, the variant it is compared with)
VARIANTS: dict[str, tuple[str, list[str], str | None]] = {
    "before fast": ("before", ["--quality", "fast"], None),
    "before balanced": ("before", ["--quality", "balanced"], None),
    "typing 3 steps": ("after", ["--quality", "fast", "--as-you-type", "--max-steps", "3", "--quantize", "none"],
                       "before fast"),
    "typing 4 steps": ("after", ["--quality", "fast", "--as-you-type", "--max-steps", "4", "--quantize", "none"],
                       "before fast"),
    "typing 5 steps": ("after", ["--quality", "fast", "--as-you-type", "--max-steps", "5", "--quantize", "none"],
                       "before fast"),
    "typing 6 steps": ("after", ["--quality", "fast", "--as-you-type", "--max-steps", "6", "--quantize", "none"],
                       "before fast"),
    "typing 3 steps int8": ("after", ["--quality", "fast", "--as-you-type", "--max-steps", "3", "--quantize", "int8"],
                            "typing 3 steps"),
    "fast": ("after", ["--quality", "fast", "--quantize", "none"], "before fast"),
    "fast int8": ("after", ["--quality", "fast", "--quantize", "int8"], "fast"),
    "balanced": ("after", ["--quality", "balanced", "--quantize", "none"], "before balanced"),
    "balanced int8": ("after", ["--quality", "balanced", "--quantize", "int8"], "balanced"),
}


def paired(a: list[bool], b: list[bool], draws: int = 4000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of b - a over paired problems and a 95% bootstrap interval."""
    diffs = [int(y) - int(x) for x, y in zip(a, b, strict=True)]
    rng = random.Random(seed)
    means = sorted(sum(rng.choice(diffs) for _ in diffs) / len(diffs) for _ in range(draws))
    return (sum(diffs) / len(diffs), means[int(0.025 * draws)], means[int(0.975 * draws) - 1])


def run_variant(name: str, tree: Path, args: list[str], limit: int, seed: int, out: Path) -> dict:
    cmd = [sys.executable, str(tree / "benchmarks" / "humaneval.py"), "--sets", "single-line", "--limit", str(limit),
           "--seed", str(seed), "--threads", "1", "--device", "cpu", "--data", str(DATA), "--out", str(out), *args]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tree, env=env_for(tree), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    print(f"{name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return json.loads(out.read_text())


def judged(report: dict) -> dict:
    """`report` with each middle's syntax_ok and pass judged by this checkout's checker (no model runs)."""
    from humaneval import judge, load

    rows = {r["task_id"]: r for r in load("single-line", DATA, 0, 0)}
    for record in report["sets"]["single-line"]["records"]:
        verdict = judge(rows[record["task_id"]], record["completion"])
        record["syntax_ok"], record["passed"] = verdict.ok, record["passed"] and not verdict.empty
    return report


def summary(report: dict) -> dict:
    s = report["sets"]["single-line"]
    recs = s["records"]
    n = len(recs)
    out = {"holes": n}
    for key, field in (("exact_match", "exact"), ("syntax_ok", "syntax_ok"), ("pass_at_1", "passed")):
        k = sum(r[field] for r in recs)
        lo, hi = wilson(k, n)
        out[key] = {"rate": round(k / n, 4), "ci95": [round(lo, 4), round(hi, 4)]}
    for key in ("forward_passes_mean", "steps_mean", "tokens_mean", "seconds_p50"):
        out[key] = s[key]
    out["tokens_per_pass"] = round(sum(r["tokens"] for r in recs) / max(1, sum(r["forward_passes"] for r in recs)), 4)
    return out


def markdown(result: dict) -> str:
    def cell(m: dict) -> str:
        return f"{m['rate']:.1%} [{m['ci95'][0]:.0%}, {m['ci95'][1]:.0%}]"

    rows = []
    for name, v in result["variants"].items():
        vs = v.get("versus")
        diff = (f"{vs['name']}: syntax {vs['syntax_ok'][0]:+.1%} [{vs['syntax_ok'][1]:+.0%}, {vs['syntax_ok'][2]:+.0%}],"
                f" pass {vs['pass_at_1'][0]:+.1%} [{vs['pass_at_1'][1]:+.0%}, {vs['pass_at_1'][2]:+.0%}]") if vs else ""
        rows.append(f"| {name} | {cell(v['exact_match'])} | {cell(v['syntax_ok'])} | {cell(v['pass_at_1'])} "
                    f"| {v['forward_passes_mean']} | {v['steps_mean']} | {v['tokens_per_pass']} | {v['seconds_p50']} "
                    f"| {diff} |")
    return "\n".join([
        "# Quality before and after (HumanEval-Infilling single-line)", "",
        f"Command: `{result['command']}`", "",
        f"Baseline {result['baseline']} (before) and {result['commit']} (after), the first {result['holes']} "
        f"single-line holes, seed {result['seed']}, 1 thread, CPU; {result['machine']}. Brackets: 95% intervals "
        "(Wilson for rates; bootstrap over problems for paired differences, which are within noise when they hold 0).",
        "",
        "| variant | exact match | syntax-valid | pass@1 | passes / hole | steps | tokens / pass | s / hole p50 "
        "| after − reference (paired) |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows, "",
    ])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--limit", type=int, default=60, help="the first N single-line holes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--baseline", default=BASELINE, help=f"commit of the 'before' tree (default {BASELINE})")
    p.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--work", type=Path, default=None, help="where variant results are kept between runs")
    p.add_argument("--fresh", action="store_true", help="recompute variants already in --work")
    p.add_argument("--out", type=Path, default=None, help="JSON; a Markdown table is written next to it")
    args = p.parse_args(argv)

    base, head = resolve(args.baseline), resolve("HEAD")
    work = args.work or Path(tempfile.mkdtemp(prefix="quality_sxs-"))
    work.mkdir(parents=True, exist_ok=True)
    needed = set(args.variants) | {VARIANTS[v][2] for v in args.variants if VARIANTS[v][2]}
    reports: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        before = checkout(base, Path(tmp) / "before")
        for name in [v for v in VARIANTS if v in needed]:
            tree_name, vargs, _ = VARIANTS[name]
            commit = base if tree_name == "before" else head
            out = work / f"{name.replace(' ', '_')}-{commit[:10]}-{args.limit}-{args.seed}.json"
            if out.exists() and not args.fresh:
                reports[name] = judged(json.loads(out.read_text()))
                continue
            reports[name] = judged(run_variant(name, before if tree_name == "before" else ROOT, vargs, args.limit,
                                               args.seed, out))
    result = {"command": "python benchmarks/quality_sxs.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "baseline": base, "commit": head, "holes": args.limit, "seed": args.seed,
              "machine": reports[next(iter(reports))]["machine"], "variants": {}}
    for name in args.variants:
        v = summary(reports[name])
        ref = VARIANTS[name][2]
        if ref:
            a, b = reports[ref]["sets"]["single-line"]["records"], reports[name]["sets"]["single-line"]["records"]
            assert [r["task_id"] for r in a] == [r["task_id"] for r in b], "variants must run the same holes"
            v["versus"] = {"name": ref, **{key: [round(x, 4) for x in paired([r[f] for r in a], [r[f] for r in b])]
                                           for key, f in (("syntax_ok", "syntax_ok"), ("pass_at_1", "passed"))}}
        result["variants"][name] = v
    publish(result, markdown(result), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
