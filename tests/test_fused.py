"""The fused CPU stack and its loader against transformers' class: the same weights, the same logits (1e-5)."""

from __future__ import annotations

import random

import pytest
import torch

from infill.models.checkpoint import load_lean, read_config
from infill.models.fused import FusedStack
from infill.models.lean import LeanDiffusionGemma
from tests.test_lean import _batch, _hf_encode, _randomized


@pytest.mark.parametrize("shape", [{}, {"kv_heads": 2, "heads": 4}])
@pytest.mark.parametrize("self_cond", [False, True])
def test_fused_logits_match_the_class(shape, self_cond):
    model = _randomized(seed=11, **shape)
    fused = FusedStack(LeanDiffusionGemma.from_hf(model))
    vocab = model.config.text_config.vocab_size
    ids, _, positions, canvas, canvas_pos = _batch(vocab, [21], 9, seed=12)
    canvas = torch.cat([canvas, canvas.flip(-1)])  # two canvases over one prompt
    sc = torch.randn(2, 9, vocab, generator=torch.Generator().manual_seed(13)) * 3 if self_cond else None
    with torch.no_grad():
        cache, _ = _hf_encode(model, ids, None, positions)
        kv = fused.encode(ids, positions)
        for i, (k, v) in enumerate(kv):
            assert torch.allclose(k, cache.layers[i].keys, atol=1e-5)
            assert torch.allclose(v, cache.layers[i].values, atol=1e-5)
        cache.batch_repeat_interleave(2)  # one prompt, two canvases
        want = model(cache=cache, decoder_input_ids=canvas, decoder_position_ids=canvas_pos.expand(2, -1),
                     self_conditioning_logits=sc).logits
        buffers = fused.canvas_kv(kv, batch=2, canvas=9)
        soft = fused.soft_embeddings(sc.softmax(-1)) if self_cond else None
        got = fused.decode(canvas, canvas_pos, buffers, soft)
        again = fused.decode(canvas, canvas_pos, buffers, soft)  # the canvas K/V are rewritten in place
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    assert torch.equal(got, again)


def test_incremental_prefill_and_left_padded_prompts_match():
    model = _randomized(seed=14)
    fused = FusedStack(LeanDiffusionGemma.from_hf(model))
    vocab = model.config.text_config.vocab_size
    ids, mask, positions, canvas, canvas_pos = _batch(vocab, [19, 7], 5, seed=15)
    with torch.no_grad():
        cache, _ = _hf_encode(model, ids, mask, positions)
        want = model(cache=cache, decoder_input_ids=canvas, decoder_position_ids=canvas_pos,
                     decoder_attention_mask=torch.cat([mask, torch.ones_like(canvas)], -1)).logits
        # each prompt on its own, the first in two pieces (what typing does), then left-padded into one batch
        first = fused.encode(ids[:1, :12], positions[:1, :12])
        first = fused.encode(ids[:1, 12:], positions[:1, 12:], past=first)
        second = fused.encode(ids[1:, -7:], positions[1:, -7:])
        pad = torch.nn.functional.pad
        padded = [(torch.cat([a, pad(b, (0, 0, 12, 0))]), torch.cat([c, pad(d, (0, 0, 12, 0))]))
                  for (a, c), (b, d) in zip(first, second, strict=True)]
        got = fused.decode(canvas, canvas_pos, fused.canvas_kv(padded, 2, 5, mask.bool()))
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()


def test_a_checkpoint_loads_without_transformers_to_the_same_weights(tiny_model_dir, tmp_path):
    import subprocess
    import sys

    from transformers import DiffusionGemmaForBlockDiffusion

    model = DiffusionGemmaForBlockDiffusion.from_pretrained(str(tiny_model_dir)).float().eval()
    want = LeanDiffusionGemma.from_hf(model).state_dict()
    got = load_lean(tiny_model_dir).state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    text = read_config(tiny_model_dir).text_config
    assert text.per_layer_config[1].head_dim == model.config.text_config.per_layer_config[1].head_dim
    probe = ("import sys; from infill.models.checkpoint import load_lean; load_lean(sys.argv[1]); "
             "import infill.models.fused, infill.models.tokenizer; "
             "print(sorted(m for m in sys.modules if m.startswith('transformers')))")
    out = subprocess.run([sys.executable, "-c", probe, str(tiny_model_dir)], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"  # the fused path never imports transformers


def test_the_tokenizer_without_transformers_encodes_and_decodes_the_same(tiny_model_dir):
    from transformers import AutoTokenizer

    from infill.models.tokenizer import FastTokenizer, HFTokenizer, special_ids

    hf, fast = HFTokenizer(AutoTokenizer.from_pretrained(str(tiny_model_dir))), FastTokenizer(tiny_model_dir)
    texts = ['x = "<eos>" + y\t\t# ü€\r\n    return <fim_middle>', "", "def f():\n        pass\n"]
    assert [hf.encode(t) for t in texts] == [fast.encode(t) for t in texts]
    rng = random.Random(0)
    for _ in range(50):
        ids = [rng.randrange(len(hf)) for _ in range(40)]
        assert hf.decode(ids) == fast.decode(ids)
    assert special_ids(hf) == special_ids(fast) and len(hf) == len(fast)


def test_int8_stays_close_to_float32():
    model = _randomized(seed=16)
    lean = LeanDiffusionGemma.from_hf(model)
    f32, i8 = FusedStack(lean), FusedStack(lean, int8=True)
    vocab = model.config.text_config.vocab_size
    ids, _, positions, canvas, canvas_pos = _batch(vocab, [30], 10, seed=17)
    with torch.no_grad():
        a = f32.decode(canvas, canvas_pos, f32.canvas_kv(f32.encode(ids, positions), 1, 10))
        b = i8.decode(canvas, canvas_pos, i8.canvas_kv(i8.encode(ids, positions), 1, 10))
    lp, lq = a.log_softmax(-1), b.log_softmax(-1)
    kl = (lp.exp() * (lp - lq)).sum(-1).mean()
    assert 0 < kl < 0.05, kl  # quantized (not identical), and close
