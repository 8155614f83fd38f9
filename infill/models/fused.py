"""The lean stack's weights rearranged for inference on a CPU: fewer, larger ops per layer, optionally int8.

A decoder step over a 16-slot canvas multiplies a few rows by every weight: its cost is the weights streamed
from memory plus a fixed cost per op (a few microseconds each on one core, ~1,000 ops per step in
`LeanDiffusionGemma.decode`). This module computes the same function with about a third of the ops:

- **fused projections**: q/k/v are one matmul, MLP gate/up one, every expert's gate/up one and every
  expert's down one (the router weight scales each expert's inner activations before the shared down
  projection, which is the same sum);
- **shared norms**: q/k/v norms are one RMS over the heads with a concatenated weight; the three norms of
  the feed-forward input (dense MLP, router, experts) share one RMS;
- **preallocated K/V per canvas** (`CanvasKV`): the prompt's K/V copied once into buffers of exactly
  prompt + canvas slots; a step writes the canvas K/V into the tail in place and attends over the whole
  buffer with no mask (a mask only for a batch of left-padded prompts), never concatenating;
- grouped-query attention folds a kv head's query heads into rows (no K/V copies);
- no self-conditioning MLP on the first step (its input is zero, so is its output).

With float32 weights the logits equal the class's within 1e-5 (tests/test_fused.py). `int8=True` runs the
attention projections, the experts, the self-conditioning MLP and the tied head through `int8.Int8Linear`
(per-channel weights, dynamic activations); the dense MLP stays float32 (see FusedStack).

    stack = FusedStack(load_lean(path), int8=False)
    kv = stack.encode(ids, positions)                              # per layer (K, V) (1, kv_heads, T, d)
    buffers = stack.canvas_kv(kv, batch=1, canvas=14)
    logits = stack.decode(canvas, positions, buffers, soft=None)   # (b, L, V) float32, softcapped
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .int8 import scale_groups
from .lean import DENSE_EXPERTS_MAX, LeanDiffusionGemma, rotate

Linear = Callable[[torch.Tensor], torch.Tensor]


class _Float(nn.Module):
    """F.linear with a float weight (out, in): the float32 form of a fused projection."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = weight.detach().contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)


def _rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    """x * mean(x²)^-½ over the last dim, in float32 (Gemma's RMSNorm without its weight)."""
    h = x.float()
    return h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)


@dataclass
class CanvasKV:
    """Per-layer K/V buffers for one batch of canvases: [prompt keys | canvas keys], exactly sized.

    kv[i] = (K, V), each (b, kv_heads, P + L, d); the prompt part is written once, the canvas part by every
    step. `mask` (b, 1, 1, P + L) marks real keys when the prompts are left-padded to one length, else None.
    """

    kv: list[tuple[torch.Tensor, torch.Tensor]]
    prompt: int  # P: prompt slots (the longest prompt when padded)
    mask: torch.Tensor | None
    rope: tuple[torch.Tensor, dict] | None = None  # (positions, their cos/sin per layer type): the same every step

    @property
    def batch(self) -> int:
        return self.kv[0][0].shape[0]


