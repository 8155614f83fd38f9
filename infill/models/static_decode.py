"""A decoder step over preallocated K/V: no per-layer concatenation, static shapes, capturable as a CUDA graph.

`LeanDiffusionGemma.decode` (like transformers' cache path) concatenates the whole prompt K/V with the
canvas K/V in every layer at every denoising step. Here each layer owns one buffer

    K, V (B, kv_heads, P + L, d):   [ prompt keys | pad ... ]  [ canvas keys ]
                                      0 .. n-1        n .. P-1   P .. P+L-1

filled once per prompt (`load`); a step writes the canvas K/V into the last L slots in place and attends
over the whole buffer with a fixed key mask (pads masked). Every tensor a step touches keeps its address
and shape, so on CUDA the step is captured once as a graph (`capture`) and replayed with one launch;
the host never looks at the result inside the loop.

    dec = StaticDecoder(lean, batch=4, prompt_capacity=512, canvas=32)
    dec.load(enc.kv, prompt_len=enc_len)          # rows share one prompt, or one prompt per row
    logits = dec.step(canvas, positions)          # (B, L, V) float32, like lean.decode
"""

from __future__ import annotations

import torch

from .lean import LeanDiffusionGemma


class StaticDecoder:
    def __init__(self, lean: LeanDiffusionGemma, batch: int, prompt_capacity: int, canvas: int,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        p = next(lean.parameters())
        self.lean, self.batch, self.capacity, self.canvas = lean, batch, prompt_capacity, canvas
        self.device = torch.device(device) if device is not None else p.device
        self.dtype = dtype or p.dtype
        self.kv: list[tuple[torch.Tensor, torch.Tensor]] = []
        for layer in lean.model.decoder.layers:
            attn = layer.self_attn
            shape = (batch, attn.kv_heads, prompt_capacity + canvas, attn.head_dim)
            self.kv.append((torch.zeros(shape, device=self.device, dtype=self.dtype),
                            torch.zeros(shape, device=self.device, dtype=self.dtype)))
        self.key_mask = torch.zeros(batch, 1, 1, prompt_capacity + canvas, dtype=torch.bool, device=self.device)
        self.key_mask[..., prompt_capacity:] = True  # canvas slots always see each other
        # Static inputs and output (what a captured graph reads and writes).
        self.ids = torch.zeros(batch, canvas, dtype=torch.long, device=self.device)
        self.positions = torch.zeros(batch, canvas, dtype=torch.long, device=self.device)
        self.soft = torch.zeros(batch, canvas, lean.text_config.hidden_size, dtype=self.dtype, device=self.device)
        self.out: torch.Tensor | None = None
        self.graph = None

    # -- prompt ----------------------------------------------------------------------------------------
    def load(self, kv: list[tuple[torch.Tensor, torch.Tensor]], prompt_len: torch.Tensor | int,
             key_mask: torch.Tensor | None = None) -> None:
        """Copy the prompt's per-layer (K, V) (rows 1 or B, kv_heads, n, d) into the buffers.

        prompt_len (B,) or int: real tokens per row, taken from the right of a left-padded prompt, or all of
        it; key_mask (B, n) marks real tokens of a left-padded batch (default: all real)."""
        n = kv[0][0].shape[2]
        if n > self.capacity:
            raise ValueError(f"prompt of {n} tokens over this decoder's capacity of {self.capacity}")
        with torch.no_grad():
            for (k_buf, v_buf), (k, v) in zip(self.kv, kv, strict=True):
                k_buf[:, :, :n] = k  # broadcast a single prompt over every row
                v_buf[:, :, :n] = v
                k_buf[:, :, n : self.capacity] = 0
                v_buf[:, :, n : self.capacity] = 0
            real = torch.ones(self.batch, n, dtype=torch.bool, device=self.device) if key_mask is None \
                else key_mask.to(self.device, torch.bool).expand(self.batch, n)
            self.key_mask[:, 0, 0, :n] = real
            self.key_mask[:, 0, 0, n : self.capacity] = False

    # -- one step --------------------------------------------------------------------------------------
    def _forward(self) -> torch.Tensor:
        lean = self.lean
        stack = lean.model.decoder
        x = stack.self_conditioning(lean.embed_ids(self.ids), self.soft)
        rope = lean.rope(self.positions, x.dtype)
        start = self.capacity
        for i, layer in enumerate(stack.layers):
            h = layer.input_layernorm(x)
            q, k, v = layer.self_attn.qkv(h, *rope[lean.layer_types[i]])
            k_buf, v_buf = self.kv[i]
            k_buf[:, :, start:] = k  # in place: the buffer keeps its address for a captured graph
            v_buf[:, :, start:] = v
            attn = layer.self_attn.attend(q, k_buf, v_buf, self.key_mask)
            x = x + layer.post_attention_layernorm(attn)
            x = layer.feed_forward(x, layer.layer_scalar)
        return lean.logits(stack.norm(x))

    def _set_inputs(self, canvas: torch.Tensor, positions: torch.Tensor,
                    self_conditioning_logits: torch.Tensor | None, soft_embeddings: torch.Tensor | None) -> None:
        b = canvas.shape[0]
        assert b == self.batch and canvas.shape[1] == self.canvas, "static shapes: one decoder per (batch, canvas)"
        self.ids.copy_(canvas)
        self.positions.copy_(positions.expand(b, -1))
        if soft_embeddings is None and self_conditioning_logits is not None:
            lean = self.lean
            probs = self_conditioning_logits.softmax(dim=-1, dtype=torch.float32).to(lean.embed.dtype)
            scale = torch.tensor(lean.text_config.hidden_size ** 0.5, dtype=lean.embed.dtype)
            soft_embeddings = (probs @ lean.embed) * scale
        if soft_embeddings is None:
            self.soft.zero_()
        else:
            self.soft.copy_(soft_embeddings)

    @torch.no_grad()
    def step(self, canvas: torch.Tensor, positions: torch.Tensor, self_conditioning_logits: torch.Tensor | None = None,
             soft_embeddings: torch.Tensor | None = None) -> torch.Tensor:
        """canvas (B, L), positions (B or 1, L) -> logits (B, L, V) float32 (a view of a static buffer when captured)."""
        self._set_inputs(canvas, positions, self_conditioning_logits, soft_embeddings)
        if self.graph is not None:
            self.graph.replay()
            return self.out
        return self._forward()

    @torch.no_grad()
    def capture(self, warmup: int = 2) -> bool:
        """Capture the step as a CUDA graph (CUDA only; a no-op elsewhere). Returns whether it did."""
        if self.device.type != "cuda":
            return False
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(warmup):  # kernels pick their algorithms outside the capture
                self._forward()
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.out = self._forward()
        self.graph = graph
        return True


__all__ = ["StaticDecoder"]
