"""The prepared GPU run: everything the lent machine does, in one command, inside its time limit.

    bash benchmarks/device/train_gpu.sh 540          # on the lent machine (device tool), results in $OUT
    python -m infill.train.device --dry-run --out D  # the same code on this CPU, in about a minute

Steps: report the machine; collect the corpus (that machine's own Python packages); start the bank
builder on all cores but one; build and compile the model meanwhile; train until the deadline leaves
time to export; export bf16 shards as training goes (so a run cut off still returns a model) and at the
end; pack what comes back into at most 8 files of at most 16 MiB (the device tool's limits):

    OUT/model-0000k-of-0000n.safetensors   the weights (<= 15 MB each)
    OUT/meta.tgz                           config, shard index, training report, history, manifest, loss plot
    OUT/train.log                          written by the shell wrapper

`unpack(OUT, DIR)` turns that back into a checkpoint directory (with the bundled tokenizer).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tarfile
import time
from dataclasses import replace
from pathlib import Path

from ..models.presets import WEIGHTS_DIR, copy_tokenizer
from .config import train_config

META_FILES = ("config.json", "generation_config.json", "model.safetensors.index.json", "training_report.json",
              "corpus_manifest.json")
RUN_FILES = ("report.json", "history.json", "loss.png")
MAX_RETURNED_FILES = 8  # the device tool returns at most 8 files ...
MAX_FILE_BYTES = 16 * 1024 * 1024  # ... of at most 16 MiB each


def dry_run_config(cfg):
    """The gpu configuration shrunk to a minute of CPU: same code path, same model shape."""
    return replace(cfg, time_budget_s=20, tokens_per_batch=1_024, workers=1, compile=False, max_files=300,
                   bank_capacity=2_000, bank_min=300, val_examples=64, eval_every_s=10, export_every_s=8,
                   log_every=5, warmup_s=2)


def pack(weights: Path, run_dir: Path, out: Path) -> list[Path]:
    """Shards as they are, everything else in meta.tgz. Returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    shards = sorted(weights.glob("model*.safetensors"))
    for s in shards:
        tmp = out / f".{s.name}.tmp"
        shutil.copy2(s, tmp)
        os.replace(tmp, out / s.name)
    tmp = out / ".meta.tgz.tmp"
    with tarfile.open(tmp, "w:gz") as tar:
        for name in META_FILES:
            if (weights / name).exists():
                tar.add(weights / name, arcname=f"weights/{name}")
        for name in RUN_FILES:
            if (run_dir / name).exists():
                tar.add(run_dir / name, arcname=f"run/{name}")
    os.replace(tmp, out / "meta.tgz")
    written = [*(out / s.name for s in shards), out / "meta.tgz"]
    assert len(written) + 1 <= MAX_RETURNED_FILES, "too many files for the device tool to return"
    assert all(p.stat().st_size <= MAX_FILE_BYTES for p in written), "a returned file is over 16 MiB"
    return written


def unpack(returned: Path, dest: Path, tokenizer_dir: Path = WEIGHTS_DIR) -> Path:
    """Returned files -> a checkpoint directory loadable by from_pretrained (run files under dest/run)."""
    dest.mkdir(parents=True, exist_ok=True)
    for shard in returned.glob("model*.safetensors"):
        shutil.copy2(shard, dest / shard.name)
    with tarfile.open(returned / "meta.tgz") as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.count("/") == 1 and ".." not in member.name:
                folder, name = member.name.split("/")
                target = dest if folder == "weights" else dest / "run"
                target.mkdir(exist_ok=True)
                with tar.extractfile(member) as src, open(target / name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    copy_tokenizer(tokenizer_dir, dest)
    return dest


def environment() -> dict:
    import torch
    import transformers

    info = {"python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__,
            "cpus": os.cpu_count(), "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    try:
        import tree_sitter  # noqa: F401

        info["tree_sitter"] = True
    except ImportError:
        info["tree_sitter"] = False  # holes fall back to lines and indentation
    return info


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    p = argparse.ArgumentParser(prog="python -m infill.train.device", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "runs/device-out")),
                   help="where the returned files go (default $OUT)")
    p.add_argument("--deadline-s", type=float, default=540.0,
                   help="seconds from start by which everything must be written (the command's limit minus a margin)")
    p.add_argument("--dry-run", action="store_true", help="the same code on the CPU, in about a minute")
    p.add_argument("--objective", default=None)
    p.add_argument("--init-from", default=None, help="bundled (default), a checkpoint directory, or none")
    p.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "infill-device")
    p.add_argument("--unpack", nargs=2, type=Path, metavar=("RETURNED", "DEST"),
                   help="(here, after the run) turn the returned files into a checkpoint directory, and stop")
    args = p.parse_args(argv)
    if args.unpack:
        print(unpack(*args.unpack))
        return 0

    env = environment()
    print(json.dumps(env), flush=True)
    cfg = train_config("gpu")
    if args.dry_run:
        cfg = dry_run_config(cfg)
    if args.objective:
        cfg = replace(cfg, objective=args.objective)
    if args.init_from:
        cfg = replace(cfg, init_from=None if args.init_from == "none" else args.init_from)
    cfg = replace(cfg, workers=max(1, (os.cpu_count() or 2) - 2) if not args.dry_run else cfg.workers)
    weights, run_dir = args.work / "weights", args.work / "run"
    shutil.rmtree(args.work, ignore_errors=True)

    from .loop import train

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", flush=True)

    report = train(cfg, "gpu" if not args.dry_run else "gpu-dry-run", run_dir, weights, WEIGHTS_DIR,
                   device="cpu" if args.dry_run else "auto", log=log, deadline=started + args.deadline_s,
                   on_export=lambda: pack(weights, run_dir, args.out))
    files = pack(weights, run_dir, args.out)
    keys = ("steps", "tokens", "train_seconds", "tokens_per_second", "model_tflops_per_second", "mfu",
            "compile_seconds", "validation_loss", "validation_encoder_loss", "machine")
    print(json.dumps({k: report.get(k) for k in keys} | {"bank": report["bank"]["built"],
                                                         "returned": [f.name for f in files]}, indent=1))
    print(f"total {time.monotonic() - started:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
