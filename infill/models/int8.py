"""int8 matmuls for the lean stack on a CPU: per-channel int8 weights, activations quantized on the fly.

A decoder step multiplies one canvas row (up to a few hundred slots) by every weight of the model; on a CPU
small float32 matmuls are bound by streaming the weights from memory. fbgemm's dynamic linear
(`quantized::linear_dynamic`) keeps each weight as int8 with one scale per output channel (a quarter of the
bytes of float32), quantizes the activations on the fly, multiplies in int8 and rescales to float32.
Measured on this project's 2-core machine: 2-9x faster per projection at 1-64 rows, the tied head 8x; a
128-slot decoder step of the bundled model 30 ms against 50 ms in float32.

`fused.FusedStack(lean, int8=True)` decides what becomes int8 (the attention projections, the experts, the
self-conditioning MLP and the tied head; not the dense MLP). Norms, the router and the scalars stay float32.
This is for inference only: an Int8Linear has no gradients and no state dict (the float32 weights it came from
are the checkpoint).

Not `infill.models.quant`: that stores weights quantized and dequantizes them for a float matmul (memory on
a GPU), which on a CPU is slower than float32.
"""

from __future__ import annotations

import contextlib
import contextvars
import warnings

import torch
from torch import nn


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


__all__ = ["Int8Linear", "available", "scale_groups"]
