"""`infill train --config cpu|gpu|smoke`: train the project's own model and export it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import OBJECTIVES, TRAIN_CONFIGS, train_config

TRAIN_EXITS = ("exit status: 0 trained and exported, 1 internal error (the message says what failed), "
               "2 bad input: a usage error, or a corpus too small to split")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="cpu", choices=sorted(TRAIN_CONFIGS),
                   help="named configuration (cpu: ~1 h on 2 cores; gpu: ~7 min on one H100/H200; smoke: seconds)")
    p.add_argument("--out", type=Path, default=None,
                   help="where to export the weights (default: gpu infill/weights/, the bundled model; "
                        "cpu RUN_DIR/weights, so that a CPU run never replaces GPU-trained weights; smoke: none)")
    p.add_argument("--run-dir", type=Path, default=None, help="history, report and plots (default runs/CONFIG)")
    p.add_argument("--objective", choices=sorted(OBJECTIVES), default=None,
                   help="noise the model learns to remove (default: the configuration's, see README)")
    p.add_argument("--init-from", default=None, metavar="bundled|DIR|none",
                   help="start from these weights (fresh optimizer, short warmup); 'none': random init")
    p.add_argument("--device", default="auto")
    p.add_argument("--tokenizer", type=Path, default=None,
                   help="directory with tokenizer.json (default: the bundled model's)")
    p.add_argument("--roots", type=Path, nargs="*", default=None,
                   help="source roots for the corpus (default: stdlib and site-packages of this Python)")
    p.add_argument("--time-budget", type=float, default=None, help="seconds of training (overrides the config)")
    p.add_argument("--tokens-per-batch", type=int, default=None, help="prompt + canvas slots per step")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--workers", type=int, default=None, help="processes cutting holes into the bank")
    p.add_argument("--max-files", type=int, default=None, help="use at most this many corpus files")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the training step (default: the configuration's; gpu compiles)")


def export_dir(config: str, out: Path | None, run_dir: Path) -> Path | None:
    """Where the trained weights go: only `gpu` replaces the bundled model unless --out says otherwise."""
    from ..models.presets import WEIGHTS_DIR  # imports torch: not for --help

    if out is not None:
        return out
    return {"gpu": WEIGHTS_DIR, "cpu": run_dir / "weights"}.get(config)


def config_from_args(args: argparse.Namespace):
    init = args.init_from
    overrides = dict(time_budget_s=args.time_budget, tokens_per_batch=args.tokens_per_batch, max_steps=args.max_steps,
                     workers=args.workers, lr=args.lr, objective=args.objective, compile=args.compile,
                     max_files=args.max_files)
    cfg = train_config(args.config, **overrides)
    if init is not None:
        from dataclasses import replace

        cfg = replace(cfg, init_from=None if init.lower() == "none" else init)
    return cfg


def run(args: argparse.Namespace) -> int:
    from .loop import train

    cfg = config_from_args(args)
    run_dir = args.run_dir or Path("runs") / args.config
    out = export_dir(args.config, args.out, run_dir)
    from ..models.presets import WEIGHTS_DIR

    report = train(cfg, args.config, run_dir, out, args.tokenizer or WEIGHTS_DIR, device=args.device, roots=args.roots,
                   log=lambda m: print(m, file=sys.stderr, flush=True))
    print(json.dumps({k: v for k, v in report.items() if k != "train_config"}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="infill train", description=__doc__, epilog=TRAIN_EXITS)
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
