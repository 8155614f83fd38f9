"""Corpus -> training and validation batches for `infill.train.loop`."""

from __future__ import annotations

import importlib.util
import itertools
from collections import Counter
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from .config import TrainConfig
from .corpus import collect_corpus, write_manifest
from .examples import ExampleConfig, FimDataset
from .tokenizer import load_tokenizer

PROMPT_MARKERS = 4  # <bos> <fim_suffix> ... <fim_prefix> ... <fim_middle>


def example_config(cfg: TrainConfig) -> ExampleConfig:
    return ExampleConfig(max_canvas=cfg.canvas_len, max_prompt_tokens=cfg.prompt_len - PROMPT_MARKERS,
                         use_tree_sitter=importlib.util.find_spec("tree_sitter") is not None)


def make_data(cfg: TrainConfig, tokenizer_dir: Path, roots: list[Path] | None = None, log=print,
              manifest_path: Path | None = None):
    """(endless iterator of training batches, fixed validation batches, a summary of the data)."""
    corpus = collect_corpus(roots)
    train_files, val_files = corpus.split("train"), corpus.split("val")
    if cfg.max_files:
        train_files, val_files = train_files[: cfg.max_files], val_files[: max(4, cfg.max_files // 10)]
    if not train_files or not val_files:
        raise RuntimeError(f"the corpus has {len(train_files)} training and {len(val_files)} validation files; "
                           "point --roots at more source code")
    tok = load_tokenizer(tokenizer_dir)
    ex_cfg = example_config(cfg)
    if manifest_path is not None:
        write_manifest(corpus, manifest_path)
    log(f"corpus: {len(train_files)} training files, {len(val_files)} validation files, "
        f"tree-sitter holes: {ex_cfg.use_tree_sitter}")

    train_ds = FimDataset(train_files, tok, ex_cfg, seed=cfg.seed, batch_size=cfg.batch_size)
    loader = DataLoader(train_ds, batch_size=None, num_workers=cfg.workers, pin_memory=torch.cuda.is_available(),
                        prefetch_factor=8 if cfg.workers else None, persistent_workers=cfg.workers > 0)
    val_ds = FimDataset(val_files, tok, ex_cfg, seed=10_000 + cfg.seed, epochs=1, batch_size=cfg.batch_size,
                        shuffle_buffer=256)
    val_batches = list(itertools.islice(iter(val_ds), cfg.eval_batches))
    info = {
        "train_files": len(train_files), "validation_files": len(val_files),
        "languages": dict(Counter(f.language for f in train_files).most_common()),
        "validation_packages": sorted({f.package for f in val_files})[:50],
        "tree_sitter_holes": ex_cfg.use_tree_sitter, "prompt_len": cfg.prompt_len, "canvas_len": cfg.canvas_len,
    }
    return iter(loader), val_batches, info
