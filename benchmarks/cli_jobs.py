"""Seconds per hole of `infill fill --jobs` for single-line holes in a 300-line file (CPU by default).

Writes a random-init checkpoint of the chosen preset (default `small`, the bundled model's shape), cuts N
single-line holes (each a line's code, indentation kept) out of a 300-line Python file, runs the real CLI
once over all of them, and reports the per-hole seconds the CLI itself prints. A random-init model is never
confident, so every run uses its whole step budget: this is the worst case for the sampler.

    python benchmarks/cli_jobs.py --preset small --holes 20 --out benchmarks/results/cli_jobs.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def source_file(lines: int) -> str:
    """The first `lines` lines of the standard library's textwrap module: ordinary, well-formed Python."""
    text = Path(sysconfig.get_paths()["stdlib"], "textwrap.py").read_text()
    return "".join(text.splitlines(keepends=True)[:lines])


def holes(text: str, count: int) -> list[str]:
    """`L1:C1-L2:C2` ranges covering the code of `count` evenly spread non-blank lines."""
    rows = [(i, ln) for i, ln in enumerate(text.split("\n")) if ln.strip() and not ln.strip().startswith("#")]
    step = max(1, len(rows) // count)
    out = []
    for i, ln in rows[::step][:count]:
        start = len(ln) - len(ln.lstrip()) + 1
        out.append(f"{i + 1}:{start}-{i + 1}:{len(ln) + 1}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small")
    p.add_argument("--holes", type=int, default=20)
    p.add_argument("--lines", type=int, default=300)
    p.add_argument("--quality", default="balanced")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)

    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run([sys.executable, "-m", "infill", "model", "random", str(tmp / "model"), "--preset", args.preset],
                       check=True, env=env, capture_output=True)
        src = tmp / "module.py"
        src.write_text(source_file(args.lines))
        jobs = tmp / "jobs.jsonl"
        ranges = holes(src.read_text(), args.holes)
        jobs.write_text("".join(json.dumps({"path": str(src), "range": r}) + "\n" for r in ranges))
        cmd = [sys.executable, "-m", "infill", "fill", "--jobs", str(jobs), "--model", str(tmp / "model"),
               "--seed", "0", "--quality", args.quality]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        started = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        print(proc.stderr, file=sys.stderr)
        return proc.returncode
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    ok = [r for r in results if "error" not in r]
    secs = sorted(r["seconds"] for r in ok)
    report = {
        "preset": args.preset, "holes": len(results), "failed": len(results) - len(ok), "file_lines": args.lines,
        "quality": args.quality, "median_seconds_per_hole": round(statistics.median(secs), 3),
        "p90_seconds_per_hole": round(secs[int(0.9 * (len(secs) - 1))], 3),
        "mean_forward_passes": round(statistics.mean(r["forward_passes"] for r in ok), 1),
        "mean_steps": round(statistics.mean(r["steps"] for r in ok), 1),
        "wall_seconds_including_model_load": round(wall, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, no GPU",
        "command": "python benchmarks/cli_jobs.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
