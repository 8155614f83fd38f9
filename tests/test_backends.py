"""Backends on real random-init checkpoints: cache reuse is exact, batching is exact, errors are clear."""

import pytest
import torch

from infill.errors import ModelLoadError
from infill.models import detect_backend, load_backend
from infill.models.base import LoadOptions
from infill.prompt import PromptConfig, encode_prompt


@pytest.fixture(scope="module", params=[("fused", "int8"), ("fused", "none"), ("transformers", None)],
                ids=["fused-int8", "fused-float", "transformers"])
def dg(request, tiny_model_dir):
    """The tiny checkpoint through each way of running it: the fused CPU stack with int8 matmuls (the CPU
    default) or float32, and transformers' class (the fallback)."""
    stack, quantize = request.param
    return load_backend(str(tiny_model_dir), LoadOptions(stack=stack, quantize=quantize))


def _prompt(backend, prefix, suffix="\n"):
    return encode_prompt(backend.prompt_format, backend.tokenizer, backend.ids, prefix, suffix, PromptConfig())


def test_diffusiongemma_is_detected_and_described(dg, tiny_model_dir):
    assert detect_backend(str(tiny_model_dir)) == "diffusiongemma"
    info = dg.describe()
    assert info.get("stack", "transformers") == ("fused" if dg.model is None else "transformers")
    assert info.get("weights", "float32") in ("int8", "float32")
    assert info["backend"] == "diffusiongemma" and info["prompt_format"] == "fim" and info["parameters"] > 0
    assert dg.ids.fim_middle is not None and dg.ids.pad not in dg.ids.banned


