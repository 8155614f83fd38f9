"""Training throughput, old loop against new, side by side in one run on this machine.

old: the first GPU run's loop: examples cut on the fly by a DataLoader worker (`FimDataset`, one fixed
     canvas length), the step through transformers' `DiffusionGemmaForBlockDiffusion` (DynamicCache,
     mask builders, a Python loop over experts), uniform noise with self-conditioning.
new: holes cut ahead of time into a `DeviceBank` (canvas buckets), the step through
     `LeanDiffusionGemma`; with the same uniform objective (the loop alone), and with the mask objective
     (the default now: no self-conditioning pass).

Same model shape, same prompt length, about the same slots per step; blocks of each run in turn and
are repeated, so that a noisy shared machine hurts all of them alike. Tokens are real prompt tokens
plus noisable canvas slots (what the training report counts).

    python benchmarks/train_speed.py --seconds 60 --rounds 2 --out benchmarks/results/train_speed.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infill.models.lean import LeanDiffusionGemma  # noqa: E402
from infill.models.presets import WEIGHTS_DIR, build_model  # noqa: E402
from infill.train.bank import DeviceBank, bucket_sizes, build_examples  # noqa: E402
from infill.train.corpus import collect_corpus  # noqa: E402
from infill.train.examples import ExampleConfig, FimDataset  # noqa: E402
from infill.train.objective import OBJECTIVES, losses, noise_levels, reference_losses  # noqa: E402
from infill.train.tokenizer import load_tokenizer  # noqa: E402


def old_batches(files, tok, prompt_len: int, canvas: int, batch: int):
    from torch.utils.data import DataLoader

    ex = ExampleConfig(max_canvas=canvas, max_prompt_tokens=prompt_len - 4)
    ds = FimDataset(files, tok, ex, seed=0, batch_size=batch)
    loader = DataLoader(ds, batch_size=None, num_workers=1, prefetch_factor=8, persistent_workers=True)
    for b in loader:  # the collate dict, renamed to the keys the objectives read
        yield {"input_ids": b["input_ids"], "key_mask": b["attention_mask"].bool(), "positions": b["position_ids"],
               "canvas": b["canvas"], "free": b["noise_mask"], "canvas_positions": b["decoder_position_ids"]}


def count_ops(step, batch) -> int:
    """aten operations one training step dispatches (forward, backward, optimizer): on a GPU each is a kernel
    launch or more, so this is the overhead a step pays before any arithmetic."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Counter(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Counter.n += 1
            return func(*args, **(kwargs or {}))

    with Counter():
        step(batch)
    return Counter.n


def run_block(step, next_batch, seconds: float) -> tuple[int, float, int]:
    """Steps for `seconds`; returns (tokens, seconds, steps)."""
    tokens, steps, t0 = 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        batch = next_batch()
        step(batch)
        tokens += int(batch["key_mask"].sum() + batch["free"].sum())
        steps += 1
    return tokens, time.perf_counter() - t0, steps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small")
    p.add_argument("--prompt-len", type=int, default=256)
    p.add_argument("--canvas", type=int, default=64, help="the old loop's fixed canvas; the new one buckets 32/64")
    p.add_argument("--batch", type=int, default=8, help="examples per step of the old loop")
    p.add_argument("--seconds", type=float, default=60.0, help="per block")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-files", type=int, default=2000)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    tok = load_tokenizer(WEIGHTS_DIR)
    ids = tok.special_ids()
    files = collect_corpus().split("train")
    random.Random(0).shuffle(files)
    files = files[: args.max_files]
    hf, _ = build_model(args.preset, seed=0)
    hf = hf.float().train()
    lean = LeanDiffusionGemma.from_hf(hf).train()

    # The new loop's bank, built before timing (on the GPU machine it fills while the model compiles).
    buckets = (32, args.canvas)
    slots = args.batch * (args.prompt_len + args.canvas)
    sizes = bucket_sizes(buckets, args.prompt_len, slots)
    t0 = time.perf_counter()
    chunks = build_examples(files, WEIGHTS_DIR, ExampleConfig(max_canvas=args.canvas,
                                                              max_prompt_tokens=args.prompt_len - 4),
                            workers=1, seed=0, max_examples=3000)
    bank_s = time.perf_counter() - t0
    bank = DeviceBank(buckets, args.prompt_len, 4000, "cpu", ids.pad, hf.config.text_config.vocab_size)
    bank.add(chunks)
    rng = random.Random(0)

    def new_batch():
        filled = [b for b in buckets if bank.count[b]]
        b = rng.choices(filled, [bank.count[x] / sizes[x] for x in filled])[0]
        return bank.batch(b, sizes[b])

    def optimizer(model):
        return torch.optim.AdamW(model.parameters(), lr=1e-4)

    def stepper(model, fn, obj, opt):
        def step(batch):
            t = noise_levels(batch["canvas"].shape[0], 0.02, "cpu")
            c, a = fn(model, batch, obj, t, ids.mask, 0.5, ar=True)
            (c + a).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        return step

    old_iter = old_batches(files, tok, args.prompt_len, args.canvas, args.batch)
    variants = {
        "old (HF class, DataLoader, uniform)": (stepper(hf, reference_losses, OBJECTIVES["uniform"], optimizer(hf)),
                                                lambda: next(old_iter)),
        "new (lean, bank, uniform)": (stepper(lean, losses, OBJECTIVES["uniform"], optimizer(lean)), new_batch),
        "new (lean, bank, mask)": (stepper(lean, losses, OBJECTIVES["mask"], optimizer(lean)), new_batch),
    }
    for step, nb in variants.values():  # warm up: first steps allocate and fill the loader
        for _ in range(2):
            step(nb())
    ops = {name: count_ops(step, nb()) for name, (step, nb) in variants.items()}
    totals = {k: [0, 0.0, 0] for k in variants}
    for _, (name, (step, nb)) in itertools.product(range(args.rounds), variants.items()):
        tok_n, secs, steps = run_block(step, nb, args.seconds)
        t = totals[name]
        t[0] += tok_n
        t[1] += secs
        t[2] += steps
        print(f"{name}: {tok_n / secs:,.0f} tokens/s ({steps} steps in {secs:.0f}s)", flush=True)
    base = totals["old (HF class, DataLoader, uniform)"]
    rows = []
    for name, (tok_n, secs, steps) in totals.items():
        rate = tok_n / secs
        rows.append({"variant": name, "tokens_per_second": round(rate), "steps": steps, "seconds": round(secs, 1),
                     "ratio_to_old": round(rate / (base[0] / base[1]), 2), "aten_ops_per_step": ops[name]})
    result = {"command": "python benchmarks/train_speed.py " + " ".join(argv or sys.argv[1:]),
              "machine": f"CPU, {args.threads} thread(s) for the step (+1 DataLoader worker for the old loop)",
              "preset": args.preset, "prompt_len": args.prompt_len, "slots_per_step": slots,
              "bank_examples_per_s_one_worker": round(sum(len(c) for c in chunks) / bank_s), "rows": rows}
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
