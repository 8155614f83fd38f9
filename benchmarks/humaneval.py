"""HumanEval-Infilling through the engine: pass@1 with executed tests, exact match, syntax-valid rate, cost.

Scoring follows the official harness: the program `prompt + completion + suffix + "\\n" + test +
"\\n" + f"check({entry_point})"` runs in a fresh Python subprocess with a time limit; a sample passes when it
raises nothing. One sample per hole (seeded), so pass@1 is the fraction passed. Evaluation data only.

    python benchmarks/humaneval.py --sets single-line --limit 0 --out benchmarks/results/humaneval.json
    python benchmarks/humaneval.py --sets single-line multi-line --per-problem 1   # one hole per problem
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT.parent / "shared" / "benchmarks" / "humaneval-infilling"
SETS = {
    "single-line": "HumanEval-SingleLineInfilling.jsonl.gz",
    "multi-line": "HumanEval-MultiLineInfilling.jsonl.gz",
    "random-span-light": "HumanEval-RandomSpanInfillingLight.jsonl.gz",
}


def load(name: str, data_dir: Path, limit: int, per_problem: int) -> list[dict]:
    with gzip.open(data_dir / SETS[name], "rt") as fh:
        rows = [json.loads(line) for line in fh]
    if per_problem:
        # The first holes of each problem; in the multi-line set a seeded random choice among the holes of two
        # lines or more (its first hole per problem is one line, the same hole as the single-line set's).
        by_problem: dict[str, list[dict]] = {}
        for row in rows:
            by_problem.setdefault(row["task_id"].split("/")[2], []).append(row)
        picked = []
        for problem, group in by_problem.items():
            if name == "multi-line":
                group = [r for r in group if r["canonical_solution"].strip("\n").count("\n") >= 1] or group
                group = random.Random(f"{name}/{problem}").sample(group, len(group))
            picked += group[:per_problem]
        rows = picked
    return rows[:limit] if limit else rows


def passes(row: dict, completion: str, timeout: float) -> bool:
    program = row["prompt"] + completion + row["suffix"] + "\n" + row["test"] + "\n" + f"check({row['entry_point']})\n"
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as fh:
        fh.write(program)
    try:
        proc = subprocess.run([sys.executable, "-I", fh.name], capture_output=True, timeout=timeout,
                              cwd=tempfile.gettempdir())
        return proc.returncode == 0
    except subprocess.TimeoutExpired:
        return False
    finally:
        os.unlink(fh.name)


def exact(completion: str, truth: str) -> bool:
    """Exact match up to surrounding whitespace of each line (what the editor would show)."""
    norm = lambda s: [ln.rstrip() for ln in s.strip("\n").split("\n")]  # noqa: E731
    return norm(completion) == norm(truth)


def evaluate(engine, rows: list[dict], quality: str, seed: int, timeout: float, lengths=None, log=None,
             max_steps: int | None = None, as_you_type: bool = False) -> dict:
    from infill.request import InfillRequest

    records = []
    typing = {"invoked": False} if as_you_type else {}  # an as-you-type request: one canvas row
    for i, row in enumerate(rows):
        text = row["prompt"] + row["suffix"]
        res = engine.fill(InfillRequest(text=text, cursor=len(row["prompt"]), language="python", quality=quality,
                                        seed=seed, lengths=lengths, max_steps=max_steps, **typing))
        ok = not res.empty and passes(row, res.text, timeout)  # no code is a miss, even where the tests pass
        records.append({"task_id": row["task_id"], "passed": ok, "exact": exact(res.text, row["canonical_solution"]),
                        "syntax_ok": res.syntax_ok, "empty": res.empty, "forward_passes": res.forward_passes,
                        "steps": res.steps,
                        "tokens": res.tokens, "seconds": res.seconds, "kind": res.kind,
                        "completion": res.text})
        if log and (i + 1) % 25 == 0:
            done = records
            log(f"  {i + 1}/{len(rows)}: pass@1 {sum(r['passed'] for r in done) / len(done):.3f}")
    n = len(records)
    return {
        "holes": n,
        "pass_at_1": round(sum(r["passed"] for r in records) / n, 4),
        "exact_match": round(sum(r["exact"] for r in records) / n, 4),
        "syntax_ok": round(sum(r["syntax_ok"] for r in records) / n, 4),
        "empty": round(sum(r["empty"] for r in records) / n, 4),
        "forward_passes_mean": round(statistics.mean(r["forward_passes"] for r in records), 2),
        "tokens_per_pass": round(sum(r["tokens"] for r in records) / max(1, sum(r["forward_passes"] for r in records)), 4),
        "steps_mean": round(statistics.mean(r["steps"] for r in records), 2),
        "tokens_mean": round(statistics.mean(r["tokens"] for r in records), 2),
        "seconds_p50": round(statistics.median(r["seconds"] for r in records), 3),
        "records": records,
    }


def judge(row: dict, completion: str):
    """This checkout's verdict (infill.syntax.check_splice) on `completion` filling the hole of `row`."""
    from infill.syntax import check_splice

    at = len(row["prompt"])
    return check_splice(row["prompt"] + row["suffix"], at, at, completion, "python")


