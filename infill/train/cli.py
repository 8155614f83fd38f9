"""`infill train --config cpu|gpu|smoke`: train the project's own model and export it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..models.presets import WEIGHTS_DIR
from .config import TRAIN_CONFIGS, train_config


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="cpu", choices=sorted(TRAIN_CONFIGS),
                   help="named configuration (cpu: ~1 h on 2 cores; gpu: ~10 min on one H100)")
    p.add_argument("--out", type=Path, default=None,
                   help=f"where to export the weights (default: gpu {WEIGHTS_DIR}, the bundled model; "
                        "cpu RUN_DIR/weights, so that a CPU run never replaces GPU-trained weights; smoke: none)")
    p.add_argument("--run-dir", type=Path, default=None, help="checkpoints, history and plots (default runs/CONFIG)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's checkpoint")
    p.add_argument("--device", default="auto")
    p.add_argument("--tokenizer", type=Path, default=WEIGHTS_DIR, help="directory with tokenizer.json")
    p.add_argument("--roots", type=Path, nargs="*", default=None,
                   help="source roots for the corpus (default: stdlib and site-packages of this Python)")
    p.add_argument("--time-budget", type=float, default=None, help="seconds of training (overrides the config)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)


def export_dir(config: str, out: Path | None, run_dir: Path) -> Path | None:
    """Where the trained weights go: only `gpu` replaces the bundled model unless --out says otherwise."""
    if out is not None:
        return out
    return {"gpu": WEIGHTS_DIR, "cpu": run_dir / "weights"}.get(config)


def run(args: argparse.Namespace) -> int:
    from .loop import train

    cfg = train_config(args.config, time_budget_s=args.time_budget, batch_size=args.batch_size,
                       max_steps=args.max_steps, workers=args.workers, lr=args.lr)
    run_dir = args.run_dir or Path("runs") / args.config
    out = export_dir(args.config, args.out, run_dir)
    report = train(cfg, args.config, run_dir, out, args.tokenizer, device=args.device, resume=args.resume,
                   roots=args.roots, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(json.dumps({k: v for k, v in report.items() if k != "train_config"}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="infill train", description=__doc__)
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