class FusedLayer(nn.Module):
    def __init__(self, layer, make: Callable[[torch.Tensor], nn.Module], eps: float,
                 make_mlp: Callable[[torch.Tensor], nn.Module] | None = None) -> None:
        super().__init__()
        make_mlp = make_mlp or make
        attn = layer.self_attn
        self.heads, self.kv_heads, self.head_dim, self.eps = attn.heads, attn.kv_heads, attn.head_dim, eps
        v_weight = attn.v_proj.weight if attn.v_proj is not None else attn.k_proj.weight  # full layers: V = K
        self.qkv = make(torch.cat([attn.q_proj.weight, attn.k_proj.weight, v_weight]))
        d = self.head_dim
        self.head_norm = torch.cat([attn.q_norm.weight.float().expand(self.heads, d),  # (h + 2 kvh, d)
                                    attn.k_norm.weight.float().expand(self.kv_heads, d),
                                    torch.ones(self.kv_heads, d)]).detach()
        self.o_proj = make(attn.o_proj.weight)
        self.input_norm = layer.input_layernorm.weight.detach().float()
        self.post_attn_norm = layer.post_attention_layernorm.weight.detach().float()
        # feed-forward: one RMS of x scaled three ways (dense MLP, router, experts)
        hidden = self.input_norm.shape[0]
        self.pre_mlp = layer.pre_feedforward_layernorm.weight.detach().float()
        self.pre_router = (layer.router.scale.detach().float() * hidden ** -0.5)
        self.pre_experts = layer.pre_feedforward_layernorm_2.weight.detach().float()
        self.mlp_gate_up = make_mlp(torch.cat([layer.mlp.gate_proj.weight, layer.mlp.up_proj.weight]))
        self.mlp_down = make_mlp(layer.mlp.down_proj.weight)
        self.router = layer.router.proj.weight.detach().float()
        self.top_k = layer.router.top_k
        self.per_expert_scale = layer.router.per_expert_scale.detach().float()
        experts = layer.experts
        count, inner2, _ = experts.gate_up_proj.shape
        if count > DENSE_EXPERTS_MAX:
            raise ValueError(f"the fused stack runs experts densely; {count} experts is over {DENSE_EXPERTS_MAX}")
        self.experts, self.expert_inner = count, inner2 // 2
        self.experts_gate_up = make(experts.gate_up_proj.reshape(count * inner2, hidden))  # (E * 2I, H)
        self.experts_down = make(experts.down_proj.permute(1, 0, 2).reshape(hidden, count * self.expert_inner))
        self.post_mlp_norm = layer.post_feedforward_layernorm_1.weight.detach().float()
        self.post_experts_norm = layer.post_feedforward_layernorm_2.weight.detach().float()
        self.post_ff_norm = layer.post_feedforward_layernorm.weight.detach().float()
        self.scalar = layer.layer_scalar.detach().float()

    def project(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """x (b, T, H) -> q (b, h, T, d), k and v (b, kvh, T, d): normed, q and k rotated."""
        b, t, _ = x.shape
        h = _rms(x, self.eps) * self.input_norm
        heads = self.qkv(h).view(b, t, self.heads + 2 * self.kv_heads, self.head_dim)
        heads = _rms(heads, self.eps) * self.head_norm  # q, k and v norms in one
        qk = rotate(heads[:, :, : self.heads + self.kv_heads], cos, sin)
        q, k = qk.split([self.heads, self.kv_heads], dim=2)
        v = heads[:, :, self.heads + self.kv_heads :]
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

    def finish(self, x: torch.Tensor, attn: torch.Tensor, scalar: torch.Tensor) -> torch.Tensor:
        """The residual after attention (b, T, h * d) and the whole feed-forward half."""
        x = x + _rms(self.o_proj(attn), self.eps) * self.post_attn_norm
        shape = x.shape
        flat = x.reshape(-1, shape[-1])  # (N, H)
        r = _rms(flat, self.eps)
        gate, up = self.mlp_gate_up(r * self.pre_mlp).chunk(2, dim=-1)
        dense = _rms(self.mlp_down(F.gelu(gate, approximate="tanh") * up), self.eps) * self.post_mlp_norm
        # router: softmax over experts, top-k, renormalised, times each expert's scale
        probs = F.softmax(F.linear(r * self.pre_router, self.router), dim=-1, dtype=torch.float32)  # (N, E)
        weights, index = torch.topk(probs, self.top_k, dim=-1)
        weights = weights / weights.sum(-1, keepdim=True) * self.per_expert_scale[index]
        routed = torch.zeros_like(probs).scatter(1, index, weights)  # (N, E): 0 for unpicked experts
        both = self.experts_gate_up(r * self.pre_experts).view(-1, self.experts, 2, self.expert_inner)
        inner = F.gelu(both[:, :, 0], approximate="tanh") * both[:, :, 1] * routed[..., None]  # (N, E, I)
        moe = _rms(self.experts_down(inner.reshape(inner.shape[0], -1)), self.eps) * self.post_experts_norm
        ff = _rms(dense + moe, self.eps) * self.post_ff_norm
        return ((flat + ff) * scalar).view(shape)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """q (b, h, Tq, d) over k, v (b, kvh, Tk, d) -> (b, Tq, h * d). mask: (Tq, Tk) for a causal prompt,
        (b, 1, 1, Tk) for left-padded prompts, or None."""
        b, _, t, d = q.shape
        groups = self.heads // self.kv_heads
        q = q.reshape(b, self.kv_heads, groups * t, d)  # a kv head's query heads become more rows: no K/V copies
        if mask is not None and mask.dim() == 2:  # per-query masks repeat for each folded head
            mask = mask.repeat(groups, 1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)  # q/k norms replace 1/sqrt(d)
        return out.reshape(b, self.heads, t, d).transpose(1, 2).reshape(b, t, -1)


class FusedStack(nn.Module):
    def __init__(self, lean: LeanDiffusionGemma, int8: bool = False) -> None:
        super().__init__()
        if next(lean.parameters()).dtype != torch.float32:
            raise ValueError("the fused stack computes in float32; load the model as float32")
        if int8:
            from .int8 import Int8Linear as make
        else:
            make = _Float
        self.int8 = int8
        cfg = lean.text_config
        self.eps, self.hidden, self.vocab = cfg.rms_norm_eps, cfg.hidden_size, cfg.vocab_size
        self.window, self.softcap, self.layer_types = lean.window, lean.softcap, lean.layer_types
        self.rope_of = lean.rope  # (positions, dtype) -> {kind: (cos, sin)}
        stack = lean.model.decoder
        with torch.no_grad():
            # int8: the dense MLP stays float32; int8 there cost the bundled model 13 points of syntax-valid on
            # HumanEval single-line at 3 steps (its activations have outliers a per-row scale flattens), int8
            # everywhere else costs nothing measurable (benchmarks/results/quality_sxs.md)
            self.layers = nn.ModuleList(FusedLayer(layer, make, self.eps, make_mlp=_Float) for layer in stack.layers)
            self.encoder_scalars = [s.layer_scalar.detach().float() for s in lean.model.encoder.language_model.layers]
            self.embed = stack.embed_tokens.weight.detach()  # (V, H) float32: input embeddings and probs @ E
            self.embed_scale = torch.tensor(self.hidden ** 0.5, dtype=self.embed.dtype)
            self.head = make(self.embed)  # the tied output head
            # probs @ E for self-conditioning: an int8 copy of E transposed, or the float32 embedding itself
            self.soft_head = make(self.embed.t()) if int8 else None
            self.final_norm = stack.norm.weight.detach().float()
            sc = stack.self_conditioning
            self.sc_pre_norm = sc.pre_norm.weight.detach().float()
            self.sc_gate_up = make(torch.cat([sc.gate_proj.weight, sc.up_proj.weight]))
            self.sc_down = make(sc.down_proj.weight)

    # -- encoder ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, ids: torch.Tensor, positions: torch.Tensor,
               past: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Causal pass over one prompt's ids (1, T) at positions (1, T) after `past` (its first positions' K/V).
        Returns every layer's (K, V) (1, kvh, past + T, d): what `LeanDiffusionGemma.encode` returns as kv."""
        t = ids.shape[1]
        n_past = past[0][0].shape[2] if past else 0
        if n_past + t > self.window:
            raise ValueError(f"prompt of {n_past + t} tokens over the sliding window of {self.window}")
        mask = torch.ones(t, n_past + t, dtype=torch.bool).tril(n_past)  # (T, past + T): causal after the past
        x = F.embedding(ids, self.embed) * self.embed_scale
        rope = self.rope_of(positions, x.dtype)
        kv = []
        with scale_groups(1):  # int8: a token's K/V do not depend on the tokens encoded with it (cache reuse is exact)
            for i, layer in enumerate(self.layers):
                q, k, v = layer.project(x, *rope[self.layer_types[i]])
                if past:
                    k, v = torch.cat([past[i][0], k], dim=2), torch.cat([past[i][1], v], dim=2)
                kv.append((k, v))
                x = layer.finish(x, layer.attend(q, k, v, mask), self.encoder_scalars[i])
        return kv

    # -- decoder ---------------------------------------------------------------------------------------
    def canvas_kv(self, kv: list[tuple[torch.Tensor, torch.Tensor]], batch: int, canvas: int,
                  key_mask: torch.Tensor | None = None) -> CanvasKV:
        """Buffers for `batch` canvases of `canvas` slots over a prompt's kv (rows 1 or `batch`, P slots).
        key_mask (batch, P) marks real keys of left-padded prompts (None: all real)."""
        prompt = kv[0][0].shape[2]
        buffers = []
        for k, v in kv:
            shape = (batch, k.shape[1], prompt + canvas, k.shape[3])
            kb, vb = torch.empty(shape, dtype=k.dtype), torch.empty(shape, dtype=v.dtype)
            kb[:, :, :prompt], vb[:, :, :prompt] = k, v  # broadcast one prompt over every row
            buffers.append((kb, vb))
        mask = None
        if key_mask is not None and not bool(key_mask.all()):
            mask = torch.cat([key_mask.bool(), torch.ones(batch, canvas, dtype=torch.bool)], -1)[:, None, None]
        return CanvasKV(buffers, prompt, mask)

    @torch.no_grad()
    def soft_embeddings(self, probs: torch.Tensor) -> torch.Tensor:
        """Self-conditioning input from the previous step's probabilities (b, C, V) -> (b, C, H): probs @ E · √H."""
        if self.soft_head is None:
            return (probs @ self.embed) * self.embed_scale
        with scale_groups(probs.shape[1]):  # int8: per canvas row
            return self.soft_head(probs) * self.embed_scale

    @torch.no_grad()
    def token_embeddings(self, ids: torch.Tensor) -> torch.Tensor:
        """What `soft_embeddings` gives for a one-hot distribution on each id: (…) -> (…, H)."""
        return F.embedding(ids, self.embed) * self.embed_scale

    @torch.no_grad()
    def decode(self, canvas: torch.Tensor, positions: torch.Tensor, buffers: CanvasKV,
               soft: torch.Tensor | None = None, slots: torch.Tensor | None = None) -> torch.Tensor:
        """canvas (b, L), positions (b or 1, L) -> logits (b, C, V) float32 in the columns `slots` (C,) (None: all
        L). `soft` (b, C, H): the self-conditioning embeddings of those columns (`soft_embeddings`; None on the
        first step: no self-conditioning); every other slot conditions on its own token."""
        b, length = canvas.shape
        x = self.token_embeddings(canvas)
        if soft is not None:
            x = x + self._self_conditioning(canvas, soft, slots)
        x = _rms(x, self.eps)
        if buffers.rope is None or buffers.rope[0] is not positions:
            buffers.rope = (positions, self.rope_of(positions.expand(b, -1), x.dtype))
        rope = buffers.rope[1]
        start, last = buffers.prompt, len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            with scale_groups(x.shape[1]):  # int8: a canvas row's numbers do not depend on its batch mates
                q, k, v = layer.project(x, *rope[self.layer_types[i]])
            kb, vb = buffers.kv[i]
            kb[:, :, start:] = k  # in place: no per-layer concatenation of the prompt's K/V
            vb[:, :, start:] = v
            if slots is not None and i == last:  # past its K/V, the last layer matters only where logits are read
                q, x = q[:, :, slots], x[:, slots]
            with scale_groups(x.shape[1]):
                x = layer.finish(x, layer.attend(q, kb, vb, buffers.mask), layer.scalar)
        with scale_groups(x.shape[1]):
            logits = self.head(_rms(x, self.eps) * self.final_norm).float()
        return logits.div_(self.softcap).tanh_().mul_(self.softcap)

    def _self_conditioning(self, canvas: torch.Tensor, soft: torch.Tensor, slots: torch.Tensor | None) -> torch.Tensor:
        """What the self-conditioning MLP adds to the canvas embeddings (b, L, H). A slot outside `slots`
        conditions on its own token (a one-hot distribution), so the MLP runs once per distinct such token."""
        if slots is None:
            return self._self_conditioning_mlp(soft)
        ids, inverse = canvas.unique(return_inverse=True)  # (u,), (b, L)
        with scale_groups(1):  # int8: one token's row alone
            table = self._self_conditioning_mlp(self.token_embeddings(ids))  # (u, H)
        delta = table[inverse]  # (b, L, H)
        delta[:, slots] = self._self_conditioning_mlp(soft)
        return delta

    def _self_conditioning_mlp(self, soft: torch.Tensor) -> torch.Tensor:
        with scale_groups(soft.shape[-2] if soft.dim() == 3 else 1):
            gate, up = self.sc_gate_up(_rms(soft, self.eps) * self.sc_pre_norm).chunk(2, dim=-1)
            return self.sc_down(F.gelu(gate, approximate="tanh") * up)


__all__ = ["FusedStack", "FusedLayer", "CanvasKV"]
