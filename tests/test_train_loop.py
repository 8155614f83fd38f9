"""The training pipeline: hole bank, objectives (lean vs the class), schedule, a smoke run, exports."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from infill.models.lean import LeanDiffusionGemma
from infill.models.presets import build_model
from infill.train.bank import BankBuilder, Chunk, DeviceBank, bucket_sizes
from infill.train.config import train_config
from infill.train.corpus import SourceFile
from infill.train.examples import ExampleConfig, ExampleMaker
from infill.train.loop import lr_at, step_flops
from infill.train.objective import OBJECTIVES, corrupt, losses, reference_losses
from infill.train.tokenizer import WEIGHTS_DIR, load_tokenizer

SOURCE = '''import os


def greet(name: str, loud: bool = False) -> str:
    text = f"hello, {name}"
    if loud:
        text = text.upper() + "!"
    return text


def main(argv=None):
    for i in range(3):
        print(i, greet(os.environ.get("USER", "world"), loud=i % 2 == 0))
    return 0
'''


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(WEIGHTS_DIR)


def _chunk(tok, n=40, max_canvas=64, prompt=128, seed=0):
    import random

    maker = ExampleMaker(tok, tok.special_ids(), ExampleConfig(max_canvas=max_canvas, max_prompt_tokens=prompt - 4))
    rng = random.Random(seed)
    examples = []
    while len(examples) < n:
        examples += maker.from_text(SOURCE * 3, "python", rng)
    return Chunk.of(examples[:n]), examples[:n]


def test_device_bank_buckets_and_layouts(tok):
    chunk, examples = _chunk(tok)
    bank = DeviceBank((16, 32, 64), prompt_len=128, capacity=1000, device="cpu", pad_id=0, vocab_size=12288)
    assert bank.add([chunk]) == len(examples)
    assert sum(bank.count.values()) == len(examples)
    for b in bank.buckets:
        if not bank.count[b]:
            continue
        rows = [e for e in examples if bank.bucket_of(len(e.canvas)) == b]
        batch = bank.batch(b, 0, index=torch.arange(len(rows)))
        for r, e in enumerate(rows):  # the bank keeps examples in arrival order per bucket
            n = len(e.encoder_ids)
            assert batch["input_ids"][r, -n:].tolist() == list(e.encoder_ids)  # left-padded prompt
            assert batch["key_mask"][r].sum() == n and batch["key_mask"][r, -n:].all()
            assert batch["positions"][r, -n:].tolist() == list(range(n))
            assert batch["canvas"][r, : len(e.canvas)].tolist() == list(e.canvas)
            assert (batch["canvas"][r, len(e.canvas):] == 0).all()  # right-padded with pad
            assert batch["free"][r].sum() == e.free and batch["free"][r, : e.free].all()
            assert batch["canvas_positions"][r, 0] == n
    assert bank.batch(bank.buckets[-1] if bank.count[64] else 32, 5)["canvas"].shape[0] == 5


def test_device_bank_capacity_and_sizes(tok):
    chunk, _ = _chunk(tok, n=60)
    bank = DeviceBank((64,), prompt_len=128, capacity=10, device="cpu", pad_id=0, vocab_size=12288)
    assert bank.add([chunk]) == 10 and bank.dropped == 50 and bank.full()
    sizes = bucket_sizes((32, 64, 128), 384, 98_304)
    assert all(s % 8 == 0 for s in sizes.values())
    assert sizes[32] > sizes[128]  # same slots per batch: short canvases take more examples
    assert all(abs(s * (384 + b) - 98_304) < 8 * (384 + b) for b, s in sizes.items())


def test_builder_cuts_holes_in_worker_processes(tmp_path):
    files = []
    for i in range(6):
        p = tmp_path / f"m{i}.py"
        p.write_text(SOURCE.replace("greet", f"greet{i}"))
        files.append(SourceFile(path=p, language="python", package=f"p{i}", split="train", size=p.stat().st_size,
                                licence="MIT"))
    builder = BankBuilder(files, WEIGHTS_DIR, ExampleConfig(max_canvas=32, max_prompt_tokens=60), workers=2,
                          files_per_job=2, epochs=2)
    chunks = builder.take(wait_for=10**9, timeout=120)  # everything two epochs give
    builder.close()
    assert builder.stats.epochs_started == 2 and builder.finished
    assert sum(len(c) for c in chunks) == builder.stats.examples > 6
    assert {k for c in chunks for k in c.kinds.tolist()}  # kinds recorded
    assert all(len(c.canvas_lens) == len(c.free) == len(c.prompt_lens) for c in chunks)


def _tiny_batch(tok, bucket=32):
    chunk, _ = _chunk(tok, n=24, max_canvas=bucket, prompt=64, seed=3)
    bank = DeviceBank((bucket,), prompt_len=64, capacity=100, device="cpu", pad_id=0, vocab_size=12288)
    bank.add([chunk])
    return bank.batch(bucket, 0, index=torch.arange(6))


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_lean_losses_equal_the_class(tok, name):
    model, _ = build_model("tiny", seed=1)
    model = model.float().train()
    lean = LeanDiffusionGemma.from_hf(model).train()
    batch = _tiny_batch(tok)
    obj = OBJECTIVES[name]
    t = torch.linspace(0.1, 0.9, 6)[:, None]
    out = []
    for fn, m in ((losses, lean), (reference_losses, model)):
        torch.manual_seed(5)
        out.append(fn(m, batch, obj, t, tok.special_ids().mask, 0.5, ar=True))
    (c1, a1), (c2, a2) = out
    assert torch.allclose(c1, c2, atol=1e-5) and torch.allclose(a1, a2, atol=1e-5)
    (c1 + a1).backward()
    (c2 + a2).backward()
    g_lean = lean.model.decoder.layers[0].self_attn.q_proj.weight.grad
    g_hf = model.model.decoder.layers[0].self_attn.q_proj.weight.grad  # tied: encoder and decoder gradients summed
    assert torch.allclose(g_lean, g_hf, atol=1e-5)


def test_corruption_respects_free_slots_and_hits_each_row():
    canvas = torch.arange(40).view(4, 10) + 20
    free = torch.arange(10) < torch.tensor([10, 3, 1, 0])[:, None]
    for name, obj in OBJECTIVES.items():
        noisy, hit = corrupt(canvas, free, torch.full((4, 1), 0.02), obj, 12288, mask_id=9)
        assert not (hit & ~free).any() and torch.equal(noisy[~free], canvas[~free])  # clamped slots stay clean
        assert hit[:3].any(-1).all()  # t ~ 0 still hits one slot of every row that has any
        if name == "mask":
            assert (noisy[hit] == 9).all()


def test_schedule_warms_up_holds_and_decays():
    cfg = replace(train_config("gpu"), lr=1.0, warmup_s=21, time_budget_s=420, decay_share=0.25, final_lr_ratio=0.1)
    assert lr_at(cfg, 0.0) == pytest.approx(0.01)
    assert lr_at(cfg, 0.025) == pytest.approx(0.5)
    assert lr_at(cfg, 0.05) == lr_at(cfg, 0.5) == lr_at(cfg, 0.75) == 1.0
    assert lr_at(cfg, 1.0) == pytest.approx(0.1)
    assert lr_at(cfg, 0.875) == pytest.approx(0.55)


def test_step_flops_scale_with_the_batch():
    lean = LeanDiffusionGemma(build_model("tiny")[0].config)
    obj = OBJECTIVES["mask"]
    one, two = step_flops(lean, 1, 64, 32, obj, True), step_flops(lean, 2, 64, 32, obj, True)
    assert two == pytest.approx(2 * one)
    assert step_flops(lean, 1, 64, 32, OBJECTIVES["uniform"], True) > one  # the self-conditioning pass


@pytest.mark.slow
def test_smoke_training_exports_a_model_the_engine_loads(tmp_path):
    from infill.engine import Engine
    from infill.request import InfillRequest
    from infill.train.loop import train

    out = tmp_path / "weights"
    report = train(train_config("smoke"), "smoke", tmp_path / "run", out, WEIGHTS_DIR, device="cpu", log=lambda m: None)
    assert report["steps"] == 6 and report["tokens"] > 0 and report["validation_loss"] > 0
    assert json.loads((out / "config.json").read_text())["infill_noise"] == "mask"
    assert all(p.stat().st_size <= 15 * 1024 * 1024 for p in out.glob("*.safetensors"))
    assert json.loads((out / "training_report.json").read_text())["steps"] == 6
    engine = Engine.load(str(out))
    assert engine.backend.noise == "mask"
    result = engine.fill(InfillRequest(text="def f(x):\n    return \n", cursor=21, language="python", seed=0))
    assert result.forward_passes >= 1
    assert (tmp_path / "run" / "history.json").exists()


def test_training_cli_options_reach_the_configuration():
    import argparse

    from infill.train.cli import add_arguments, config_from_args

    p = argparse.ArgumentParser()
    add_arguments(p)
    cfg = config_from_args(p.parse_args(["--config", "gpu", "--objective", "uniform", "--init-from", "none",
                                         "--no-compile", "--time-budget", "30", "--max-files", "9"]))
    assert (cfg.objective, cfg.init_from, cfg.compile, cfg.time_budget_s, cfg.max_files) == \
        ("uniform", None, False, 30.0, 9)
    assert config_from_args(p.parse_args(["--config", "gpu"])).init_from == "bundled"


def test_export_keeps_the_bundled_shape_within_the_size_limit():
    sizes = [p.stat().st_size for p in Path(WEIGHTS_DIR).glob("*.safetensors")]
    assert sizes and max(sizes) <= 15 * 1024 * 1024 and sum(sizes) <= 40 * 1024 * 1024


@pytest.mark.slow
def test_device_script_dry_run_returns_a_loadable_model_within_the_tool_limits(tmp_path):
    """The prepared GPU run, end to end on the CPU: what comes back fits the device tool and loads."""
    import os
    import subprocess
    import sys

    from infill.engine import Engine
    from infill.train.device import MAX_FILE_BYTES, MAX_RETURNED_FILES, unpack

    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "TMPDIR": str(tmp_path),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # python3 = this one
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(["bash", "benchmarks/device/train_gpu.sh", "--dry-run"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    returned = sorted(p for p in out.rglob("*") if p.is_file())
    assert len(returned) <= MAX_RETURNED_FILES and all(p.stat().st_size <= MAX_FILE_BYTES for p in returned)
    assert {p.name for p in returned} >= {"meta.tgz", "train.log", "model-00001-of-00003.safetensors"}
    ckpt = unpack(out, tmp_path / "ckpt")
    report = json.loads((ckpt / "training_report.json").read_text())
    assert report["steps"] > 0 and report["train_config"]["preset"] == "small"
    assert (ckpt / "run" / "history.json").exists()
    assert Engine.load(str(ckpt)).backend.noise == "mask"
