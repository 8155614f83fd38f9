"""`infill fill` before and after, side by side in one run: seconds per hole by kind and preset, the cold
command, the command through a running daemon, model load, and every --help.

Part 1, per hole after the model is loaded (`infill fill --jobs`, one load, the bundled model, 1 thread): holes
cut from a 300-line Python file (the standard library's textwrap.py), `--holes` of each kind:
  line        the rest of a code line after its first word (cursor)
  expression  the contents of a line's first bracket pair (cursor: `foo(|)`)
  statement   a whole code line, the cursor on its indentation
  block       a function's body, the cursor on the indented line after the `def` line
  range       a code line selected and regenerated (range)
The CLI's own `seconds` (engine time) of each hole, p50 and max per kind, with forward passes and tokens.
Part 2, wall clock of whole commands (median of `--repeats`): `infill fill --quality fast` on one hole (the
model loads in the process), the same through a running daemon (after only), loading the model in a fresh
interpreter (imports included; `Engine.load`), and `infill --help`, `fill --help`, `train --help`, ... .

    python benchmarks/cli_latency.py --holes 5 --threads 1 --out benchmarks/results/cli_latency.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import tokenize
from pathlib import Path

from baseline import BASELINE, ROOT, checkout, env_for, publish, resolve

KINDS = ("line", "expression", "statement", "block", "range")
HELPS = ("--help", "fill --help", "daemon --help", "lsp --help", "model random --help", "train --help")
LOAD = ("import time; t = time.perf_counter(); from infill.engine import Engine; "
        "from infill.models.base import LoadOptions; Engine.load(None, LoadOptions(threads=1)); "
        "print(time.perf_counter() - t)")


def source_file(lines: int) -> str:
    text = Path(sysconfig.get_paths()["stdlib"], "textwrap.py").read_text()
    return "".join(text.splitlines(keepends=True)[:lines])


def cut_holes(text: str, per_kind: int) -> list[tuple[str, str, dict]]:
    """(kind, document, job fields) for `per_kind` holes of each kind, spread over the file."""
    lines = text.split("\n")
    in_strings = {row for tok in tokenize.generate_tokens(io.StringIO(text).readline) if tok.type == tokenize.STRING
                  for row in range(tok.start[0] - 1, tok.end[0])}  # rows of (multi-line) string literals
    code = [i for i, ln in enumerate(lines) if ln.startswith("        ") and ln.strip() and i not in in_strings
            and not ln.strip().startswith("#") and len(ln.strip()) > 12]
    out: list[tuple[str, str, dict]] = []

    def doc(i: int, new: str) -> str:
        return "\n".join([*lines[:i], new, *lines[i + 1 :]])

    def spread(rows: list[int]) -> list[int]:
        step = max(1, len(rows) // per_kind)
        return rows[::step][:per_kind]

    first_word = re.compile(r"\s*[\w.]+\s?")
    words = [i for i in code if (m := first_word.match(lines[i])) and m.end() < len(lines[i])]
    for i in spread(words):  # line: the rest after the first word
        ln = lines[i]
        m = first_word.match(ln)
        out.append(("line", doc(i, ln[: m.end()]), {"at": f"{i + 1}:{m.end() + 1}"}))
    brackets = [i for i in code if re.search(r"\(([^()]+)\)", lines[i])]
    for i in spread(brackets):  # expression: inside the first brackets
        m = re.search(r"\(([^()]+)\)", lines[i])
        out.append(("expression", doc(i, lines[i][: m.start(1)] + lines[i][m.end(1) :]),
                    {"at": f"{i + 1}:{m.start(1) + 1}"}))
    for i in spread(code):  # statement: the whole line, the cursor on its indentation
        indent = len(lines[i]) - len(lines[i].lstrip())
        out.append(("statement", doc(i, lines[i][:indent]), {"at": f"{i + 1}:{indent + 1}"}))
    defs = [i for i, ln in enumerate(lines) if ln.lstrip().startswith("def ") and ln.rstrip().endswith(":")]
    for i in spread(defs):  # block: the body of a function
        body_indent = " " * (len(lines[i]) - len(lines[i].lstrip()) + 4)
        end = i + 1
        while end < len(lines) and (not lines[end].strip() or lines[end].startswith(body_indent)):
            end += 1
        kept = [*lines[: i + 1], body_indent, *lines[end:]]
        out.append(("block", "\n".join(kept), {"at": f"{i + 2}:{len(body_indent) + 1}"}))
    for i in spread(code):  # range: a code line regenerated
        indent = len(lines[i]) - len(lines[i].lstrip())
        out.append(("range", text, {"range": f"{i + 1}:{indent + 1}-{i + 1}:{len(lines[i]) + 1}"}))
    return out


def jobs_run(tree: Path, env: dict, holes: list[tuple[str, str, dict]], quality: str, threads: int, work: Path,
             extra: list[str]) -> list[dict]:
    jobs = []
    for n, (kind, document, fields) in enumerate(holes):
        path = work / f"hole_{n}_{kind}.py"
        path.write_text(document)
        jobs.append(json.dumps({"path": str(path), **fields}))
    jobs_file = work / f"jobs-{quality}.jsonl"
    jobs_file.write_text("\n".join(jobs) + "\n")
    cmd = [sys.executable, "-m", "infill", "fill", "--jobs", str(jobs_file), "--quality", quality, "--seed", "0",
           "--threads", str(threads), *extra]
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=7200)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{cmd} failed: {proc.stderr[-2000:]}")
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return [dict(r, hole_kind=kind) for r, (kind, _, _) in zip(results, holes, strict=True)]


def per_kind(results: list[dict]) -> dict:
    out = {}
    for kind in KINDS:
        rows = [r for r in results if r["hole_kind"] == kind and "error" not in r]
        if rows:
            secs = [r["seconds"] for r in rows]
            out[kind] = {"holes": len(rows), "p50_s": round(statistics.median(secs), 3), "max_s": round(max(secs), 3),
                         "passes": round(statistics.mean(r["forward_passes"] for r in rows), 1),
                         "tokens_per_pass": round(sum(r["tokens"] for r in rows)
                                                  / max(1, sum(r["forward_passes"] for r in rows)), 3)}
    return out


def wall(cmd: list[str], tree: Path, env: dict, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(cmd, cwd=tree, env=env, capture_output=True, check=True, timeout=600)
        times.append(time.perf_counter() - started)
    return round(statistics.median(times), 3)


def commands(tree: Path, env: dict, src: Path, repeats: int, threads: int, extra: list[str]) -> dict:
    out = {"fill_fast_cold_s": wall([sys.executable, "-m", "infill", "fill", str(src), "--at", "151:16", "--quality",
                                     "fast", "--threads", str(threads), *extra], tree, env, repeats)}
    loads = [float(subprocess.run([sys.executable, "-c", LOAD], cwd=tree, env=env, capture_output=True, text=True,
                                  check=True).stdout) for _ in range(repeats)]
    out["model_load_s"] = round(statistics.median(loads), 3)
    out["help_s"] = {h: wall([sys.executable, "-m", "infill", *h.split()], tree, env, repeats) for h in HELPS}
    return out


def through_daemon(env: dict, src: Path, repeats: int, threads: int, runtime: Path) -> dict:
    """`infill fill` wall clock with a daemon serving the bundled model (this checkout only)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"ws://127.0.0.1:{port}"
    env = dict(env, XDG_RUNTIME_DIR=str(runtime))
    daemon = subprocess.Popen([sys.executable, "-m", "infill", "daemon", "--port", str(port), "--threads",
                               str(threads)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        state = runtime / "infill" / f"daemon-{port}.json"
        deadline = time.monotonic() + 120
        while not (state.exists() and json.loads(state.read_text() or "{}").get("ready")):
            if time.monotonic() > deadline:
                raise SystemExit("the daemon did not come up")
            time.sleep(0.2)
        cmd = [sys.executable, "-m", "infill", "fill", str(src), "--at", "151:16", "--json", "--daemon", address]
        out = {q: wall([*cmd, "--quality", q], ROOT, env, repeats) for q in ("fast", "balanced")}
        probe = subprocess.run([*cmd, "--quality", "fast"], cwd=ROOT, env=env, capture_output=True, text=True)
        out["backend"] = json.loads(probe.stdout)["backend"]
        return out
    finally:
        daemon.terminate()
        daemon.wait(30)


def ratio(before: float | None, after: float | None) -> str:
    return f"{before / after:.1f}x" if before and after else "–"


def markdown(r: dict) -> str:
    lines = ["# `infill fill` before and after", "", f"Command: `{r['command']}`", "",
             f"Before: {r['baseline']}; after: {r['commit']}; {r['machine']}; the bundled model, "
             f"{r['threads']} thread(s), seed 0, {r['holes']} holes per kind cut from textwrap.py (300 lines).", "",
             "Per hole after the model is loaded (`infill fill --jobs`, the CLI's `seconds`):", "",
             "| kind | preset | before p50 s | after p50 s | ratio | before max s | after max s | passes before → after "
             "| tokens/pass before → after |", "|---|---|---|---|---|---|---|---|---|"]
    for kind in KINDS:
        for q in ("fast", "balanced"):
            b, a = r["before"]["holes"][q].get(kind), r["after"]["holes"][q].get(kind)
            if not a or not b:
                continue
            lines.append(f"| {kind} | {q} | {b['p50_s']} | {a['p50_s']} | {ratio(b['p50_s'], a['p50_s'])} | {b['max_s']} "
                         f"| {a['max_s']} | {b['passes']} → {a['passes']} | {b['tokens_per_pass']} → "
                         f"{a['tokens_per_pass']} |")
    bc, ac = r["before"]["commands"], r["after"]["commands"]
    lines += ["", "Whole commands, wall clock (median):", "", "| command | before s | after s | ratio |",
              "|---|---|---|---|",
              f"| `infill fill --quality fast` (model loaded in the process) | {bc['fill_fast_cold_s']} "
              f"| {ac['fill_fast_cold_s']} | {ratio(bc['fill_fast_cold_s'], ac['fill_fast_cold_s'])} |",
              f"| model load in a fresh interpreter, imports included | {bc['model_load_s']} | {ac['model_load_s']} "
              f"| {ratio(bc['model_load_s'], ac['model_load_s'])} |"]
    d = r["after"].get("daemon")
    if d:
        lines += [f"| `infill fill --quality fast` through a running daemon (backend: {d['backend']}) | – | {d['fast']} "
                  f"| {ratio(bc['fill_fast_cold_s'], d['fast'])} vs before's cold command |",
                  f"| `infill fill --quality balanced` through a running daemon | – | {d['balanced']} | |"]
    for h in HELPS:
        lines.append(f"| `infill {h}` | {bc['help_s'][h]} | {ac['help_s'][h]} | {ratio(bc['help_s'][h], ac['help_s'][h])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--holes", type=int, default=5, help="holes of each kind")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3, help="runs of each whole command (median)")
    p.add_argument("--baseline", default=BASELINE)
    p.add_argument("--out", type=Path, default=None, help="JSON; a Markdown table is written next to it")
    args = p.parse_args(argv)

    text = source_file(300)
    holes = cut_holes(text, args.holes)
    report = {"command": "python benchmarks/cli_latency.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "baseline": resolve(args.baseline), "commit": resolve("HEAD"), "threads": args.threads,
              "holes": args.holes, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, no GPU"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "textwrap300.py"
        src.write_text(text)
        old = checkout(args.baseline, tmp / "before")
        for name, tree, extra in (("before", old, []), ("after", ROOT, ["--no-daemon"])):
            env = env_for(tree)
            work = tmp / f"work-{name}"
            work.mkdir()
            started = time.perf_counter()
            report[name] = {"holes": {q: per_kind(jobs_run(tree, env, holes, q, args.threads, work, extra))
                                      for q in ("fast", "balanced")},
                            "commands": commands(tree, env, src, args.repeats, args.threads, extra)}
            print(f"{name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        runtime = tmp / "runtime"
        runtime.mkdir(mode=0o700)
        report["after"]["daemon"] = through_daemon(env_for(ROOT), src, args.repeats, args.threads, runtime)
    with_load = os.getloadavg()
    report["load_average_at_end"] = [round(x, 2) for x in with_load]
    publish(report, markdown(report), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
