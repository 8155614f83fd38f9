"""Weight-only quantization of the lean stack (projections and 3-D experts): bytes saved, logits kept."""

from __future__ import annotations

import pytest
import torch

from infill.models.lean import LeanDiffusionGemma
from infill.models.quant import _dequantize, _quantize, quantize
from tests.test_lean import _batch, _randomized

CODE = "import os\n\n\ndef read_config(path):\n    with open(path) as f:\n        return f.read()\n\n\ndef main():\n    "


@pytest.mark.parametrize("kind", ["int8", "fp8", "int4"])
def test_round_trip_error_is_small(kind):
    w = torch.randn(3, 40, 70)
    stored = _quantize(w, kind)
    back = _dequantize(stored["q"], stored["scale"], kind, torch.float32, 70)
    rel = ((back - w).norm() / w.norm()).item()
    assert back.shape == w.shape and rel < {"int8": 0.01, "fp8": 0.05, "int4": 0.15}[kind]


@pytest.fixture(scope="module")
def bundled():
    from transformers import DiffusionGemmaForBlockDiffusion

    from infill.models.presets import WEIGHTS_DIR
    from infill.train.tokenizer import load_tokenizer

    model = DiffusionGemmaForBlockDiffusion.from_pretrained(str(WEIGHTS_DIR), dtype=torch.float32)
    return model, load_tokenizer(WEIGHTS_DIR)


@pytest.mark.parametrize("kind", ["int8", "fp8", "int4"])
def test_quantized_bundled_model_keeps_its_predictions(bundled, kind):
    """On trained weights (random ones predict nothing worth keeping): KL to the float model and argmax agreement."""
    model, tok = bundled
    lean = LeanDiffusionGemma.from_hf(model)
    ids = torch.tensor([[2, 7, 6, *tok.encode(CODE), 8]])
    positions = torch.arange(ids.shape[1])[None]
    canvas = torch.full((1, 12), tok.special_ids().mask)
    canvas_pos = ids.shape[1] + torch.arange(12)[None]
    with torch.no_grad():
        ref = lean.decode(canvas, canvas_pos, lean.encode(ids, positions).kv)
        before, after = quantize(lean, kind)
        got = lean.decode(canvas, canvas_pos, lean.encode(ids, positions).kv)
    kl = torch.nn.functional.kl_div(got.log_softmax(-1), ref.log_softmax(-1), log_target=True, reduction="batchmean")
    # Measured: KL 0.002 (int8), 0.05 (fp8), 0.9 (int4 in groups of 32: lossy on an 18M model).
    assert kl.item() < {"int8": 0.01, "fp8": 0.1, "int4": 1.5}[kind]
    assert (got.argmax(-1) == ref.argmax(-1)).float().mean() >= 0.75
    assert after < before * {"int8": 0.5, "fp8": 0.5, "int4": 0.45}[kind]  # the fp32 embedding stays


def test_sparse_expert_path_quantizes_every_expert():
    model = _randomized(experts=12, top_k=3, seed=21)
    lean = LeanDiffusionGemma.from_hf(model)
    vocab = model.config.text_config.vocab_size
    ids, _, positions, canvas, canvas_pos = _batch(vocab, [20], 8, seed=22)
    with torch.no_grad():
        ref = lean.decode(canvas, canvas_pos, lean.encode(ids, positions).kv)
        quantize(lean, "int8")
        got = lean.decode(canvas, canvas_pos, lean.encode(ids, positions).kv)
    assert type(lean.model.decoder.layers[0].experts).__name__ == "QuantExperts"
    assert ((got - ref).norm() / ref.norm()).item() < 0.15  # random weights amplify it: 0.09 measured


def test_unknown_quantization_names_the_choices():
    from infill.errors import InfillError

    with pytest.raises(InfillError, match="int8"):
        quantize(LeanDiffusionGemma.from_hf(_randomized()), "int3")