def rejudge(report: dict, data: Path) -> dict:
    """The stored middles of an earlier run judged by this checkout's checker (`judge`): per set, holes,
    syntax_ok, no code, and passes that had code. No model runs."""
    out = {}
    for name, result in report["sets"].items():
        rows = {r["task_id"]: r for r in load(name, data, 0, 0)}
        verdicts = [(judge(rows[record["task_id"]], record["completion"]), record["passed"])
                    for record in result["records"]]
        out[name] = {"holes": len(verdicts), "syntax_ok": sum(v.ok for v, _ in verdicts),
                     "no_code": sum(v.empty for v, _ in verdicts),
                     "passed": sum(passed and not v.empty for v, passed in verdicts)}
    return out


def main(argv: list[str] | None = None) -> int:
    from infill.engine import Engine, EngineConfig
    from infill.models.base import LoadOptions

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", nargs="+", default=["single-line"], choices=sorted(SETS))
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--model", default=None, help="checkpoint (default: $INFILL_MODEL, else the bundled model)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quality", default="balanced")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=0, help="first N holes of each set (0: all)")
    p.add_argument("--per-problem", type=int, default=0, help="at most N holes per HumanEval problem (0: all)")
    p.add_argument("--fixed-length", type=int, default=None, help="one fixed canvas length instead of the sizer's")
    p.add_argument("--no-constraints", action="store_true", help="no overlap trimming, re-indent or repairs")
    p.add_argument("--timeout", type=float, default=3.0)
    p.add_argument("--max-steps", type=int, default=None, help="override the preset's step budget")
    p.add_argument("--as-you-type", action="store_true",
                   help="requests as the language server sends them while typing (one canvas row, warm starts)")
    p.add_argument("--quantize", default=None, help="LoadOptions.quantize: none, int8 (CPU int8 matmuls)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--rejudge", type=Path, metavar="REPORT.json",
                   help="judge the middles stored in an earlier report with this checkout's checker; no model runs")
    args = p.parse_args(argv)
    if args.rejudge:
        print(json.dumps(rejudge(json.loads(args.rejudge.read_text()), args.data), indent=1))
        return 0

    config = EngineConfig()
    if args.no_constraints:
        config = replace(config, constraints=replace(config.constraints, trim_overlap=False, reindent=False,
                                                     repair_rounds=0))
    engine = Engine.load(args.model, LoadOptions(device=args.device, threads=args.threads, quantize=args.quantize),
                         config)
    lengths = (args.fixed_length,) if args.fixed_length else None
    import torch

    device = engine.backend.device
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.machine()}, CPU only"
    report = {"model": engine.model_id, "machine": f"{machine}, {os.cpu_count()} CPU cores",
              "quality": args.quality, "seed": args.seed, "lengths": f"fixed {args.fixed_length}" if lengths
              else "tree-sitter candidates", "constraints": not args.no_constraints, "max_steps": args.max_steps,
              "as_you_type": args.as_you_type, "quantize": args.quantize, "backend": engine.backend.describe(),
              "command": "python benchmarks/humaneval.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "sets": {}}
    for name in args.sets:
        rows = load(name, args.data, args.limit, args.per_problem)
        started = time.perf_counter()
        result = evaluate(engine, rows, args.quality, args.seed, args.timeout, lengths,
                          log=lambda m: print(m, file=sys.stderr, flush=True), max_steps=args.max_steps,
                          as_you_type=args.as_you_type)
        result["wall_seconds"] = round(time.perf_counter() - started, 1)
        report["sets"][name] = result
        summary = {k: v for k, v in result.items() if k != "records"}
        print(json.dumps({name: summary}), flush=True)
        if args.out:  # after every set, so a run cut short keeps what it finished
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
