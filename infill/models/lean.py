"""A lean DiffusionGemma text stack: the weights and logits of transformers' class, with fewer ops.

`DiffusionGemmaForBlockDiffusion` pays for its generality on every call: cache objects, mask builders,
output recorders, a Python loop over experts, kwargs plumbing. Training a 20M model and decoding a
16-slot canvas on a CPU are both dominated by that overhead, not by arithmetic. This module computes
the same function with plain tensors:

- the same parameter names as the class (`model.decoder.…`, plus the encoder's own `layer_scalar`
  buffers), so `from_hf` / `to_hf` move weights both ways and checkpoints stay loadable by
  `from_pretrained`; encoder and decoder share every text weight, as in the class;
- the encoder returns each layer's (K, V) as plain tensors; the decoder attends to them plus its own
  canvas, bidirectionally, without writing them;
- small expert counts run densely (every expert on every token, weighted by the router; unselected
  experts get weight 0): no gather/scatter, static shapes, friendly to `torch.compile`.

Tests check logits against the class within 1e-5 (fp32) on random weights, with padding, with and
without self-conditioning. Prompt + canvas must fit the sliding window (the bundled model's is 2048;
longer prompts need the class, which crops sliding layers' caches).

    lean = LeanDiffusionGemma.from_hf(model)                 # copies the text weights
    enc = lean.encode(ids, positions, key_mask)              # enc.kv: per layer (K, V)
    logits = lean.decode(canvas, canvas_positions, enc.kv, key_mask, self_conditioning_logits)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# Up to this many experts run densely (all experts on all tokens); more take the sparse path.
DENSE_EXPERTS_MAX = 8


class RMSNorm(nn.Module):
    """Gemma's RMSNorm, computed in float32 like the class (x * mean(x²)^-½ * w)."""

    def __init__(self, dim: int, eps: float, with_scale: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if with_scale else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # one fused kernel instead of seven ops: a decoder step on a CPU runs ~100 of these norms
        weight = self.weight.float() if self.weight is not None else None
        return F.rms_norm(x.float(), x.shape[-1:], weight, self.eps).type_as(x)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE on (B, T, heads, d) with cos/sin (B, T, d)."""
    cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class Attention(nn.Module):
    def __init__(self, hidden: int, heads: int, kv_heads: int, head_dim: int, sliding: bool, eps: float) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.q_proj = nn.Linear(hidden, heads * head_dim, bias=False)
        self.k_proj = nn.Linear(hidden, kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(hidden, kv_heads * head_dim, bias=False) if sliding else None  # full layers: V = K
        self.o_proj = nn.Linear(heads * head_dim, hidden, bias=False)
        self.q_norm = RMSNorm(head_dim, eps)
        self.k_norm = RMSNorm(head_dim, eps)
        self.v_norm = RMSNorm(head_dim, eps, with_scale=False)

    def qkv(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """x (B, T, H) -> q (B, heads, T, d), k and v (B, kv_heads, T, d), as the class caches them."""
        b, t, _ = x.shape
        q = rotate(self.q_norm(self.q_proj(x).view(b, t, self.heads, self.head_dim)), cos, sin)
        k_raw = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim) if self.v_proj is not None else k_raw
        k = rotate(self.k_norm(k_raw), cos, sin)
        v = self.v_norm(v)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
               causal: bool = False) -> torch.Tensor:
        """q (B, h, Tq, d) over k, v (B, kvh, Tk, d); mask (B, 1, Tq, Tk) bool or None -> (B, Tq, h * d)."""
        groups = self.heads // self.kv_heads
        b, _, t, d = q.shape
        fold = groups > 1 and not causal and (mask is None or mask.shape[-2] == 1)
        if fold:  # every query row sees the same keys: a kv head's query heads become more rows, no K/V copies
            q = q.reshape(b, self.kv_heads, groups * t, d)
        elif groups > 1:  # grouped-query attention: each kv head serves `groups` query heads
            k = k.repeat_interleave(groups, dim=1)
            v = v.repeat_interleave(groups, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None,
                                             scale=1.0)  # q/k norms replace the 1/sqrt(d) scaling
        out = out.reshape(b, self.heads, t, d)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, -1))


class MLP(nn.Module):
    def __init__(self, hidden: int, inner: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden, inner, bias=False)
        self.up_proj = nn.Linear(hidden, inner, bias=False)
        self.down_proj = nn.Linear(inner, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.gelu(self.gate_proj(x), approximate="tanh") * self.up_proj(x))


class Router(nn.Module):
    def __init__(self, hidden: int, experts: int, top_k: int, eps: float) -> None:
        super().__init__()
        self.top_k = top_k
        self.norm = RMSNorm(hidden, eps, with_scale=False)
        self.proj = nn.Linear(hidden, experts, bias=False)
        self.scale = nn.Parameter(torch.ones(hidden))
        self.per_expert_scale = nn.Parameter(torch.ones(experts))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, H) -> top-k weights (N, k) float32 and expert indices (N, k)."""
        h = self.norm(x) * self.scale * x.shape[-1] ** -0.5
        probs = F.softmax(self.proj(h), dim=-1, dtype=torch.float32)  # (N, E)
        weights, index = torch.topk(probs, self.top_k, dim=-1)
        weights = weights / weights.sum(-1, keepdim=True)
        return weights * self.per_expert_scale[index], index


class Experts(nn.Module):
    def __init__(self, hidden: int, inner: int, experts: int) -> None:
        super().__init__()
        self.gate_up_proj = nn.Parameter(torch.empty(experts, 2 * inner, hidden))
        self.down_proj = nn.Parameter(torch.empty(experts, hidden, inner))

    def forward(self, x: torch.Tensor, weights: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """x (N, H), weights/index (N, k) -> (N, H)."""
        experts = self.gate_up_proj.shape[0]
        if experts <= DENSE_EXPERTS_MAX:
            dense = torch.zeros(x.shape[0], experts, dtype=weights.dtype, device=x.device)
            dense = dense.scatter(1, index, weights)  # (N, E): 0 for experts the router did not pick
            gate, up = torch.matmul(x[None], self.gate_up_proj.transpose(1, 2)).chunk(2, dim=-1)  # (E, N, I) each
            inner = F.gelu(gate, approximate="tanh") * up
            out = torch.matmul(inner, self.down_proj.transpose(1, 2))  # (E, N, H)
            return (out * dense.t()[..., None]).sum(0).to(x.dtype)
        if hasattr(F, "grouped_mm"):
            return self.grouped(x, weights, index)
        out = torch.zeros_like(x)
        for e in index.unique().tolist():
            token, slot = torch.where(index == e)
            gate, up = F.linear(x[token], self.gate_up_proj[e]).chunk(2, dim=-1)
            y = F.linear(F.gelu(gate, approximate="tanh") * up, self.down_proj[e])
            out.index_add_(0, token, (y * weights[token, slot, None]).to(out.dtype))
        return out

    def grouped(self, x: torch.Tensor, weights: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Many experts: (token, expert) pairs sorted by expert, two grouped matmuls, no host sync
        (so a CUDA graph can hold it). x (N, H), weights/index (N, k) -> (N, H)."""
        experts, k = self.gate_up_proj.shape[0], index.shape[1]
        flat = index.reshape(-1)  # (S,) S = N * k pairs
        order = torch.argsort(flat, stable=True)
        token = order // k  # (S,) the token of each sorted pair
        counts = torch.histc(flat.float() if x.device.type == "cpu" else flat.int(), bins=experts, min=0,
                             max=experts - 1)  # histc, not bincount: fixed output size, graph-safe
        offsets = torch.cumsum(counts, 0, dtype=torch.int32)  # (E,) end of each expert's rows
        w_dtype = self.gate_up_proj.dtype
        pairs = x[token].to(w_dtype)  # (S, H)
        gate, up = F.grouped_mm(pairs, self.gate_up_proj.transpose(1, 2), offs=offsets).chunk(2, dim=-1)
        y = F.grouped_mm(F.gelu(gate, approximate="tanh") * up, self.down_proj.transpose(1, 2), offs=offsets)
        y = y * weights.reshape(-1)[order, None]  # (S, H), float32 router weights
        return torch.zeros_like(x).index_add_(0, token, y.to(x.dtype))


class Layer(nn.Module):
    """One Gemma-4 layer: attention, then a dense MLP and the experts side by side."""

    def __init__(self, cfg, layer: int) -> None:
        super().__init__()
        sliding = cfg.layer_types[layer] == "sliding_attention"
        own = cfg.per_layer_config[layer]
        hidden, eps = cfg.hidden_size, cfg.rms_norm_eps
        self.self_attn = Attention(hidden, cfg.num_attention_heads, own.num_key_value_heads, own.head_dim,
                                   sliding, eps)
        self.mlp = MLP(hidden, cfg.intermediate_size)
        self.input_layernorm = RMSNorm(hidden, eps)
        self.post_attention_layernorm = RMSNorm(hidden, eps)
        self.pre_feedforward_layernorm = RMSNorm(hidden, eps)
        self.post_feedforward_layernorm = RMSNorm(hidden, eps)
        self.register_buffer("layer_scalar", torch.ones(1))
        self.router = Router(hidden, cfg.num_experts, cfg.top_k_experts, eps)
        self.experts = Experts(hidden, cfg.moe_intermediate_size, cfg.num_experts)
        self.post_feedforward_layernorm_1 = RMSNorm(hidden, eps)
        self.post_feedforward_layernorm_2 = RMSNorm(hidden, eps)
        self.pre_feedforward_layernorm_2 = RMSNorm(hidden, eps)

    def feed_forward(self, x: torch.Tensor, scalar: torch.Tensor) -> torch.Tensor:
        """The MLP and expert half of the layer on the post-attention residual x (B, T, H)."""
        dense = self.post_feedforward_layernorm_1(self.mlp(self.pre_feedforward_layernorm(x)))
        flat = x.reshape(-1, x.shape[-1])
        weights, index = self.router(flat)
        moe = self.experts(self.pre_feedforward_layernorm_2(flat), weights, index).reshape(x.shape)
        moe = self.post_feedforward_layernorm_2(moe)
        return (x + self.post_feedforward_layernorm(dense + moe)) * scalar


class Stack(nn.Module):
    """The decoder's text weights (which the encoder shares), under the class's names."""

    def __init__(self, cfg) -> None:
        super().__init__()
        hidden, eps = cfg.hidden_size, cfg.rms_norm_eps
        self.embed_tokens = nn.Embedding(cfg.vocab_size, hidden, padding_idx=cfg.pad_token_id)
        self.layers = nn.ModuleList(Layer(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(hidden, eps)
        self.self_conditioning = SelfConditioning(hidden, cfg.intermediate_size, eps)


class SelfConditioning(nn.Module):
    def __init__(self, hidden: int, inner: int, eps: float) -> None:
        super().__init__()
        self.pre_norm = RMSNorm(hidden, eps)
        self.post_norm = RMSNorm(hidden, eps, with_scale=False)
        self.gate_proj = nn.Linear(hidden, inner, bias=False)
        self.up_proj = nn.Linear(hidden, inner, bias=False)
        self.down_proj = nn.Linear(inner, hidden, bias=False)

    def forward(self, embeds: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
        h = self.pre_norm(soft)
        return self.post_norm(embeds + self.down_proj(F.gelu(self.gate_proj(h), approximate="tanh") * self.up_proj(h)))


class _EncoderScalars(nn.Module):
    """Holds `model.encoder.language_model.layers.N.layer_scalar`: the one text tensor the class does not tie."""

    def __init__(self, layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_Scalar() for _ in range(layers))


class _Scalar(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("layer_scalar", torch.ones(1))


@dataclass
class Encoded:
    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per layer: K, V (B, kv_heads, T, d)
    hidden: torch.Tensor  # (B, T, H) after the final norm (for the next-token loss)


class LeanDiffusionGemma(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        cfg = config.get_text_config(decoder=True)
        self.config, self.text_config = config, cfg
        self.layer_types = list(cfg.layer_types)
        self.softcap = cfg.final_logit_softcapping
        self.window = cfg.sliding_window
        self.model = nn.Module()
        self.model.decoder = Stack(cfg)
        self.model.encoder = nn.Module()
        self.model.encoder.language_model = _EncoderScalars(cfg.num_hidden_layers)
        self._init_rope()

    def _init_rope(self) -> None:
        """RoPE frequencies computed as the class computes them (`checkpoint.rope_frequencies`), on the CPU."""
        from .checkpoint import rope_frequencies

        device = next(self.parameters()).device
        device = torch.device("cpu") if device.type == "meta" else device
        self._rope_scaling: dict[str, float] = {}
        self._inv_freq_fp32: dict[str, torch.Tensor] = {}
        for kind in sorted(set(self.layer_types)):
            inv, scaling = rope_frequencies(self.text_config, kind)
            self._inv_freq_fp32[kind] = inv
            self.register_buffer(f"_inv_freq_{kind}", inv.to(device), persistent=False)
            self._rope_scaling[kind] = scaling

    @classmethod
    def empty(cls, config, device: torch.device | str, dtype: torch.dtype, seed: int = 0,
              std: float = 0.02) -> LeanDiffusionGemma:
        """Random weights built straight on `device` in `dtype`: one copy, never a float32 or CPU detour.

        What the 26B-A4B shape needs to fit one GPU (the transformers class builds encoder and decoder
        weights apart before tying them: twice the memory at its peak). Matrices ~ N(0, std), norms and
        scales 1: speed benchmarks, not a model.
        """
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            with torch.device("meta"):
                lean = cls(config)
        finally:
            torch.set_default_dtype(previous)
        lean = lean.to_empty(device=device)
        g = torch.Generator(device=device).manual_seed(seed)
        with torch.no_grad():
            for p in lean.parameters():
                if p.ndim >= 2:
                    p.normal_(0.0, std, generator=g)
                else:
                    p.fill_(1.0)
            for name, b in lean.named_buffers():
                if name.endswith("layer_scalar"):
                    b.fill_(1.0)
        lean._init_rope()
        return lean.eval()

    def _apply(self, fn, recurse=True):
        """Moves and casts like any module, but RoPE frequencies stay float32 (a bf16 cast would blur them)."""
        out = super()._apply(fn, recurse)
        for kind, inv in self._inv_freq_fp32.items():
            name = f"_inv_freq_{kind}"
            self._buffers[name] = inv.to(self._buffers[name].device)
        return out

    # -- weights ---------------------------------------------------------------------------------------
    @classmethod
    def from_hf(cls, model) -> LeanDiffusionGemma:
        """A lean copy of a DiffusionGemmaForBlockDiffusion's text weights (same device and dtype)."""
        p = next(model.parameters())
        lean = cls(model.config).to(device=p.device, dtype=p.dtype)
        state = model.state_dict()
        lean.load_state_dict({k: state[k] for k in lean.state_dict()}, strict=True)
        return lean.train(model.training)

    def to_hf(self, model) -> None:
        """Write these weights into a DiffusionGemmaForBlockDiffusion (its tied encoder follows)."""
        missing = set(self.state_dict()) - set(model.state_dict())
        assert not missing, f"not a checkpoint of this shape: {sorted(missing)[:3]}"
        with torch.no_grad():
            target = model.state_dict()
            for k, v in self.state_dict().items():
                target[k].copy_(v)

    @property
    def embed(self) -> torch.Tensor:
        return self.model.decoder.embed_tokens.weight

    # -- pieces ----------------------------------------------------------------------------------------
    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        w = self.embed
        return F.embedding(ids, w) * torch.tensor(self.text_config.hidden_size ** 0.5, dtype=w.dtype)

    def rope(self, positions: torch.Tensor, dtype: torch.dtype) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        out = {}
        for kind, scaling in self._rope_scaling.items():
            inv = getattr(self, f"_inv_freq_{kind}")
            freqs = positions[..., None].float() * inv.float()  # (B, T, d/2)
            emb = torch.cat((freqs, freqs), dim=-1)
            out[kind] = ((emb.cos() * scaling).to(dtype), (emb.sin() * scaling).to(dtype))
        return out

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(…, H) -> softcapped float32 logits (…, V) through the tied head."""
        out = F.linear(hidden, self.embed).float()
        return torch.tanh(out / self.softcap) * self.softcap

    # -- encoder ---------------------------------------------------------------------------------------
    def encode(self, ids: torch.Tensor, positions: torch.Tensor, key_mask: torch.Tensor | None = None,
               past: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> Encoded:
        """Causal pass over ids (B, T) at positions (B, T).

        key_mask (B, past + T) bool marks real (non-pad) tokens; None: no padding. `past` holds the (K, V)
        of earlier positions (incremental prefill); the returned kv includes them.
        """
        x = self.embed_ids(ids)
        rope = self.rope(positions, x.dtype)
        t = ids.shape[1]
        n_past = past[0][0].shape[2] if past else 0
        mask = None
        if key_mask is not None or n_past:
            q_pos = torch.arange(n_past, n_past + t, device=ids.device)
            k_pos = torch.arange(n_past + t, device=ids.device)
            allowed = (k_pos[None, :] <= q_pos[:, None])[None]  # (1, T, K) causal
            if key_mask is not None:
                allowed = allowed & key_mask[:, None, :].bool()
                allowed = allowed | (k_pos[None, :] == q_pos[:, None])[None]  # pad queries see themselves: no NaN
            mask = allowed[:, None]  # (B, 1, T, K)
        assert n_past + t <= self.window, "prompt longer than the sliding window: use the transformers class"
        kv = []
        scalars = self.model.encoder.language_model.layers
        for i, layer in enumerate(self.model.decoder.layers):
            h = layer.input_layernorm(x)
            q, k, v = layer.self_attn.qkv(h, *rope[self.layer_types[i]])
            if past:
                k, v = torch.cat([past[i][0], k], dim=2), torch.cat([past[i][1], v], dim=2)
            kv.append((k, v))
            attn = layer.self_attn.attend(q, k, v, mask, causal=True)
            x = x + layer.post_attention_layernorm(attn)
            x = layer.feed_forward(x, scalars[i].layer_scalar)
        return Encoded(kv=kv, hidden=self.model.decoder.norm(x))

    # -- decoder ---------------------------------------------------------------------------------------
    def decode(self, canvas: torch.Tensor, positions: torch.Tensor, kv: list[tuple[torch.Tensor, torch.Tensor]],
               key_mask: torch.Tensor | None = None, self_conditioning_logits: torch.Tensor | None = None,
               self_conditioning_mask: torch.Tensor | None = None, soft_embeddings: torch.Tensor | None = None,
               hidden_only: bool = False) -> torch.Tensor:
        """Bidirectional pass over canvas (B, L) against the prompt's kv -> logits (B, L, V) float32.

        key_mask (B, P) bool marks real prompt tokens (None: all real). kv tensors may have batch 1 for a
        canvas batch B (one prompt, several canvases). `soft_embeddings` (B, L, H) replaces the
        softmax(logits) @ E product when the caller already has probabilities.
        """
        stack = self.model.decoder
        x = self.embed_ids(canvas)
        scale = torch.tensor(self.text_config.hidden_size ** 0.5, dtype=x.dtype)
        if soft_embeddings is None and self_conditioning_logits is not None:
            probs = self_conditioning_logits.softmax(dim=-1, dtype=torch.float32).to(self.embed.dtype)
            soft_embeddings = (probs @ self.embed) * scale
        if soft_embeddings is None:
            soft_embeddings = torch.zeros_like(x)
        elif self_conditioning_mask is not None:
            soft_embeddings = soft_embeddings * self_conditioning_mask.to(soft_embeddings.dtype)[:, None, None]
        x = stack.self_conditioning(x, soft_embeddings)
        rope = self.rope(positions, x.dtype)
        b, length = canvas.shape
        mask = None
        if key_mask is not None:
            full = torch.cat([key_mask.bool(), torch.ones(key_mask.shape[0], length, dtype=torch.bool,
                                                          device=canvas.device)], dim=-1)
            mask = full[:, None, None, :]  # (B, 1, 1, P + L): every canvas slot sees all real keys
        for i, layer in enumerate(stack.layers):
            h = layer.input_layernorm(x)
            q, k, v = layer.self_attn.qkv(h, *rope[self.layer_types[i]])
            pk, pv = kv[i]
            if pk.shape[0] != b:
                pk, pv = pk.expand(b, *pk.shape[1:]), pv.expand(b, *pv.shape[1:])
            attn = layer.self_attn.attend(q, torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2), mask)
            x = x + layer.post_attention_layernorm(attn)
            x = layer.feed_forward(x, layer.layer_scalar)
        x = stack.norm(x)
        return x if hidden_only else self.logits(x)


__all__ = ["LeanDiffusionGemma", "Encoded", "DENSE_EXPERTS_MAX"]
