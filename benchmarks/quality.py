"""Quality side by side: HumanEval-Infilling and SAFIM (Python), engine variants on the same holes, one run.

Sets (one hole per problem, a seeded sample of `--limit` problems per set, the same holes for every variant):
  - HumanEval-Infilling single-line, multi-line, random-span-light: pass@1 with the official harness
    (`humaneval.passes`: prompt + completion + suffix + test run in a subprocess, 3 s limit), exact match
    (`humaneval.exact`: line-wise, surrounding whitespace ignored), syntax-valid rate (the engine's verdict:
    the spliced file adds no syntax error).
  - SAFIM Python block / control / api (Gong et al., ICML 2024), scored as its authors score it: the FIM
    prefix and suffix are `prompt` split at `# TODO: Your code here`; the raw middle gets their syntax-aware
    truncation (block: drop trailing lines until the program parses and the completion sits exactly where a
    `pass` would; control: the first non-blank line; api: up to the parenthesis that closes the call); then
    block/control pass on string equality with the ground truth, else on running `eval_prompt` with the
    completion against every stdin/stdout unit test (CPython subprocess, no docker: Python only); api passes
    on equality with all whitespace removed (two calls with the same AST-level arguments also count).
Variants (every one on every hole, in the same process, seed fixed as in humaneval.py):
  balanced        the product default: tree-sitter-sized candidates, constraints on, `balanced` preset
  fixed64         one fixed 64-token canvas (the common diffusion practice), constraints on
  no-constraints  sized candidates, no overlap trimming, no re-indent, no repairs (humaneval.py --no-constraints)
  plain           fixed 64 and no constraints: a stock diffusion infill
  fast, thinking  the other two quality presets, sized, constraints on

    python benchmarks/quality.py --limit 6 --out benchmarks/results/quality.json     # ~1 h on 2 busy cores
    python benchmarks/quality.py --limit 0 --threads 4 --out ...                      # every problem

Writes JSON (after every hole, so a run cut short keeps what it finished) and a Markdown table (.md).
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import math
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from itertools import zip_longest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import humaneval  # noqa: E402  (loading and scoring of HumanEval-Infilling)

SAFIM_DATA = ROOT.parent / "shared" / "benchmarks" / "safim"
SAFIM_SETS = {"safim-block": "block_completion.jsonl.gz", "safim-control": "control_completion.jsonl.gz",
              "safim-api": "api_completion.jsonl.gz"}
HE_SETS = ("single-line", "multi-line", "random-span-light")
ALL_SETS = (*HE_SETS, *SAFIM_SETS)
PLACEHOLDER = "# TODO: Your code here"  # SAFIM's hole marker in Python prompts
UNIT_TEST_TIMEOUT = 5.0  # seconds per SAFIM unit test (ExecEval runs PyPy; CPython is slower)


@dataclass(frozen=True)
class Variant:
    quality: str = "balanced"
    fixed_length: int | None = None  # one fixed canvas length instead of the sizer's candidates
    constraints: bool = True  # overlap trimming, re-indent and repairs


VARIANTS: dict[str, Variant] = {
    "balanced": Variant(),
    "fixed64": Variant(fixed_length=64),
    "no-constraints": Variant(constraints=False),
    "plain": Variant(fixed_length=64, constraints=False),
    "fast": Variant(quality="fast"),
    "thinking": Variant(quality="thinking"),
}


# -- holes ---------------------------------------------------------------------------------------------------
@dataclass
class Hole:
    """One benchmark hole as the engine sees it: a document and a cursor, plus what scoring needs."""

    set: str
    task_id: str
    text: str
    cursor: int
    truth: str
    row: dict


def load_holes(name: str, limit: int, seed: int) -> list[Hole]:
    """One hole per problem, problems in a seeded order, the first `limit` (0: all)."""
    rng = random.Random(f"{seed}:{name}")
    if name in HE_SETS:
        if name == "multi-line":  # its first hole of every problem is a one-line range (L0_L0): draw one instead
            by_problem: dict[str, list[dict]] = {}
            for r in humaneval.load(name, humaneval.DATA, 0, 0):
                by_problem.setdefault(r["task_id"].split("/")[2], []).append(r)
            rows = [rng.choice(by_problem[k]) for k in sorted(by_problem, key=int)]
        else:  # the first hole of each problem, as humaneval.py --per-problem 1 (its 164-hole run scores the same)
            rows = humaneval.load(name, humaneval.DATA, 0, 1)
        rng.shuffle(rows)
        holes = [Hole(name, r["task_id"], r["prompt"] + r["suffix"], len(r["prompt"]), r["canonical_solution"], r)
                 for r in rows]
    else:
        rows = [r for r in safim_rows(name) if r["lang"] == "python"]
        by_problem = {}
        for r in rows:  # a Codeforces problem can give several tasks: its statement is the key
            by_problem.setdefault(r["prompt"].split("\nCode:")[0], []).append(r)
        keys = sorted(by_problem)
        rng.shuffle(keys)
        holes = []
        for key in keys:
            r = rng.choice(by_problem[key])
            prefix, suffix = safim_split(r)
            holes.append(Hole(name, r["task_id"], prefix + suffix, len(prefix), r["ground_truth"], r))
    return holes[:limit] if limit else holes


def safim_rows(name: str, data: Path = SAFIM_DATA) -> list[dict]:
    with gzip.open(data / SAFIM_SETS[name], "rt") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def safim_split(row: dict) -> tuple[str, str]:
    """FIM prefix and suffix: the instruction prompt split at its placeholder (the authors' PSM mode)."""
    parts = row["prompt"].split(PLACEHOLDER)
    if len(parts) != 2:
        raise ValueError(f"{row['task_id']}: expected one placeholder, found {len(parts) - 1}")
    return parts[0], parts[1]


def middle_of(text: str, cursor: int, result) -> str:
    """The string that goes between text[:cursor] and text[cursor:] once the engine's replacement of
    [start, end) is applied (the sizer may widen the hole around the cursor)."""
    new = text[: result.start] + result.text + text[result.end :]
    prefix, suffix = text[:cursor], text[cursor:]
    if new.startswith(prefix) and new.endswith(suffix) and len(new) >= len(prefix) + len(suffix):
        return new[len(prefix) : len(new) - len(suffix)]
    return result.text


# -- SAFIM scoring (the authors' rules, reimplemented on the project's tree-sitter) ----------------------------
def _trace(code: str) -> tuple[int, list[tuple[bool, str]]]:
    """(ERROR nodes, the enter/leave sequence of node types) of a Python parse. An ERROR node whose text is
    a lone ';' is not counted, as in the authors' checker."""
    from infill.syntax import parse

    tree = parse(code, "python")
    errors, events = 0, []
    stack = [(tree.root_node, False)]
    while stack:
        node, leaving = stack.pop()
        if leaving:
            events.append((False, node.type))
            continue
        events.append((True, node.type))
        if node.type == "ERROR" and node.text != b";":
            errors += 1
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(node.children))
    return errors, events


