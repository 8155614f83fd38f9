"""int8 matmuls for the lean stack on a CPU: per-channel int8 weights, activations quantized on the fly.

A decoder step over a one-row canvas of ~16 slots multiplies a handful of rows by every weight of the model:
on a CPU it is bound by streaming the weights from memory, not by arithmetic. fbgemm's dynamic linear
(`quantized::linear_dynamic`) keeps each weight as int8 with one scale per output channel (a quarter of the
bytes of float32), quantizes the activation rows per call, multiplies in int8 and rescales to float32.
Measured on this project's 2-core machine: 2-9x faster per projection at 1-64 rows, the tied head 8x.

What becomes int8 (`quantize_int8`): every projection of the attention, the dense MLP and the
self-conditioning MLP, each expert (its 3-D weights split per expert), and the tied head (a copy: the
embedding itself stays float32 for the input embeddings and for `probs @ E`). Norms, the router and the
scalars stay float32. This is for inference only: the quantized stack has no gradients and no state dict
of its own (the float32 weights it came from are the checkpoint).

Not `infill.models.quant`: that stores weights quantized and dequantizes them for a float matmul (memory on
a GPU), which on a CPU is slower than float32.
"""

from __future__ import annotations

import contextlib
import contextvars
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .lean import DENSE_EXPERTS_MAX, Experts, LeanDiffusionGemma


def _has_vnni() -> bool:
    """Whether this CPU multiplies int8 with VNNI (32-bit accumulation). Linux only; elsewhere assume not."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


# 7-bit activations where the CPU lacks VNNI, so fbgemm's 16-bit pairwise accumulation cannot saturate; full
# 8-bit where VNNI accumulates in 32 bits (measured: 7 bits cost the bundled model ~5 points of syntax-valid).
REDUCE_RANGE = not _has_vnni()


def available() -> bool:
    """Whether this torch build has the fbgemm/x86 dynamic int8 kernels."""
    return "x86" in torch.backends.quantized.supported_engines or "fbgemm" in torch.backends.quantized.supported_engines


# How many rows share one activation scale: None, the whole call (fbgemm); 1, every row alone (each prompt token:
# an encoder cache grown a few tokens at a time equals one encoded at once); n, each run of n rows (a canvas row's
# slots: a request's result does not depend on the rows batched with it). Set by the fused stack per pass.
_GROUP: contextvars.ContextVar[int | None] = contextvars.ContextVar("int8_group", default=None)


@contextlib.contextmanager
def scale_groups(rows: int | None):
    """Within this block, Int8Linear quantizes activations in groups of `rows` rows (see _GROUP)."""
    token = _GROUP.set(rows)
    try:
        yield
    finally:
        _GROUP.reset(token)


class Int8Linear(nn.Module):
    """`F.linear(x, weight)` with weight (out, in) stored as per-output-channel int8, activations dynamic."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        w = weight.detach().float().cpu().contiguous()
        scale = (w.abs().amax(1) / 127.0).clamp(min=1e-8)  # one scale per output channel
        with warnings.catch_warnings():  # quantized tensors are deprecated as a user API; fbgemm's kernels are not
            warnings.simplefilter("ignore")
            qw = torch.quantize_per_channel(w, scale.double(), torch.zeros(w.shape[0], dtype=torch.long), 0,
                                            torch.qint8)
            self._packed = torch.ops.quantized.linear_prepack(qw, None)
        self._qt = qw.int_repr().t().contiguous()  # (in, out) int8, for per-row activation scales (torch._int_mm)
        self._scale = scale  # (out,)
        self.in_features, self.out_features = w.shape[1], w.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        group = _GROUP.get()
        if group == 1:
            return self._per_row(x)
        rows = x.reshape(-1, x.shape[-1])
        if group is None or rows.shape[0] <= group:
            return torch.ops.quantized.linear_dynamic(x, self._packed, REDUCE_RANGE)
        out = [torch.ops.quantized.linear_dynamic(chunk, self._packed, REDUCE_RANGE) for chunk in rows.split(group)]
        return torch.cat(out).reshape(*x.shape[:-1], self.out_features)

    def _per_row(self, x: torch.Tensor) -> torch.Tensor:
        """Each row quantized with its own scale: (…, in) -> (…, out)."""
        rows = x.reshape(-1, x.shape[-1])
        s = rows.abs().amax(1, keepdim=True).clamp_(min=1e-8) / 127.0  # (M, 1)
        q = (rows / s).round_().to(torch.int8)
        out = torch._int_mm(q, self._qt).float() * s * self._scale  # int32 accumulation, then both scales
        return out.reshape(*x.shape[:-1], self.out_features)


class Int8Experts(nn.Module):
    """`Experts` with each expert's gate_up and down projections as Int8Linear (the dense path: every expert
    on every token, weighted by the router, as `Experts` runs small expert counts)."""

    def __init__(self, experts: Experts) -> None:
        super().__init__()
        count = experts.gate_up_proj.shape[0]
        if count > DENSE_EXPERTS_MAX:
            raise ValueError(f"int8 experts run densely; {count} experts is over {DENSE_EXPERTS_MAX}")
        self.gate_up = nn.ModuleList(Int8Linear(experts.gate_up_proj[e]) for e in range(count))
        self.down = nn.ModuleList(Int8Linear(experts.down_proj[e]) for e in range(count))

    def forward(self, x: torch.Tensor, weights: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """x (N, H), weights/index (N, k) -> (N, H)."""
        dense = torch.zeros(x.shape[0], len(self.gate_up), dtype=weights.dtype, device=x.device)
        dense = dense.scatter(1, index, weights)  # (N, E): 0 for experts the router did not pick
        out = torch.zeros_like(x)
        for e, (gate_up, down) in enumerate(zip(self.gate_up, self.down, strict=True)):
            gate, up = gate_up(x).chunk(2, dim=-1)  # (N, I) each
            out += down(F.gelu(gate, approximate="tanh") * up) * dense[:, e : e + 1]
        return out


@torch.no_grad()
def quantize_int8(lean: LeanDiffusionGemma) -> LeanDiffusionGemma:
    """Swap the stack's projections, experts and head for int8 ones, in place (CPU only). Returns `lean`."""
    if next(lean.parameters()).device.type != "cpu":
        raise ValueError("int8 matmuls are CPU kernels; quantize a model on the CPU")
    stack = lean.model.decoder
    for layer in stack.layers:
        for parent in (layer.self_attn, layer.mlp):
            _swap_linears(parent)
        layer.experts = Int8Experts(layer.experts)
    _swap_linears(stack.self_conditioning)
    lean.head = Int8Linear(lean.embed)
    return lean


def _swap_linears(parent: nn.Module) -> None:
    for name, child in list(parent.named_children()):
        if isinstance(child, nn.Linear):
            setattr(parent, name, Int8Linear(child.weight))


__all__ = ["Int8Linear", "Int8Experts", "quantize_int8", "available", "scale_groups"]
