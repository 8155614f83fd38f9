"""A DiffusionGemma checkpoint read without transformers: its config, RoPE frequencies, and weights into the lean stack.

Importing transformers' DiffusionGemma modules costs 2-3 s of CPU before anything is computed, and building
the class builds encoder and decoder weights before tying them; a language server or `infill fill` needs
none of it to run the lean stack. `read_config(dir)` gives the fields `LeanDiffusionGemma` reads, resolved
as `DiffusionGemmaTextConfig.__post_init__` resolves them (the last layer full attention, default RoPE
parameters, the per-layer overrides of full-attention layers), behind the same
`get_text_config(decoder=True)` / `per_layer_config[layer]` surface, so the stack takes either config.
`load_lean(dir)` reads the text weights from the safetensors shards (memory-mapped) under the class's names.

    lean = load_lean(Path("infill/weights"), dtype=torch.float32)     # the same logits as LeanDiffusionGemma.from_hf
    inv_freq, scaling = rope_frequencies(lean.text_config, "full_attention")
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

# DiffusionGemmaTextConfig's defaults where a config.json leaves a field out (transformers 5.24).
DEFAULT_ROPE = {
    "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
    "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25, "rope_theta": 1_000_000.0},
}
DEFAULT_GLOBAL_HEAD_DIM = 512  # full-attention layers' head_dim when config.json has no per_layer_config


@dataclass(frozen=True)
class LayerShape:
    head_dim: int
    num_key_value_heads: int


class _PerLayer:
    """`per_layer_config[i]` by layer index or by layer type, as transformers' view answers it."""

    def __init__(self, shapes: list[LayerShape], types: list[str]) -> None:
        self._shapes, self._types = shapes, types

    def __getitem__(self, key: int | str) -> LayerShape:
        return self._shapes[key if isinstance(key, int) else self._types.index(key)]


@dataclass
class TextConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float
    pad_token_id: int | None
    layer_types: list[str]
    sliding_window: int
    final_logit_softcapping: float
    num_experts: int | None
    top_k_experts: int | None
    moe_intermediate_size: int | None
    rope_parameters: dict[str, dict[str, Any]]
    per_layer_config: _PerLayer = field(repr=False)


@dataclass
class Config:
    """The top-level config: the text config plus what the backend reads (noise kind, canvas length, path)."""

    text_config: TextConfig
    canvas_length: int | None = None
    infill_noise: str | None = None
    _name_or_path: str = ""

    def get_text_config(self, decoder: bool = True) -> TextConfig:
        return self.text_config


def read_config(directory: Path) -> Config:
    """config.json of a DiffusionGemma checkpoint directory. Raises OSError, ValueError or KeyError."""
    raw = json.loads((Path(directory) / "config.json").read_text())
    if raw.get("model_type") != "diffusion_gemma":
        raise ValueError(f"model_type is {raw.get('model_type')!r}, not 'diffusion_gemma'")
    text = dict(raw["text_config"])
    layers = int(text["num_hidden_layers"])
    types = list(text.get("layer_types") or ["sliding_attention" if (i + 1) % 6 else "full_attention"
                                             for i in range(layers)])
    types[-1] = "full_attention"  # the class forces it too
    window = int(text.get("sliding_window", 512))
    if text.get("use_bidirectional_attention") == "all":
        window = window // 2 + 1  # the class's exclusive bound
    head_dim, kv_heads = int(text.get("head_dim", 256)), int(text.get("num_key_value_heads", 4))
    shapes = [LayerShape(head_dim, kv_heads) for _ in range(layers)]
    if "per_layer_config" in text:
        for key, override in (text["per_layer_config"] or {}).items():
            i = int(key)
            shapes[i] = LayerShape(int(override.get("head_dim", shapes[i].head_dim)),
                                   int(override.get("num_key_value_heads", shapes[i].num_key_value_heads)))
    else:  # the class's default: full-attention layers take the global head_dim (and kv heads when given)
        global_dim = int(text.get("global_head_dim", DEFAULT_GLOBAL_HEAD_DIM))
        global_kv = text.get("num_global_key_value_heads")
        for i, kind in enumerate(types):
            if kind == "full_attention":
                shapes[i] = LayerShape(global_dim, int(global_kv) if global_kv is not None else kv_heads)
    cfg = TextConfig(
        vocab_size=int(text.get("vocab_size", 262_144)), hidden_size=int(text.get("hidden_size", 2304)),
        intermediate_size=int(text.get("intermediate_size", 9216)), num_hidden_layers=layers,
        num_attention_heads=int(text.get("num_attention_heads", 8)), num_key_value_heads=kv_heads,
        head_dim=head_dim, rms_norm_eps=float(text.get("rms_norm_eps", 1e-6)),
        pad_token_id=text.get("pad_token_id", 0), layer_types=types, sliding_window=window,
        final_logit_softcapping=float(text.get("final_logit_softcapping") or 30.0),
        num_experts=text.get("num_experts"), top_k_experts=text.get("top_k_experts"),
        moe_intermediate_size=text.get("moe_intermediate_size"),
        rope_parameters=text.get("rope_parameters") or DEFAULT_ROPE, per_layer_config=_PerLayer(shapes, types),
    )
    return Config(text_config=cfg, canvas_length=raw.get("canvas_length"), infill_noise=raw.get("infill_noise"),
                  _name_or_path=str(directory))