def parses(code: str) -> bool:
    return _trace(code)[0] == 0


def truncate_block(row: dict, completion: str) -> str:
    """Drop trailing lines until the program parses and the completion adds nodes only where a `pass`
    statement would stand: the node sequence of prefix + `pass` + suffix and of prefix + completion + suffix
    agree on a common head and tail that leave out only the `pass` (4 events: enter/leave of pass_statement
    and of its `pass` keyword)."""
    before, after = row["eval_prompt"].split("{{completion}}")
    _, base = _trace(before + "pass" + after)
    lines = completion.splitlines(keepends=True)
    while lines:
        errors, events = _trace(before + "".join(lines) + after)
        if errors == 0 and len(events) >= len(base):
            head = 0
            while head < len(base) and head < len(events) and base[head] == events[head]:
                head += 1
            tail = 0  # counted independently of the head, as the authors do (the two may overlap)
            while tail < len(base) and tail < len(events) and base[-1 - tail] == events[-1 - tail]:
                tail += 1
            if len(base) - head - tail == 4:
                break
        lines.pop()
    return "".join(lines)


def truncate_control(completion: str) -> str:
    """Python control expressions: the first non-blank line."""
    return next((line for line in completion.splitlines() if line.strip()), "")


def truncate_api(completion: str) -> str:
    """Up to and including the first ')' that leaves the bracket depth at zero or below."""
    depth = 0
    for i, ch in enumerate(completion):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth <= 0:
                return completion[: i + 1]
    return completion


TRUNCATE = {"safim-block": lambda row, c: truncate_block(row, c), "safim-control": lambda row, c: truncate_control(c),
            "safim-api": lambda row, c: truncate_api(c)}


def api_match(completion: str, truth: str) -> bool:
    """Equal once all whitespace is removed; in Python also when both are calls with the same AST-level
    positional and keyword arguments (the authors compare the arguments only)."""
    a, b = re.sub(r"\s+", "", completion), re.sub(r"\s+", "", truth)
    try:
        ta, tb = ast.parse(a, mode="eval").body, ast.parse(b, mode="eval").body
        if isinstance(ta, ast.Call) and isinstance(tb, ast.Call):
            args = lambda c: ([ast.dump(x) for x in c.args], {k.arg: ast.dump(k.value) for k in c.keywords})  # noqa: E731
            return args(ta) == args(tb)
    except (SyntaxError, ValueError, RecursionError):
        pass
    return a == b


