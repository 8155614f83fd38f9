"""The lean DiffusionGemma stack against transformers' class: same weights, same numbers."""

from __future__ import annotations

import pytest
import torch

from infill.models.lean import LeanDiffusionGemma
from infill.models.presets import PRESETS, build_model


def _randomized(preset="tiny", seed=0, **shape):
    """A random-init model whose norms, scales and scalars are not all ones (so a missed one shows)."""
    from dataclasses import replace

    model, _ = build_model(replace(PRESETS[preset], **shape) if shape else preset, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith((".scale", "per_expert_scale")):
                p.add_(torch.randn(p.shape, generator=g) * 0.3)
        for name, b in model.named_buffers():
            if name.endswith("layer_scalar"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
    return model.float().eval()


def _hf_encode(model, ids, mask, positions):
    from transformers.cache_utils import DynamicCache

    cache = DynamicCache(config=model.config.get_text_config(decoder=True))
    out = model.model.encoder(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache)
    return cache, out.last_hidden_state


def _batch(vocab, lengths, canvas_len, seed=0):
    """Left-padded prompts of the given lengths and random canvases."""
    g = torch.Generator().manual_seed(seed)
    p = max(lengths)
    ids = torch.randint(11, vocab, (len(lengths), p), generator=g)
    mask = torch.stack([torch.arange(p) >= p - n for n in lengths]).long()
    ids = ids * mask
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    canvas = torch.randint(11, vocab, (len(lengths), canvas_len), generator=g)
    canvas_pos = torch.tensor(lengths)[:, None] + torch.arange(canvas_len)
    return ids, mask, positions, canvas, canvas_pos


@pytest.mark.parametrize("lengths", [[23], [30, 17, 5]])
@pytest.mark.parametrize("self_cond", [False, True])
def test_lean_logits_match_the_class(lengths, self_cond):
    model = _randomized()
    lean = LeanDiffusionGemma.from_hf(model)
    vocab = model.config.text_config.vocab_size
    ids, mask, positions, canvas, canvas_pos = _batch(vocab, lengths, 12)
    sc = torch.randn(len(lengths), 12, vocab) * 3 if self_cond else None
    sc_mask = torch.tensor([True, False, True][: len(lengths)]) if self_cond and len(lengths) > 1 else None
    padded = len(set(lengths)) > 1
    with torch.no_grad():
        cache, hidden = _hf_encode(model, ids, mask if padded else None, positions)
        ref = model(cache=cache, decoder_input_ids=canvas, decoder_position_ids=canvas_pos,
                    decoder_attention_mask=torch.cat([mask, torch.ones_like(canvas)], -1) if padded else None,
                    self_conditioning_logits=sc, self_conditioning_mask=sc_mask).logits
        enc = lean.encode(ids, positions, mask.bool() if padded else None)
        got = lean.decode(canvas, canvas_pos, enc.kv, mask.bool() if padded else None, sc, sc_mask)
    real = mask.bool()
    assert torch.allclose(enc.hidden[real], hidden[real], atol=1e-5)
    for i, (k, v) in enumerate(enc.kv):
        layer = cache.layers[i]
        assert torch.allclose(k.transpose(1, 2)[real], layer.keys.transpose(1, 2)[real], atol=1e-5)
        assert torch.allclose(v.transpose(1, 2)[real], layer.values.transpose(1, 2)[real], atol=1e-5)
    assert torch.allclose(got, ref, atol=1e-5), (got - ref).abs().max()


def test_one_prompt_serves_many_canvases_and_incremental_prefill():
    model = _randomized(seed=3)
    lean = LeanDiffusionGemma.from_hf(model)
    vocab = model.config.text_config.vocab_size
    ids, _, positions, canvas, canvas_pos = _batch(vocab, [20], 8, seed=4)
    with torch.no_grad():
        full = lean.encode(ids, positions)
        head = lean.encode(ids[:, :13], positions[:, :13])
        tail = lean.encode(ids[:, 13:], positions[:, 13:], past=head.kv)
        for (a, b), (c, d) in zip(full.kv, tail.kv, strict=True):
            assert torch.allclose(a, c, atol=1e-5) and torch.allclose(b, d, atol=1e-5)
        many = torch.cat([canvas, canvas.flip(-1), canvas], 0)
        out = lean.decode(many, canvas_pos.expand(3, -1), full.kv)
        one = lean.decode(canvas, canvas_pos, full.kv)
    assert torch.allclose(out[0], one[0], atol=1e-5) and torch.allclose(out[2], one[0], atol=1e-5)


def test_sparse_expert_path_matches_the_class():
    model = _randomized(experts=12, top_k=3, seed=5)
    lean = LeanDiffusionGemma.from_hf(model)
    vocab = model.config.text_config.vocab_size
    ids, _, positions, canvas, canvas_pos = _batch(vocab, [16], 6, seed=6)
    with torch.no_grad():
        cache, _ = _hf_encode(model, ids, None, positions)
        ref = model(cache=cache, decoder_input_ids=canvas, decoder_position_ids=canvas_pos).logits
        got = lean.decode(canvas, canvas_pos, lean.encode(ids, positions).kv)
    assert torch.allclose(got, ref, atol=1e-5)


def test_weights_round_trip_through_the_class():
    trained, fresh = _randomized(seed=7), _randomized(seed=8)
    lean = LeanDiffusionGemma.from_hf(trained)
    lean.to_hf(fresh)  # the fresh model's tied encoder follows its decoder
    vocab = trained.config.text_config.vocab_size
    ids, _, positions, canvas, canvas_pos = _batch(vocab, [10], 5, seed=9)
    with torch.no_grad():
        a = trained(input_ids=ids, position_ids=positions, decoder_input_ids=canvas,
                    decoder_position_ids=canvas_pos).logits
        b = fresh(input_ids=ids, position_ids=positions, decoder_input_ids=canvas,
                  decoder_position_ids=canvas_pos).logits
    assert torch.equal(a, b)


def test_rope_frequencies_stay_float32_under_a_cast():
    lean = LeanDiffusionGemma.from_hf(_randomized()).to(torch.bfloat16)
    assert all(getattr(lean, f"_inv_freq_{k}").dtype == torch.float32 for k in lean._rope_scaling)
    assert lean.embed.dtype == torch.bfloat16


@pytest.mark.parametrize("self_cond", [False, True])
def test_static_decoder_matches_the_concatenating_step(self_cond):
    from infill.models.static_decode import StaticDecoder

    model = _randomized(seed=11)
    lean = LeanDiffusionGemma.from_hf(model)
    vocab = model.config.text_config.vocab_size
    # One prompt of 19 tokens serving 3 canvases, in a decoder with room for 40 prompt tokens.
    ids, _, positions, canvas, canvas_pos = _batch(vocab, [19], 7, seed=12)
    canvases = torch.cat([canvas, canvas.flip(-1), canvas.roll(2, -1)], 0)
    sc = torch.randn(3, 7, vocab) * 2 if self_cond else None
    with torch.no_grad():
        enc = lean.encode(ids, positions)
        want = lean.decode(canvases, canvas_pos.expand(3, -1), enc.kv, self_conditioning_logits=sc)
        dec = StaticDecoder(lean, batch=3, prompt_capacity=40, canvas=7)
        dec.load(enc.kv, 19)
        got = dec.step(canvases, canvas_pos, sc)
        again = dec.step(canvases, canvas_pos, sc)  # the buffers' canvas part is overwritten, not appended
    assert torch.allclose(got, want, atol=1e-5) and torch.allclose(again, want, atol=1e-5)


def test_static_decoder_with_a_left_padded_batch_of_prompts():
    from infill.models.static_decode import StaticDecoder

    model = _randomized(seed=13)
    lean = LeanDiffusionGemma.from_hf(model)
    vocab = model.config.text_config.vocab_size
    ids, mask, positions, canvas, canvas_pos = _batch(vocab, [25, 9, 16], 6, seed=14)
    with torch.no_grad():
        enc = lean.encode(ids, positions, mask.bool())
        want = lean.decode(canvas, canvas_pos, enc.kv, mask.bool())
        dec = StaticDecoder(lean, batch=3, prompt_capacity=32, canvas=6)
        dec.load(enc.kv, mask.sum(-1), key_mask=mask.bool())
        got = dec.step(canvas, canvas_pos)
        with pytest.raises(ValueError, match="capacity"):
            StaticDecoder(lean, batch=3, prompt_capacity=8, canvas=6).load(enc.kv, 25)
    assert torch.allclose(got, want, atol=1e-5)


def test_empty_builds_one_copy_in_the_target_dtype_and_runs():
    model = _randomized()
    lean = LeanDiffusionGemma.empty(model.config, "cpu", torch.bfloat16, seed=1)
    assert {p.dtype for p in lean.parameters()} == {torch.bfloat16}
    assert all(getattr(lean, f"_inv_freq_{k}").dtype == torch.float32 for k in lean._rope_scaling)
    hf_text = sum(p.numel() for n, p in model.named_parameters() if "vision" not in n and "embed_vision" not in n)
    assert sum(p.numel() for p in lean.parameters()) == hf_text  # the encoder shares every text weight
    vocab = model.config.text_config.vocab_size
    ids, _, positions, canvas, canvas_pos = _batch(vocab, [9], 4, seed=2)
    with torch.no_grad():
        assert torch.isfinite(lean.decode(canvas, canvas_pos, lean.encode(ids, positions).kv)).all()


def test_expert_loop_path_matches_the_grouped_one(monkeypatch):
    model = _randomized(experts=12, top_k=3, seed=5)
    lean = LeanDiffusionGemma.from_hf(model)
    vocab = model.config.text_config.vocab_size
    ids, _, positions, canvas, canvas_pos = _batch(vocab, [16], 6, seed=6)
    with torch.no_grad():
        grouped = lean.decode(canvas, canvas_pos, lean.encode(ids, positions).kv)
        monkeypatch.delattr(torch.nn.functional, "grouped_mm")  # torch < 2.10 has none
        loop = lean.decode(canvas, canvas_pos, lean.encode(ids, positions).kv)
    assert torch.allclose(grouped, loop, atol=1e-5)
