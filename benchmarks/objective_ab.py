"""Uniform-state vs mask noise at equal compute: which objective should the bundled model learn?

Both arms train the same shape on the same data for the same number of steps (same batches, same
FLOPs but for uniform's extra self-conditioning pass, which it gets for free here), then are judged
through the engine, the way a user meets them, on line holes cut from held-out packages:
exact match, share of middles that compile (Python's own `compile` on the spliced file; empty middles
count as misses), forward passes per hole, tokens per pass and seconds per hole.

    python benchmarks/objective_ab.py --steps 1500 --out benchmarks/results/objective_ab.json

Corpus: the Python standard library only (a narrow corpus, as the issue allows: more epochs per
CPU-minute), split by package. The two arms train in parallel processes, one thread each.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import statistics
import sys
import sysconfig
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infill.models.presets import WEIGHTS_DIR  # noqa: E402
from infill.train.config import TrainConfig  # noqa: E402

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def arm_config(objective: str, steps: int, preset: str) -> TrainConfig:
    return TrainConfig(preset=preset, objective=objective, init_from=None, prompt_len=128, buckets=(16, 32, 64),
                       tokens_per_batch=1_536, lr=3e-3, warmup_s=1, time_budget_s=1e9, max_steps=steps, workers=1,
                       bank_capacity=12_000, bank_min=2_000, val_examples=256, eval_every_s=600,
                       export_every_s=1e9, log_every=25, seed=0)


def _train_arm(objective: str, steps: int, preset: str, out: str) -> None:
    import torch

    from infill.train.loop import train

    torch.set_num_threads(1)
    log = open(Path(out) / "train.log", "w")  # noqa: SIM115 (the child's whole life)
    train(arm_config(objective, steps, preset), f"ab-{objective}", Path(out) / "run", Path(out) / "weights",
          WEIGHTS_DIR, device="cpu", roots=[STDLIB], log=lambda m: print(m, file=log, flush=True))


def code_lines(text: str) -> list[int]:
    """0-based lines that start with code (not inside a string, not a comment or a docstring)."""
    import io
    import tokenize

    first: dict[int, int] = {}
    try:
        for t in tokenize.generate_tokens(io.StringIO(text).readline):
            if t.type in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
                continue
            first.setdefault(t.start[0], t.type)
    except (tokenize.TokenError, SyntaxError):
        return []
    return [line - 1 for line, kind in sorted(first.items()) if kind in (tokenize.NAME, tokenize.OP, tokenize.NUMBER)]


def line_holes(limit: int, seed: int = 0, max_tokens: int = 24) -> list[dict]:
    """Line holes from held-out stdlib packages: the cursor after a line's indentation, the middle its rest."""
    from infill.train.corpus import collect_corpus
    from infill.train.tokenizer import load_tokenizer

    tok = load_tokenizer(WEIGHTS_DIR)
    files = sorted(collect_corpus([STDLIB]).split("val"), key=lambda f: str(f.path))
    rng = random.Random(seed)
    rng.shuffle(files)
    holes = []
    for f in files:
        if f.language != "python":
            continue
        text = f.text
        try:
            compile(text, str(f.path), "exec")
        except (SyntaxError, ValueError):
            continue
        lines = text.splitlines(keepends=True)
        candidates = [i for i in code_lines(text) if 1 <= len(tok.encode(lines[i].strip())) <= max_tokens]
        for i in rng.sample(candidates, min(3, len(candidates))):
            start = sum(len(x) for x in lines[:i])
            line = lines[i]
            indent = len(line) - len(line.lstrip(" \t"))
            content = line.rstrip("\r\n")[indent:]
            cursor = start + indent
            holes.append({"path": str(f.path), "line": i + 1, "text": text[:cursor] + text[cursor + len(content):],
                          "cursor": cursor, "middle": content})
        if len(holes) >= limit:
            break
    return holes[:limit]


def evaluate(model_dir: Path, holes: list[dict], quality: str) -> dict:
    from infill.engine import Engine
    from infill.models.base import LoadOptions
    from infill.request import InfillRequest

    engine = Engine.load(str(model_dir), LoadOptions(threads=1))
    rows = []
    for h in holes:
        t0 = time.perf_counter()
        r = engine.fill(InfillRequest(text=h["text"], cursor=h["cursor"], language="python", seed=0, quality=quality))
        secs = time.perf_counter() - t0
        middle = r.text
        spliced = h["text"][: h["cursor"]] + middle + h["text"][h["cursor"]:]
        try:
            compile(spliced, "<hole>", "exec")
            compiles = bool(middle.strip())
        except (SyntaxError, ValueError):
            compiles = False
        rows.append({"exact": middle.strip() == h["middle"].strip(), "compiles": compiles, "empty": not middle.strip(),
                     "passes": r.forward_passes, "tokens": r.tokens, "seconds": secs, "text": middle})
    n = len(rows)
    return {
        "holes": n,
        "exact_match": sum(r["exact"] for r in rows) / n,
        "compiles": sum(r["compiles"] for r in rows) / n,
        "empty": sum(r["empty"] for r in rows) / n,
        "passes_per_hole": statistics.mean(r["passes"] for r in rows),
        "tokens_per_pass": sum(r["tokens"] for r in rows) / max(1, sum(r["passes"] for r in rows)),
        "seconds_per_hole_p50": statistics.median(r["seconds"] for r in rows),
        "examples": [{"want": h["middle"], "got": r["text"]} for h, r in list(zip(holes, rows, strict=True))[:8]],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--preset", default="mini")
    p.add_argument("--holes", type=int, default=120)
    p.add_argument("--work", type=Path, default=Path("runs/objective_ab"))
    p.add_argument("--skip-training", action="store_true", help="evaluate the arms already in --work")
    p.add_argument("--qualities", nargs="+", default=["balanced", "fast"])
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    arms = ("uniform", "mask")
    t0 = time.perf_counter()
    if not args.skip_training:
        ctx = mp.get_context("spawn")
        procs = []
        for arm in arms:
            (args.work / arm).mkdir(parents=True, exist_ok=True)
            proc = ctx.Process(target=_train_arm, args=(arm, args.steps, args.preset, str(args.work / arm)))
            proc.start()
            procs.append(proc)
        for proc in procs:
            proc.join()
            if proc.exitcode:
                raise SystemExit(f"an arm failed (exit {proc.exitcode}); see {args.work}/*/train.log")
    train_s = time.perf_counter() - t0
    holes = line_holes(args.holes)
    result = {"command": "python benchmarks/objective_ab.py " + " ".join(argv or sys.argv[1:]),
              "preset": args.preset, "steps": args.steps, "holes": len(holes), "train_wall_seconds": round(train_s),
              "arms": {}}
    for arm in arms:
        report = json.loads((args.work / arm / "run" / "report.json").read_text())
        entry = {"tokens": report["tokens"], "train_seconds": report["train_seconds"],
                 "validation_loss": report["validation_loss"], "validation_encoder_loss": report["validation_encoder_loss"]}
        for q in args.qualities:
            entry[q] = evaluate(args.work / arm / "weights", holes, q)
            print(arm, q, {k: v for k, v in entry[q].items() if k != "examples"}, flush=True)
        result["arms"][arm] = entry
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