def same_output(got: str, expected: list[str]) -> bool:
    """Whitespace-separated tokens equal to one of the accepted outputs, case-insensitively (Codeforces
    statements accept YES/Yes/yes alike, and SAFIM's recorded outputs mix them)."""
    tokens = got.lower().split()
    return any(tokens == e.lower().split() for e in expected)


def run_unit_tests(row: dict, completion: str, timeout: float = UNIT_TEST_TIMEOUT) -> bool:
    """The program with the completion in its hole, run on every stdin/stdout test; stops at the first fail."""
    program = row["eval_prompt"].replace("{{completion}}", completion)
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as fh:
        fh.write(program)
    try:
        for test in row["unit_tests"]:
            try:
                proc = subprocess.run([sys.executable, "-I", fh.name], input=test["input"], capture_output=True,
                                      text=True, timeout=timeout, cwd=tempfile.gettempdir())
            except subprocess.TimeoutExpired:
                return False
            if proc.returncode != 0 or not same_output(proc.stdout, test["output"]):
                return False
        return True
    finally:
        os.unlink(fh.name)


def score_safim(name: str, row: dict, raw: str) -> dict:
    """The authors' verdict on one raw middle: truncation, then exact match, then (block/control) tests."""
    from infill.syntax import check_splice

    completion = TRUNCATE[name](row, raw)
    # syntax ok: the raw middle in the bare program passes the engine's checker (it compiles; no code is a miss).
    # The engine's own verdict is taken on the instruction prompt, whose prose header is already a syntax error.
    before, after = row["eval_prompt"].split("{{completion}}")
    syntax_ok = check_splice(before + after, len(before), len(before), raw, "python").ok
    if name == "safim-api":
        exact = api_match(completion, row["ground_truth"])
        return {"completion": completion, "exact": exact, "passed": exact, "compiles": None, "syntax_ok": syntax_ok}
    exact = completion == row["ground_truth"]
    passed = exact or (bool(completion.strip()) and run_unit_tests(row, completion))
    compiles = parses(row["eval_prompt"].replace("{{completion}}", completion))
    return {"completion": completion, "exact": exact, "passed": passed, "compiles": compiles, "syntax_ok": syntax_ok}


def score(hole: Hole, raw: str, timeout: float) -> dict:
    if hole.set in SAFIM_SETS:
        return score_safim(hole.set, hole.row, raw)
    return {"completion": raw, "exact": humaneval.exact(raw, hole.truth),  # no code is a miss, never a pass
            "passed": bool(raw.strip()) and humaneval.passes(hole.row, raw, timeout), "compiles": None, "syntax_ok": None}


def truth_check(holes: list[Hole], timeout: float) -> dict:
    """The runner itself: the ground truth must pass on the holes used (else a failure says nothing)."""
    out = {}
    for name in dict.fromkeys(h.set for h in holes):
        mine = [h for h in holes if h.set == name]
        if name in SAFIM_SETS and name != "safim-api":
            ok = sum(run_unit_tests(h.row, h.truth) for h in mine)
        else:
            ok = sum(score(h, h.truth, timeout)["passed"] for h in mine)
        out[name] = f"{ok}/{len(mine)}"
    return out


