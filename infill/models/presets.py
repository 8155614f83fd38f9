"""Model shapes for random-init checkpoints (tests, speed benchmarks) and for the bundled model.

`write_random_checkpoint(dir, preset)` writes config, tokenizer and (unless the shape is too big to
write) random weights, so everything downstream runs with no download.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import lookup

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
MODEL_ENV = "INFILL_MODEL"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
RANDOM_INIT_MARKER = "random_init.json"  # a config-only directory: weights are drawn at load time


@dataclass(frozen=True)
class ModelShape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    global_head_dim: int  # head_dim of the full-attention layers (DiffusionGemma uses 512)
    global_kv_heads: int
    intermediate: int  # the dense MLP every layer has beside its experts
    experts: int  # >= 2: the class builds a router in every layer
    top_k: int
    expert_intermediate: int
    sliding_window: int  # at least prompt + canvas keeps the encoder cache croppable while typing
    sliding_every: int  # every n-th layer is full attention (the last always is)
    vocab: int | None = None  # None: the tokenizer's size
    canvas: int = 256  # config.canvas_length, what stock generate() uses
    max_positions: int = 8192


PRESETS: dict[str, ModelShape] = {
    # Unit tests: milliseconds per step on one CPU core.
    "tiny": ModelShape(hidden=64, layers=2, heads=2, kv_heads=1, head_dim=32, global_head_dim=32, global_kv_heads=1,
                       intermediate=128, experts=2, top_k=1, expert_intermediate=32, sliding_window=2048,
                       sliding_every=2, canvas=64),
    # Equal-compute experiments on a CPU (the objective A/B): ~4x cheaper per token than `small`.
    "mini": ModelShape(hidden=256, layers=4, heads=4, kv_heads=2, head_dim=64, global_head_dim=64, global_kv_heads=2,
                       intermediate=512, experts=2, top_k=1, expert_intermediate=128, sliding_window=2048,
                       sliding_every=2, canvas=64),
    # The bundled default (trained by `infill train`): 18.5M parameters, 37 MB in bf16 (the limit is 40 MB).
    "small": ModelShape(hidden=384, layers=8, heads=6, kv_heads=2, head_dim=64, global_head_dim=64,
                        global_kv_heads=2, intermediate=576, experts=2, top_k=1, expert_intermediate=256,
                        sliding_window=2048, sliding_every=4, canvas=128),
    # The released google/diffusiongemma-26B-A4B-it shape, from published figures (30 layers, 128 experts top-8,
    # hidden 2816, expert width 704, window 1024, vocab 262144: 25.2B total / 3.8B active). Head counts and the
    # dense MLP width are our estimate; they reproduce both parameter totals within 2%.
    "diffusiongemma-26b-a4b": ModelShape(hidden=2816, layers=30, heads=16, kv_heads=8, head_dim=256,
                                         global_head_dim=512, global_kv_heads=2, intermediate=2112, experts=128,
                                         top_k=8, expert_intermediate=704, sliding_window=1024, sliding_every=6,
                                         vocab=262144, canvas=256, max_positions=131072),
}


def diffusiongemma_config(shape: ModelShape, vocab_size: int, special: dict[str, int]):
    """A `DiffusionGemmaConfig` of this shape. `special` maps pad/eos/bos/image/boi/eoi to ids."""
    from transformers import DiffusionGemmaConfig

    layer_types = [
        "full_attention" if (i + 1) % shape.sliding_every == 0 or i == shape.layers - 1 else "sliding_attention"
        for i in range(shape.layers)
    ]
    global_override = {"head_dim": shape.global_head_dim, "num_key_value_heads": shape.global_kv_heads}
    text = dict(
        vocab_size=vocab_size, hidden_size=shape.hidden, intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers, num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads,
        head_dim=shape.head_dim, layer_types=layer_types,
        per_layer_config={i: global_override for i, t in enumerate(layer_types) if t == "full_attention"},
        num_experts=shape.experts, top_k_experts=shape.top_k, moe_intermediate_size=shape.expert_intermediate,
        max_position_embeddings=shape.max_positions, sliding_window=shape.sliding_window,
        use_bidirectional_attention="vision", final_logit_softcapping=30.0,
        pad_token_id=special["pad"], eos_token_id=special["eos"], bos_token_id=special["bos"],
    )
    # The class always builds a vision tower; a tiny one costs a few thousand parameters.
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=8, patch_size=4, position_embedding_size=64)
    return DiffusionGemmaConfig(
        text_config=text, vision_config=vision, image_token_id=special["image"], boi_token_id=special["boi"],
        eoi_token_id=special["eoi"], canvas_length=shape.canvas,
    )


def bundled_tokenizer_dir() -> Path:
    return WEIGHTS_DIR


def copy_tokenizer(src: Path, dst: Path) -> None:
    for name in TOKENIZER_FILES:
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)


def special_ids_of(tokenizer) -> dict[str, int]:
    def tid(name: str) -> int:
        i = tokenizer.convert_tokens_to_ids(name)
        assert isinstance(i, int) and i >= 0, f"tokenizer lacks {name}"
        return i

    return {k: tid(f"<{k}>") for k in ("pad", "eos", "bos", "image", "boi", "eoi")}


def build_model(preset: str | ModelShape, tokenizer_dir: Path | None = None, seed: int = 0, device: str = "cpu",
                dtype=None):
    """A random-init DiffusionGemmaForBlockDiffusion of this shape, and its tokenizer."""
    import torch
    from transformers import AutoTokenizer, DiffusionGemmaForBlockDiffusion

    shape = lookup(PRESETS, "model preset", preset) if isinstance(preset, str) else preset
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir or bundled_tokenizer_dir()))
    vocab = shape.vocab or len(tok)
    config = diffusiongemma_config(shape, vocab, special_ids_of(tok))
    torch.manual_seed(seed)
    with torch.device(device):
        model = DiffusionGemmaForBlockDiffusion(config)
    if dtype is not None:
        model = model.to(dtype)
    return model.eval(), tok


def write_random_checkpoint(out_dir: str | Path, preset: str, seed: int = 0, weights: bool | None = None) -> Path:
    """Write a random-init checkpoint. Shapes over ~1B parameters get config + tokenizer only and are
    drawn at load time (writing 50 GB of noise helps nobody)."""
    shape = lookup(PRESETS, "model preset", preset)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    big = shape.experts * shape.expert_intermediate * shape.hidden * shape.layers * 3 > 1_000_000_000
    if weights is None:
        weights = not big
    if weights:
        model, tok = build_model(shape, seed=seed)
        model.save_pretrained(out)
        tok.save_pretrained(out)
    else:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(bundled_tokenizer_dir()))
        config = diffusiongemma_config(shape, shape.vocab or len(tok), special_ids_of(tok))
        config.save_pretrained(out)
        tok.save_pretrained(out)
        (out / RANDOM_INIT_MARKER).write_text(json.dumps({"preset": preset, "seed": seed, "shape": asdict(shape)}))
    return out


def default_model() -> str:
    """$INFILL_MODEL when set, else the bundled model."""
    import os

    from ..errors import ModelLoadError

    env = os.environ.get(MODEL_ENV)
    if env:
        return env
    if (WEIGHTS_DIR / "config.json").exists():
        return str(WEIGHTS_DIR)
    raise ModelLoadError(
        f"no model given and no bundled model in {WEIGHTS_DIR}; pass --model DIR, set ${MODEL_ENV}, "
        "or write a random test model with `infill model random DIR --preset tiny`"
    )