def test_encoder_cache_reuse_gives_the_same_logits_as_a_fresh_prefill(dg):
    dg.clear_cache()
    canvas = torch.randint(20, dg.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    typed = "def area(radius):\n    return 3.14 * rad"
    first = dg.prefill(_prompt(dg, typed[:-3]))
    assert first.reused_tokens == 0
    second = dg.prefill(_prompt(dg, typed))  # the user typed three more characters
    assert second.reused_tokens > 0 and second.reused_tokens + second.computed_tokens == len(second.prompt.encoder_ids)
    reused = dg.denoise(second, canvas, None)
    dg.clear_cache()
    fresh_state = dg.prefill(_prompt(dg, typed))
    assert fresh_state.reused_tokens == 0
    fresh = dg.denoise(fresh_state, canvas, None)
    assert torch.allclose(reused, fresh, atol=1e-4)
    assert dg.cache_stats.hits >= 1 and 0 < dg.cache_stats.hit_rate <= 1


def test_batched_canvases_match_one_at_a_time(dg):
    state = dg.prefill(_prompt(dg, "x = [1, 2, "))
    canvas = torch.randint(20, dg.vocab_size, (3, 8), generator=torch.Generator().manual_seed(1))
    batched = dg.denoise(state, canvas, None)
    for row in range(3):
        assert torch.allclose(batched[row], dg.denoise(state, canvas[row : row + 1], None)[0], atol=1e-4)


def test_missing_checkpoint_and_cpu_quantization_give_clear_errors(tmp_path, tiny_model_dir):
    with pytest.raises(ModelLoadError, match="config.json"):
        load_backend(str(tmp_path))
    with pytest.raises(ModelLoadError, match="CUDA"):
        load_backend(str(tiny_model_dir), LoadOptions(device="cpu", quantize="4bit"))


@pytest.fixture(scope="module")
def masked_dir(tmp_path_factory, tiny_model_dir):
    """A tiny random Llama saved with the project's tokenizer stands in for a Dream-style checkpoint:
    the adapter's layout, mask noise and logit shift run for real; only the weights are untrained."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("masked")
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_masked_backend_shifts_logits_and_uses_mask_noise(masked_dir):
    backend = load_backend(str(masked_dir))
    assert backend.noise == "mask" and backend.prompt_format == "masked" and backend.family.shift_logits
    state = backend.prefill(_prompt(backend, "a = ", "\nb = 2\n"))
    canvas = torch.full((1, 5), backend.ids.mask)
    logits = backend.denoise(state, canvas, None)
    prefix, suffix = state.payload
    seq = torch.cat([prefix, canvas, suffix], dim=1)
    direct = backend.model(input_ids=seq).logits
    p = prefix.shape[1]
    assert torch.allclose(logits, direct[:, p - 1 : p - 1 + 5].float(), atol=1e-5)  # token i from position i-1


def test_engine_runs_end_to_end_on_the_masked_adapter(masked_dir):
    from infill.engine import Engine
    from infill.request import InfillRequest

    engine = Engine(load_backend(str(masked_dir)))
    text = "def f(x):\n    return \n"
    result = engine.fill(InfillRequest(text=text, cursor=text.index("return ") + 7, path="f.py", seed=0,
                                       lengths=(4, 8), max_steps=8))
    assert result.start == result.end == text.index("return ") + 7
    assert result.forward_passes >= 2 and result.steps <= 8


def test_the_same_request_twice_gives_the_same_middle(tiny_model_dir):
    from infill.engine import Engine
    from infill.request import InfillRequest

    engine = Engine(load_backend(str(tiny_model_dir)))
    text = "def f(x):\n    return \n"
    req = InfillRequest(text=text, cursor=text.index("return ") + 7, path="f.py", seed=3, max_steps=6)
    first, second = engine.fill(req), engine.fill(req)
    assert second.reused_prompt_tokens == second.prompt_tokens  # the encoder was not run again
    assert (first.text, first.steps, first.forward_passes - 1) == (second.text, second.steps, second.forward_passes)


def test_merged_prompts_give_the_same_logits_as_one_at_a_time(dg):
    a = dg.prefill(_prompt(dg, "def f(x):\n    return "))
    b = dg.prefill(_prompt(dg, "import os\nfor name in os.listdir('.'):\n    print(", ")\n"))
    assert a.position != b.position
    canvas = torch.randint(20, dg.vocab_size, (3, 6), generator=torch.Generator().manual_seed(2))
    merged = dg.merge([a, b], [1, 2])
    together = dg.denoise(merged, canvas, None)
    assert torch.allclose(together[:1], dg.denoise(a, canvas[:1], None), atol=1e-4)
    assert torch.allclose(together[1:], dg.denoise(b, canvas[1:], None), atol=1e-4)
    # rows that finished leave the batch: the remaining rows still line up with their prompts
    rows = torch.tensor([0, 2])
    assert torch.allclose(dg.denoise(merged, canvas[rows], None, rows)[1], together[2], atol=1e-4)


def test_micro_batched_requests_share_passes_and_fail_alone(tiny_model_dir):
    from infill.engine import Engine
    from infill.errors import BadInputError, CancelledError
    from infill.request import InfillRequest

    engine = Engine(load_backend(str(tiny_model_dir)))
    text = "def f(x):\n    return \n\nvalues = [1, 2, ]\n"
    reqs = [
        InfillRequest(text=text, cursor=text.index("return ") + 7, path="f.py", seed=0, max_steps=5, lengths=(4, 8)),
        InfillRequest(text=text, cursor=text.index("]"), path="f.py", seed=0, max_steps=5, lengths=(3,)),
        InfillRequest(text=text, cursor=len(text) + 5, path="f.py"),  # bad: outside the document
        InfillRequest(text=text, cursor=0, path="f.py", seed=0, max_steps=5, lengths=(4,)),  # cancelled below
    ]
    results = engine.fill_batch(reqs, cancelled=[None, None, None, lambda: True])
    assert [type(r).__name__ for r in results] == ["InfillResult", "InfillResult", "BadInputError",
                                                     "CancelledError"]
    assert isinstance(results[2], BadInputError) and isinstance(results[3], CancelledError)
    for r, req in zip(results[:2], reqs[:2], strict=True):
        assert r.start == req.cursor and r.steps <= 5


def test_a_seeded_request_gets_the_same_middle_alone_or_batched(tiny_model_dir):
    from infill.engine import Engine
    from infill.request import InfillRequest

    engine = Engine(load_backend(str(tiny_model_dir)))
    text = "def f(x):\n    return \n\nvalues = [1, 2, ]\n"
    mine = InfillRequest(text=text, cursor=text.index("return ") + 7, path="f.py", seed=5, max_steps=6, lengths=(4, 8))
    other = InfillRequest(text=text, cursor=text.index("]"), path="f.py", seed=9, max_steps=6, lengths=(3,))
    alone = engine.fill(mine)
    together = engine.fill_batch([other, mine])[1]
    assert (together.text, together.steps) == (alone.text, alone.steps)


def test_masked_backend_merges_prompts(masked_dir):
    backend = load_backend(str(masked_dir))
    a = backend.prefill(_prompt(backend, "a = ", "\n"))
    b = backend.prefill(_prompt(backend, "def g():\n    return ", "\n"))
    canvas = torch.full((3, 4), backend.ids.mask)
    together = backend.denoise(backend.merge([a, b], [2, 1]), canvas, None)
    assert torch.allclose(together[2:], backend.denoise(b, canvas[2:], None), atol=1e-5)


def test_both_stacks_give_the_same_logits_and_the_default_is_fused(tiny_model_dir):
    from infill.models.diffusiongemma import FusedBackend

    default = load_backend(str(tiny_model_dir))
    assert isinstance(default, FusedBackend) and default.describe()["weights"] == "int8"  # the CPU default
    fused = load_backend(str(tiny_model_dir), LoadOptions(quantize="none"))
    hf = load_backend(str(tiny_model_dir), LoadOptions(stack="transformers"))
    assert isinstance(fused, FusedBackend) and not isinstance(hf, FusedBackend)
    canvas = torch.randint(20, fused.vocab_size, (2, 7), generator=torch.Generator().manual_seed(4))
    probs = torch.softmax(torch.randn(2, 7, fused.vocab_size, generator=torch.Generator().manual_seed(5)), -1)
    a, b = fused.prefill(_prompt(fused, "def f(x):\n    return ")), hf.prefill(_prompt(hf, "def f(x):\n    return "))
    assert torch.allclose(fused.denoise(a, canvas, probs), hf.denoise(b, canvas, probs), atol=1e-5)
    # logits of some columns only; the other slots condition on their own token
    cols = torch.tensor([0, 2, 3])
    some = fused.denoise(a, canvas, probs[:, cols], slots=cols)
    assert some.shape == (2, 3, fused.vocab_size)
    assert torch.allclose(some, hf.denoise(b, canvas, probs[:, cols], slots=cols), atol=1e-5)
    one_hot = torch.zeros_like(probs).scatter_(-1, canvas[..., None], 1.0)
    one_hot[:, cols] = probs[:, cols]
    assert torch.allclose(some, fused.denoise(a, canvas, one_hot)[:, cols], atol=1e-5)


def test_the_fused_stack_refuses_what_it_cannot_run(tiny_model_dir):
    with pytest.raises(ModelLoadError, match="fused stack cannot run"):
        load_backend(str(tiny_model_dir), LoadOptions(stack="fused", dtype="bfloat16"))