# -- RoPE ------------------------------------------------------------------------------------------------
def _default(params: dict[str, Any], head_dim: int) -> torch.Tensor:
    dim = int(head_dim * params.get("partial_rotary_factor", 1.0))
    return 1.0 / (params["rope_theta"] ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))


def _proportional(params: dict[str, Any], head_dim: int) -> torch.Tensor:
    """Rotate the first `partial_rotary_factor` of the angles with frequencies over the whole head_dim; the
    rest get frequency 0 (no rotation)."""
    angles = int(params.get("partial_rotary_factor", 1.0) * head_dim // 2)
    rotated = 1.0 / (params["rope_theta"] ** (torch.arange(0, 2 * angles, 2, dtype=torch.int64).float() / head_dim))
    inv = torch.cat((rotated, torch.zeros(head_dim // 2 - angles))) if head_dim // 2 > angles else rotated
    return inv / params.get("factor", 1.0)


ROPE_TYPES = {"default": _default, "proportional": _proportional}


def rope_frequencies(cfg, kind: str) -> tuple[torch.Tensor, float]:
    """(inv_freq float32, attention scaling) of layer type `kind`: the two rope types DiffusionGemma ships
    here; any other type through transformers' own module."""
    params = cfg.rope_parameters[kind]
    fn = ROPE_TYPES.get(params.get("rope_type", "default"))
    with torch.device("cpu"):  # real numbers even while a caller builds the module on the meta device
        if fn is not None:
            return fn(params, cfg.per_layer_config[kind].head_dim).float(), 1.0
        from transformers.models.diffusion_gemma.modeling_diffusion_gemma import (
            DiffusionGemmaTextRotaryEmbedding,
        )

        rope = DiffusionGemmaTextRotaryEmbedding(cfg)
    return getattr(rope, f"{kind}_inv_freq").float().clone(), getattr(rope, f"{kind}_attention_scaling")


# -- weights -----------------------------------------------------------------------------------------------
def shard_files(directory: Path) -> list[Path]:
    """The safetensors files of a checkpoint (sharded or not); empty when it has none."""
    directory = Path(directory)
    index = directory / "model.safetensors.index.json"
    if index.exists():
        return [directory / name for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    single = directory / "model.safetensors"
    return [single] if single.exists() else []


@contextlib.contextmanager
def _skip_init():
    """nn.init's fills as no-ops: random init on the meta device goes through torch._refs, which imports
    torch._dynamo (~2 s of CPU) for numbers that are thrown away."""
    names = ("normal_", "uniform_", "kaiming_uniform_", "trunc_normal_", "ones_", "zeros_")
    saved = {name: getattr(nn.init, name) for name in names}
    try:
        for name in names:
            setattr(nn.init, name, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for name, fn in saved.items():
            setattr(nn.init, name, fn)


def load_lean(directory: Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
    """The text stack of a checkpoint directory as a `LeanDiffusionGemma` in eval mode, without transformers.

    Raises OSError, ValueError or KeyError for a directory that is not such a checkpoint (no weights, a
    missing or misshapen tensor)."""
    from safetensors import safe_open

    from .lean import LeanDiffusionGemma

    config = read_config(directory)
    files = shard_files(directory)
    if not files:
        raise OSError(f"no safetensors weights in {directory}")
    with torch.device("meta"), _skip_init():  # no memory, no initialisation: every tensor comes from the files
        lean = LeanDiffusionGemma(config)
    wanted = lean.state_dict()
    state: dict[str, torch.Tensor] = {}
    for file in files:
        with safe_open(str(file), "pt", device="cpu") as f:
            for name in wanted.keys() & set(f.keys()):
                state[name] = f.get_tensor(name).to(device=device, dtype=dtype)
    missing = sorted(wanted.keys() - state.keys())
    if missing:
        raise KeyError(f"{directory} lacks {len(missing)} text weights, e.g. {missing[0]}")
    for name, tensor in state.items():
        if tensor.shape != wanted[name].shape:
            raise ValueError(f"{name}: {tuple(tensor.shape)} in the file, {tuple(wanted[name].shape)} in config.json")
    lean.load_state_dict(state, strict=True, assign=True)
    return lean.to(device).eval()  # the RoPE buffers, built on the CPU, follow


__all__ = ["Config", "load_lean", "shard_files", "TextConfig", "LayerShape", "read_config", "rope_frequencies", "ROPE_TYPES"]
