"""A bank of training holes, built ahead of time on every CPU core, served from the training device.

Cutting a hole (tree-sitter span choice, tokenization, prompt and canvas layout) costs ~3 ms of CPU;
a GPU step over 200 examples takes ~30 ms. Built on the fly in DataLoader workers, examples starved the
GPU (the first GPU run reached ~2% of it). Here worker processes cut holes from the corpus, epoch after
epoch with fresh draws, and send back compact arrays; the trainer copies them into preallocated
tensors on the device, one per canvas bucket, and draws batches there with `torch.randint`: no host
work and no host sync per step. Noise is applied on the device too (`infill.train.objective`).

    bucket (canvas slots)   prompt (N, P) left-padded ids   canvas (N, C) clean, right-padded with pad
                            prompt_len (N,)                 free (N,) slots a sampler would denoise

Canvases are bucketed (32 / 64 / 128 slots by default) so a 7-token line does not pay for a 127-token
block; the mix of hole kinds is the one `ExampleMaker` draws, and batches pick buckets in proportion
to what the bank holds.

    builder = BankBuilder(files, tokenizer_dir, ExampleConfig(), workers=14, seed=0)   # starts at once
    bank = DeviceBank(buckets=(32, 64, 128), prompt_len=388, capacity=2_000_000, device="cuda")
    bank.add(builder.take())                      # whatever has arrived (non-blocking)
    batch = bank.batch(bucket=64, size=128)       # dict of device tensors, see `DeviceBank.batch`
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .corpus import SourceFile
from .examples import Example, ExampleConfig, ExampleMaker

KINDS = ("expression", "arguments", "statement", "block", "rest_of_line", "lines", "random", "empty")


@dataclass
class Chunk:
    """Examples cut from a few files, as flat arrays (what crosses the process boundary)."""

    prompt_ids: np.ndarray  # all prompts concatenated (int32)
    prompt_lens: np.ndarray  # (n,)
    canvas_ids: np.ndarray  # all canvases concatenated
    canvas_lens: np.ndarray  # (n,)
    free: np.ndarray  # (n,)
    kinds: np.ndarray  # (n,) index into KINDS
    seam: np.ndarray  # (n,) bool: seam layout
    files: int = 0
    seconds: float = 0.0  # CPU time the worker spent

    @classmethod
    def of(cls, examples: Sequence[Example], files: int = 0, seconds: float = 0.0) -> Chunk:
        def cat(seqs):
            return np.fromiter((i for s in seqs for i in s), dtype=np.int32, count=sum(len(s) for s in seqs))

        kinds = [e.kind.split("/")[0] for e in examples]
        return cls(
            prompt_ids=cat([e.encoder_ids for e in examples]),
            prompt_lens=np.array([len(e.encoder_ids) for e in examples], dtype=np.int32),
            canvas_ids=cat([e.canvas for e in examples]),
            canvas_lens=np.array([len(e.canvas) for e in examples], dtype=np.int32),
            free=np.array([e.free for e in examples], dtype=np.int32),
            kinds=np.array([KINDS.index(k) if k in KINDS else KINDS.index("random") for k in kinds], dtype=np.uint8),
            seam=np.array([e.kind.endswith("/seam") for e in examples], dtype=bool),
            files=files, seconds=seconds,
        )

    def __len__(self) -> int:
        return len(self.prompt_lens)


# ----------------------------------------------------------------------------- worker side

_worker: dict = {}


def _init_worker(tokenizer_dir: str, ex_cfg: ExampleConfig) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(1)
    from .tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer_dir)
    _worker["maker"] = ExampleMaker(tok, tok.special_ids(), ex_cfg)


def _cut(job: tuple[list[tuple[str, str | None]], str]) -> Chunk:
    """Cut the holes of a few files (paths and languages) with one seed."""
    files, seed = job
    started = time.process_time()
    maker: ExampleMaker = _worker["maker"]
    rng = random.Random(seed)
    out: list[Example] = []
    for path, language in files:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        out += maker.from_text(text, language, rng)
    return Chunk.of(out, files=len(files), seconds=time.process_time() - started)


# ----------------------------------------------------------------------------- builder

@dataclass
class BuildStats:
    examples: int = 0
    files: int = 0
    epochs_started: int = 0
    cpu_seconds: float = 0.0
    kinds: Counter = field(default_factory=Counter)
    seam: int = 0


class BankBuilder:
    """Cuts holes from `files` in worker processes, epoch after epoch, until stopped or `max_examples`.

    Starts at once; `take()` returns the chunks that have arrived since the last call without waiting.
    Workers are spawned (not forked), so a CUDA context in the trainer never leaks into them.
    """

    def __init__(self, files: Sequence[SourceFile], tokenizer_dir: Path, ex_cfg: ExampleConfig, workers: int,
                 seed: int = 0, files_per_job: int = 16, max_examples: int | None = None,
                 epochs: int | None = None) -> None:
        if not files:
            raise ValueError("no files to cut holes from")
        self.files = [(str(f.path), f.language) for f in files]
        self.files_per_job, self.seed = files_per_job, seed
        self.max_examples, self.epochs = max_examples, epochs
        self.stats = BuildStats()
        self._queue: queue.Queue[Chunk] = queue.Queue()
        self._stop = threading.Event()
        self._done = threading.Event()
        self.started = time.perf_counter()
        self.workers = max(1, workers)
        ctx = mp.get_context("spawn")
        self._pool = ctx.Pool(self.workers, initializer=_init_worker, initargs=(str(tokenizer_dir), ex_cfg))
        self._thread = threading.Thread(target=self._run, name="bank-builder", daemon=True)
        self._thread.start()

    def _jobs(self):
        epoch = 0
        while self.epochs is None or epoch < self.epochs:
            order = list(range(len(self.files)))
            random.Random(f"{self.seed}/order/{epoch}").shuffle(order)
            self.stats.epochs_started = epoch + 1
            for k in range(0, len(order), self.files_per_job):
                yield [self.files[i] for i in order[k : k + self.files_per_job]], f"{self.seed}/{epoch}/{k}"
            epoch += 1

    def _run(self) -> None:
        try:
            for chunk in self._pool.imap_unordered(_cut, self._jobs(), chunksize=1):
                if self._stop.is_set():
                    break
                self._queue.put(chunk)
                s = self.stats
                s.examples += len(chunk)
                s.files += chunk.files
                s.cpu_seconds += chunk.seconds
                s.kinds.update(KINDS[k] for k in chunk.kinds.tolist())
                s.seam += int(chunk.seam.sum())
                if self.max_examples is not None and s.examples >= self.max_examples:
                    break
        except Exception as exc:  # surfaced by take(): a dead builder must not hang the trainer
            self._error = exc
        finally:
            self._done.set()
            self._pool.terminate()

    _error: Exception | None = None

    @property
    def finished(self) -> bool:
        return self._done.is_set() and self._queue.empty()

    def take(self, wait_for: int = 0, timeout: float = 600.0) -> list[Chunk]:
        """The chunks that arrived; with `wait_for`, block until at least that many examples are in hand."""
        out, n = [], 0
        deadline = time.perf_counter() + timeout
        while True:
            try:
                chunk = self._queue.get(timeout=0.05 if n < wait_for else 0)
                out.append(chunk)
                n += len(chunk)
                continue
            except queue.Empty:
                pass
            if self._error is not None:
                raise RuntimeError(f"the hole bank builder failed: {self._error}") from self._error
            if n >= wait_for or self._done.is_set() and self._queue.empty() or time.perf_counter() > deadline:
                return out

    def close(self) -> None:
        self._stop.set()
        self._pool.terminate()

    def rate(self) -> float:
        """Examples per wall second since the start."""
        return self.stats.examples / max(time.perf_counter() - self.started, 1e-9)


def build_examples(files: Sequence[SourceFile], tokenizer_dir: Path, ex_cfg: ExampleConfig, workers: int,
                   seed: int, max_examples: int) -> list[Chunk]:
    """One pass that returns about `max_examples` examples (validation sets)."""
    builder = BankBuilder(files, tokenizer_dir, ex_cfg, workers, seed=seed, max_examples=max_examples, epochs=1)
    chunks = builder.take(wait_for=max_examples)
    builder.close()
    return chunks


# ----------------------------------------------------------------------------- device side

class DeviceBank:
    """Preallocated per-bucket tensors on the training device, filled from chunks, sampled by index."""

    def __init__(self, buckets: Sequence[int], prompt_len: int, capacity: int, device: torch.device | str,
                 pad_id: int, vocab_size: int) -> None:
        self.buckets = tuple(sorted(buckets))
        self.prompt_len, self.capacity, self.pad = prompt_len, capacity, pad_id
        self.device = torch.device(device)
        self.dtype = torch.int16 if vocab_size <= 32767 else torch.int32  # halves the bank's memory
        self.count = dict.fromkeys(self.buckets, 0)
        self.dropped = 0  # examples that did not fit (capacity reached, or canvas longer than every bucket)
        self._t: dict[int, dict[str, torch.Tensor]] = {}

    def _tensors(self, bucket: int) -> dict[str, torch.Tensor]:
        if bucket not in self._t:
            n, dev = self.capacity, self.device
            self._t[bucket] = {
                "prompt": torch.empty(n, self.prompt_len, dtype=self.dtype, device=dev),
                "prompt_len": torch.empty(n, dtype=torch.int32, device=dev),
                "canvas": torch.empty(n, bucket, dtype=self.dtype, device=dev),
                "free": torch.empty(n, dtype=torch.int32, device=dev),
            }
        return self._t[bucket]

    def _upload(self, array: np.ndarray, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Host array -> device tensor. On CUDA through pinned memory, asynchronously: a pageable copy
        would wait for every queued kernel, a host sync in the middle of training."""
        t = torch.from_numpy(np.ascontiguousarray(array)).to(dtype or self.dtype)
        if self.device.type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    def bucket_of(self, canvas_len: int) -> int | None:
        return next((b for b in self.buckets if canvas_len <= b), None)

    def add(self, chunks: Sequence[Chunk]) -> int:
        """Copy chunks in (left-padding prompts, right-padding canvases); returns the examples added."""
        added = 0
        for chunk in chunks:
            p_off = np.concatenate([[0], np.cumsum(chunk.prompt_lens)])
            c_off = np.concatenate([[0], np.cumsum(chunk.canvas_lens)])
            rows: dict[int, list[int]] = {}
            for i, length in enumerate(chunk.canvas_lens.tolist()):
                b = self.bucket_of(length)
                if b is None or chunk.prompt_lens[i] > self.prompt_len:
                    self.dropped += 1
                    continue
                rows.setdefault(b, []).append(i)
            for b, idx in rows.items():
                room = self.capacity - self.count[b]
                self.dropped += max(0, len(idx) - room)
                idx = idx[:room]
                if not idx:
                    continue
                k = len(idx)
                prompt = np.full((k, self.prompt_len), self.pad, dtype=np.int32)
                canvas = np.full((k, b), self.pad, dtype=np.int32)
                for r, i in enumerate(idx):
                    p = chunk.prompt_ids[p_off[i] : p_off[i + 1]]
                    prompt[r, self.prompt_len - len(p):] = p
                    c = chunk.canvas_ids[c_off[i] : c_off[i + 1]]
                    canvas[r, : len(c)] = c
                t, n0 = self._tensors(b), self.count[b]
                t["prompt"][n0 : n0 + k] = self._upload(prompt)
                t["canvas"][n0 : n0 + k] = self._upload(canvas)
                t["prompt_len"][n0 : n0 + k] = self._upload(chunk.prompt_lens[idx], torch.int32)
                t["free"][n0 : n0 + k] = self._upload(chunk.free[idx], torch.int32)
                self.count[b] += k
                added += k
        return added

    def __len__(self) -> int:
        return sum(self.count.values())

    def full(self) -> bool:
        return all(c >= self.capacity for c in self.count.values())

    def batch(self, bucket: int, size: int, generator: torch.Generator | None = None,
              index: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """A random batch (or the rows `index`) of one bucket, as device tensors:

        input_ids (B, P) long, key_mask (B, P) bool (real prompt tokens), positions (B, P),
        canvas (B, C) long, free (B, C) bool (slots to noise), canvas_positions (B, C).
        """
        t = self._t[bucket]
        if index is None:
            index = torch.randint(0, self.count[bucket], (size,), device=self.device, generator=generator)
        plen = t["prompt_len"][index].long()  # (B,)
        p = self.prompt_len
        key_mask = torch.arange(p, device=self.device) >= (p - plen)[:, None]  # (B, P)
        return {
            "input_ids": t["prompt"][index].long(),
            "key_mask": key_mask,
            "positions": (key_mask.long().cumsum(-1) - 1).clamp(min=0),
            "canvas": t["canvas"][index].long(),
            "free": torch.arange(bucket, device=self.device) < t["free"][index].long()[:, None],
            "canvas_positions": plen[:, None] + torch.arange(bucket, device=self.device),
        }

    def fixed_batches(self, size: int, per_bucket: int) -> list[tuple[int, dict[str, torch.Tensor]]]:
        """Deterministic batches (the first rows of each bucket), for validation."""
        out = []
        for b in self.buckets:
            n = min(self.count[b], size * per_bucket)
            for s in range(0, n, size):
                out.append((b, self.batch(b, 0, index=torch.arange(s, min(s + size, n), device=self.device))))
        return out

    def summary(self) -> dict:
        return {"examples": len(self), "per_bucket": {str(b): c for b, c in self.count.items()},
                "dropped": self.dropped, "storage": str(self.dtype).removeprefix("torch.")}


def bucket_sizes(buckets: Sequence[int], prompt_len: int, tokens_per_batch: int, multiple: int = 8) -> dict[int, int]:
    """Examples per batch for each bucket, so that every batch holds about the same number of slots
    (a multiple of 8 when there are that many: friendlier tensor shapes on a GPU)."""
    sizes = {}
    for b in buckets:
        n = max(1, tokens_per_batch // (prompt_len + b))
        sizes[b] = n // multiple * multiple if n >= multiple else n
    return sizes


__all__ = ["BankBuilder", "DeviceBank", "Chunk", "build_examples", "bucket_sizes", "KINDS"]
