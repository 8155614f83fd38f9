"""Weight-only quantization of the lean stack, experts included: what makes the 26B shape fit a consumer card.

bitsandbytes swaps only `nn.Linear`; DiffusionGemma's experts are 3-D parameters (most of the 26B
model's weights), so `--quantize 4bit` left ~46 GB resident. Here every projection *and* every expert
tensor is stored quantized and dequantized on the fly, one expert at a time:

    int8   per output channel, symmetric                1 byte/weight  (+ a scale per row)
    fp8    float8_e4m3fn, per output channel            1 byte/weight  (H100/H200 class; storage on any device)
    int4   groups of 32 along the input, symmetric      0.5 byte/weight (+ a scale per group)

The embedding (also the output head) stays in the model's dtype: it sets every logit.

    quantize(lean, "int8")          # in place; returns bytes of weights before and after
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import lookup
from .lean import DENSE_EXPERTS_MAX, Experts, LeanDiffusionGemma

INT4_GROUP = 32  # input columns sharing one int4 scale


def _quantize(w: torch.Tensor, kind: str) -> dict[str, torch.Tensor]:
    """w (..., out, in) -> stored tensors; scales are float32, one per output row (int4: per group of a row)."""
    w = w.float()
    if kind == "int4":
        *lead, out, inn = w.shape
        pad = (-inn) % INT4_GROUP
        g = F.pad(w, (0, pad)).reshape(*lead, out, -1, INT4_GROUP)  # (..., out, groups, 32)
        scale = g.abs().amax(-1, keepdim=True).clamp(min=1e-8) / 7.0
        q = (g / scale).round().clamp(-8, 7).to(torch.int8) + 8  # 0..15
        q = q.reshape(*lead, out, -1)
        packed = (q[..., 0::2] | (q[..., 1::2] << 4)).to(torch.uint8)  # two weights per byte
        return {"q": packed, "scale": scale.squeeze(-1)}
    amax = w.abs().amax(-1, keepdim=True).clamp(min=1e-8)
    if kind == "int8":
        scale = amax / 127.0
        return {"q": (w / scale).round().clamp(-127, 127).to(torch.int8), "scale": scale}
    scale = amax / torch.finfo(torch.float8_e4m3fn).max
    return {"q": (w / scale).to(torch.float8_e4m3fn), "scale": scale}


def _dequantize(q: torch.Tensor, scale: torch.Tensor, kind: str, dtype: torch.dtype, in_features: int) -> torch.Tensor:
    if kind == "int4":
        lo, hi = (q & 0x0F).to(torch.int8) - 8, (q >> 4).to(torch.int8) - 8
        vals = torch.stack([lo, hi], dim=-1).flatten(-2)  # (..., out, padded in)
        grouped = vals.reshape(*vals.shape[:-1], -1, INT4_GROUP).float() * scale[..., None]
        return grouped.flatten(-2)[..., :in_features].to(dtype)
    return (q.float() * scale).to(dtype)


class QuantLinear(nn.Module):
    def __init__(self, linear: nn.Linear, kind: str) -> None:
        super().__init__()
        self.kind, self.dtype, self.in_features = kind, linear.weight.dtype, linear.in_features
        for name, t in _quantize(linear.weight.data, kind).items():
            self.register_buffer(name, t.to(linear.weight.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, _dequantize(self.q, self.scale, self.kind, x.dtype, self.in_features))


class QuantExperts(nn.Module):
    """`Experts` with quantized 3-D weights; each expert is dequantized only when the router picks it."""

    def __init__(self, experts: Experts, kind: str) -> None:
        super().__init__()
        self.kind, self.dtype = kind, experts.gate_up_proj.dtype
        self.count = experts.gate_up_proj.shape[0]
        self.hidden = experts.gate_up_proj.shape[2]
        self.inner = experts.down_proj.shape[2]
        for prefix, w in (("gate_up_", experts.gate_up_proj.data), ("down_", experts.down_proj.data)):
            for name, t in _quantize(w, kind).items():
                self.register_buffer(prefix + name, t.to(w.device))

    def weights(self, e: int | slice, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        return (_dequantize(self.gate_up_q[e], self.gate_up_scale[e], self.kind, dtype, self.hidden),
                _dequantize(self.down_q[e], self.down_scale[e], self.kind, dtype, self.inner))

    def forward(self, x: torch.Tensor, weights: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        if self.count <= DENSE_EXPERTS_MAX:
            gate_up, down = self.weights(slice(None), x.dtype)
            dense = torch.zeros(x.shape[0], self.count, dtype=weights.dtype, device=x.device).scatter(1, index, weights)
            gate, up = torch.matmul(x[None], gate_up.transpose(1, 2)).chunk(2, dim=-1)
            out = torch.matmul(F.gelu(gate, approximate="tanh") * up, down.transpose(1, 2))
            return (out * dense.t()[..., None]).sum(0).to(x.dtype)
        out = torch.zeros_like(x)
        for e in index.unique().tolist():
            token, slot = torch.where(index == e)
            gate_up, down = self.weights(e, x.dtype)
            gate, up = F.linear(x[token], gate_up).chunk(2, dim=-1)
            y = F.linear(F.gelu(gate, approximate="tanh") * up, down)
            out.index_add_(0, token, (y * weights[token, slot, None]).to(out.dtype))
        return out


QUANT_KINDS = {"int8": "int8", "fp8": "fp8", "int4": "int4"}


def weight_bytes(module: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


@torch.no_grad()
def quantize(lean: LeanDiffusionGemma, kind: str) -> tuple[int, int]:
    """Quantize every projection and expert tensor of the text layers in place. Returns (bytes before, after)."""
    kind = lookup(QUANT_KINDS, "quantization", kind)
    before = weight_bytes(lean)
    for layer in lean.model.decoder.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(parent, name, QuantLinear(child, kind))
        layer.experts = QuantExperts(layer.experts, kind)
    return before, weight_bytes(lean)


__all__ = ["quantize", "QuantLinear", "QuantExperts", "QUANT_KINDS", "weight_bytes"]