# -- running -------------------------------------------------------------------------------------------------
def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a rate k/n."""
    if n == 0:
        return (0.0, 0.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4))


def summarize(records: list[dict]) -> dict:
    n = len(records)
    out = {"holes": n}
    for key, field in (("pass_at_1", "passed"), ("exact_match", "exact"), ("syntax_ok", "syntax_ok")):
        k = sum(bool(r[field]) for r in records)
        out[key] = round(k / n, 4) if n else 0.0
        out[f"{key}_ci95"] = wilson(k, n)
    if n:
        out["forward_passes_mean"] = round(statistics.fmean(r["forward_passes"] for r in records), 1)
        out["steps_mean"] = round(statistics.fmean(r["steps"] for r in records), 1)
        out["tokens_mean"] = round(statistics.fmean(r["tokens"] for r in records), 1)
        out["seconds_p50"] = round(statistics.median(r["seconds"] for r in records), 2)
        out["empty"] = round(sum(not r["completion"].strip() for r in records) / n, 4)
    return out


def machine_name(engine) -> str:
    import torch

    device = engine.backend.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.machine()}, CPU only"
    return f"{name}, {os.cpu_count()} CPU cores, torch {torch.get_num_threads()} thread(s)"


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def build_engines(model: str | None, threads: int | None, device: str):
    """One backend, two engines over it (constraints on / off)."""
    from infill.engine import Engine, EngineConfig, default_model
    from infill.models import load_backend
    from infill.models.base import LoadOptions

    backend = load_backend(model or default_model(), LoadOptions(device=device, threads=threads))
    on = EngineConfig()
    off = replace(on, constraints=replace(on.constraints, trim_overlap=False, reindent=False, repair_rounds=0))
    return {True: Engine(backend, on), False: Engine(backend, off)}


def run_hole(engines, hole: Hole, name: str, variant: Variant, seed: int, timeout: float) -> dict:
    from infill.request import InfillRequest

    engine = engines[variant.constraints]
    engine.backend.clear_cache()  # every variant pays its own prefill: forward-pass counts stay comparable
    lengths = (variant.fixed_length,) if variant.fixed_length else None
    res = engine.fill(InfillRequest(text=hole.text, cursor=hole.cursor, language="python", quality=variant.quality,
                                    seed=seed, lengths=lengths))
    raw = middle_of(hole.text, hole.cursor, res)
    verdict = score(hole, raw, timeout)
    return {"set": hole.set, "task_id": hole.task_id, "variant": name, "passed": verdict["passed"],
            "exact": verdict["exact"], "compiles": verdict["compiles"], "engine_syntax_ok": res.syntax_ok,
            "syntax_ok": res.syntax_ok if verdict["syntax_ok"] is None else verdict["syntax_ok"],
            "forward_passes": res.forward_passes, "steps": res.steps, "tokens": res.tokens,
            "seconds": round(res.seconds, 3), "kind": res.kind, "lengths": [c.length for c in res.candidates],
            "completion": verdict["completion"], "raw": raw if raw != verdict["completion"] else None}


def report_of(args, engines, records, started, truth, previous: dict | None = None) -> dict:
    sets_run = list(dict.fromkeys(r["set"] for r in records))
    sets = {name: {v: summarize([r for r in records if r["set"] == name and r["variant"] == v]) for v in args.variants}
            for name in sorted(sets_run, key=ALL_SETS.index)}
    command = "python benchmarks/quality.py " + " ".join(sys.argv[1:])
    if previous:  # --merge: the earlier run's command first
        command = previous["command"] + "; then " + command
    return {
        "commit": git_commit(), "machine": machine_name(engines[True]), "model": engines[True].model_id,
        "parameters": sum(p.numel() for p in engines[True].backend.model.parameters())
        if hasattr(engines[True].backend, "model") else None,
        "command": command, "seed": args.seed,
        "holes_per_set": {n: len({r["task_id"] for r in records if r["set"] == n}) for n in sets},
        "selection": "one hole per problem (HumanEval single-line: the first of each problem, as humaneval.py "
                     "--per-problem 1; multi-line: one drawn per problem, since the first is always a one-line range; "
                     "SAFIM: one task per Codeforces statement), problems shuffled with seed "
                     f"{args.seed}, the first {args.limit or 'all'} per set; every variant on every hole",
        "variants": {v: VARIANTS[v].__dict__ for v in args.variants},
        "runner_check_ground_truth_passes": {**(previous or {}).get("runner_check_ground_truth_passes", {}), **truth},
        "unit_test_timeout_s": UNIT_TEST_TIMEOUT, "humaneval_timeout_s": args.timeout,
        "wall_seconds": round(time.perf_counter() - started + (previous or {}).get("wall_seconds", 0), 1),
        "sets": sets, "records": records,
    }


def _cell(s: dict, key: str) -> str:
    lo, hi = s[key + "_ci95"]
    return f"{s[key]:.1%} [{lo:.0%}, {hi:.0%}]"


def markdown(report: dict) -> str:
    out = [
        "# Quality side by side: HumanEval-Infilling and SAFIM (Python)",
        "",
        f"`{report['command']}` on {report['machine']}; model `{report['model']}`; commit `{report['commit'][:10]}`; "
        f"{report['wall_seconds'] / 60:.0f} min.",
        "",
        f"Holes: {report['selection']}. Holes per set: "
        + ", ".join(f"{k} {v}" for k, v in report["holes_per_set"].items())
        + ". Runner check (the ground truth scored by the same code): "
        + ", ".join(f"{k} {v}" for k, v in report["runner_check_ground_truth_passes"].items()) + ".",
        "",
        "pass@1: HumanEval executes the tests; SAFIM block/control: exact match after the authors' truncation, "
        "else the unit tests; SAFIM api: whitespace-free (or same-arguments) match. exact: HumanEval line-wise "
        "match, SAFIM the authors' match. syntax ok: HumanEval the engine's verdict (the splice adds no syntax error), "
        "SAFIM the raw middle in the bare program parses (the prompt's prose header defeats the engine's verdict). "
        "Brackets: 95% Wilson intervals: with this few holes, differences inside them are noise.",
        "",
        "empty: no middle (SAFIM: after truncation). passes: encoder + decoder passes per hole (mean).",
        "",
        "| set | variant | holes | pass@1 | exact | syntax ok | empty | passes | steps | tokens | s (p50) |",
        "|---|---|---:|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, variants in report["sets"].items():
        for v, s in variants.items():
            if not s["holes"]:
                continue
            out.append(f"| {name} | {v} | {s['holes']} | {_cell(s, 'pass_at_1')} | {_cell(s, 'exact_match')} "
                       f"| {_cell(s, 'syntax_ok')} | {s['empty']:.0%} | {s['forward_passes_mean']:g} | {s['steps_mean']:g} "
                       f"| {s['tokens_mean']:g} | {s['seconds_p50']:g} |")
    out += ["", "Variants: " + "; ".join(f"`{k}` {v}" for k, v in report["variants"].items()), ""]
    return "\n".join(out)


def rescore(path: Path) -> int:
    """Score the stored SAFIM middles again (the raw middle is kept whenever truncation changed it)."""
    report = json.loads(path.read_text())
    rows = {r["task_id"]: r for name in SAFIM_SETS for r in safim_rows(name) if r["lang"] == "python"}
    for rec in report["records"]:
        if rec["set"] in SAFIM_SETS:
            raw = rec["raw"] if rec.get("raw") is not None else rec["completion"]
            rec.setdefault("engine_syntax_ok", rec["syntax_ok"])
            verdict = score_safim(rec["set"], rows[rec["task_id"]], raw)
            rec.update(passed=verdict["passed"], exact=verdict["exact"], compiles=verdict["compiles"],
                       syntax_ok=verdict["syntax_ok"], completion=verdict["completion"],
                       raw=raw if raw != verdict["completion"] else None)
    for name, variants in report["sets"].items():
        for v in variants:
            variants[v] = summarize([r for r in report["records"] if r["set"] == name and r["variant"] == v])
    report["rescored_with"] = git_commit()
    path.write_text(json.dumps(report, indent=1) + "\n")
    path.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", nargs="+", default=list(ALL_SETS), choices=ALL_SETS)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--limit", type=int, default=6, help="holes per set (one per problem; 0: every problem)")
    p.add_argument("--model", default=None, help="checkpoint (default: $INFILL_MODEL, else the bundled model)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="hole order and sampling seed")
    p.add_argument("--timeout", type=float, default=3.0, help="HumanEval test time limit (the official 3 s)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--merge", action="store_true", help="keep --out's records of the sets not run now")
    p.add_argument("--rescore", action="store_true",
                   help="no model: score --out's stored SAFIM middles again with the current scoring code")
    args = p.parse_args(argv)
    if args.rescore:
        return rescore(args.out)

    previous = json.loads(args.out.read_text()) if args.merge and args.out and args.out.exists() else None
    kept = [r for r in (previous or {}).get("records", []) if r["set"] not in args.sets]
    engines = build_engines(args.model, args.threads, args.device)
    per_set = [load_holes(name, args.limit, args.seed) for name in args.sets]
    # round robin over the sets: a run cut short still has every set, on its first holes
    holes = [h for group in zip_longest(*per_set) for h in group if h is not None]
    truth = truth_check(holes, args.timeout)
    print(f"{len(holes)} holes x {len(args.variants)} variants; ground truth passes: {truth}", file=sys.stderr)
    started, records = time.perf_counter(), list(kept)
    for i, hole in enumerate(holes):
        for name in args.variants:
            records.append(run_hole(engines, hole, name, VARIANTS[name], args.seed, args.timeout))
        done = [r for r in records if r["set"] == hole.set]
        print(f"[{i + 1}/{len(holes)}] {hole.set} {hole.task_id}: "
              + " ".join(f"{r['variant']}={'P' if r['passed'] else 'E' if r['exact'] else '.'}"
                         for r in records[-len(args.variants):])
              + f"  ({len(done) // len(args.variants)} in set, {time.perf_counter() - started:.0f} s)",
              file=sys.stderr, flush=True)
        if args.out:
            report = report_of(args, engines, records, started, truth, previous)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=1) + "\n")
            args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report_of(args, engines, records, started, truth, previous)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
