"""DiffusionGemma checkpoints: the lean fused stack where the checkpoint fits it, transformers' class otherwise.

The same class serves the released 26B-A4B checkpoint and the project's own small model. The encoder
(causal) prefills the prompt into a KV cache once; the decoder (bidirectional) denoises canvases
against it without changing it, so one cache serves every step and every candidate canvas.

Two ways to run it, one backend protocol:
- `FusedBackend` (`fused.FusedStack`): on a CPU, float32 or int8 matmuls, when prompt + canvas fit the
  sliding window (the small model: always). Loaded from the safetensors files without importing
  transformers' modeling code; a decoder step writes the canvas K/V into preallocated buffers.
- `DiffusionGemmaBackend`: transformers' `DiffusionGemmaForBlockDiffusion` (GPUs, bitsandbytes, sliding
  windows shorter than prompt + canvas, any checkpoint the fused stack cannot take).

While a user types, consecutive prompts share a long prefix (suffix-first prompts change only at the
end), so `prefill` keeps a few recent caches and re-encodes only from the first changed token.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from pathlib import Path

import torch

from ..errors import ModelLoadError
from .base import CacheStats, LoadOptions, PromptState, placement
from .fused import FusedStack
from .presets import RANDOM_INIT_MARKER
from .tokenizer import HFTokenizer, special_ids

# The released instruction model ends its turn with <end_of_turn> (id 106) as well as <eos>.
CHAT_END_TOKENS = ("<end_of_turn>", "<turn|>")


BNB_KINDS = ("4bit", "8bit")  # bitsandbytes quantization, through transformers' class on a GPU

# int8 matmuls on the CPU by default (`--quantize none` turns them off): see README, "int8 on the CPU".
CPU_INT8_DEFAULT = True

# Noise kinds a DiffusionGemma-class checkpoint may be trained with (config.json "infill_noise"; the
# released 26B has none: uniform-state). The engine's sampler follows it.
NOISE_KINDS = ("uniform", "mask")


class DiffusionGemmaBackend:

    def __init__(self, model, tokenizer, model_id: str, cache_entries: int = 4) -> None:
        self.model = model.eval()
        self.hf_tokenizer = tokenizer
        self._setup(HFTokenizer(tokenizer), model.config, model_id, next(model.parameters()).device,
                    next(model.parameters()).dtype, cache_entries)

    def _setup(self, tokenizer, config, model_id: str, device: torch.device, dtype: torch.dtype,
               cache_entries: int) -> None:
        """What both ways of running the checkpoint share: ids, noise kind, limits, the prompt caches."""
        self.tokenizer = tokenizer
        self.model_id = model_id
        extra_eos = tuple(i for n in CHAT_END_TOKENS if (i := self.tokenizer.token_id(n)) is not None)
        self.ids = special_ids(self.tokenizer, extra_eos)
        self.noise = getattr(config, "infill_noise", None) or "uniform"
        if self.noise not in NOISE_KINDS:
            raise ModelLoadError(f"{model_id!r} says it was trained with {self.noise!r} noise; this version knows "
                                 f"{', '.join(NOISE_KINDS)}")
        if self.noise == "mask" and self.ids.mask is None:
            raise ModelLoadError(f"{model_id!r} was trained with mask noise but its tokenizer has no <mask> token")
        self.prompt_format = "fim" if self.ids.fim_middle is not None else "chat"
        text_cfg = config.get_text_config(decoder=True)
        self.text_config = text_cfg
        self.vocab_size = text_cfg.vocab_size
        self.device, self.dtype = device, dtype
        self.cache_entries = cache_entries
        self.limits = _trained_limits(getattr(config, "_name_or_path", ""))
        # The canvas lengths the checkpoint was trained on: a canvas row is its free slots, then clamped padding up
        # to the smallest of these that holds it, as in training (the bundled model saw only 128-slot canvases;
        # on shorter ones it writes noise). The released checkpoint: config.canvas_length (256).
        trained = self.limits.get("buckets") or (getattr(config, "canvas_length", None),)
        self.canvas_buckets: tuple[int, ...] = tuple(sorted(int(b) for b in trained if b))
        self._caches: OrderedDict[tuple[int, ...], object] = OrderedDict()
        self.cache_stats = CacheStats()

    # -- loading -------------------------------------------------------------------------------------
    @classmethod
    def load(cls, model_id: str, options: LoadOptions = LoadOptions()) -> DiffusionGemmaBackend:
        """The fused stack when the checkpoint fits it (`fused_fits`), else transformers' class."""
        device, dtype = placement(options)
        path = Path(model_id)
        local = path.is_dir()
        if not local and ("/" not in model_id or model_id.startswith((".", "/"))):
            raise ModelLoadError(f"model {model_id!r} is not a directory; give a checkpoint directory or a hub id "
                                 "that is already in the local Hugging Face cache")
        why_not = fused_fits(path, options, device, dtype)
        if why_not is None:
            return FusedBackend.load(path, options)
        if options.stack == "fused":
            raise ModelLoadError(f"the fused stack cannot run {model_id!r}: {why_not}")
        if options.quantize == "int8":
            raise ModelLoadError(f"--quantize int8 runs on the fused stack, which cannot run {model_id!r}: {why_not}")
        return cls._load_class(model_id, options, device, dtype)

    @classmethod
    def _load_class(cls, model_id: str, options: LoadOptions, device: torch.device,
                    dtype: torch.dtype) -> DiffusionGemmaBackend:
        from transformers import AutoTokenizer, DiffusionGemmaConfig, DiffusionGemmaForBlockDiffusion

        path = Path(model_id)
        local = path.is_dir()
        try:
            tokenizer = AutoTokenizer.from_pretrained(model_id, local_files_only=True)
            if local and (path / RANDOM_INIT_MARKER).exists():
                config = DiffusionGemmaConfig.from_pretrained(model_id)
                torch.manual_seed(json.loads((path / RANDOM_INIT_MARKER).read_text()).get("seed", 0))
                with torch.device(device):
                    model = DiffusionGemmaForBlockDiffusion(config).to(dtype)
            else:
                kwargs = dict(dtype=dtype, local_files_only=True)
                bnb = options.quantize if options.quantize in BNB_KINDS else None
                if bnb:
                    kwargs["quantization_config"] = _bnb_config(bnb, device)
                    kwargs["device_map"] = {"": device.index or 0}
                model = DiffusionGemmaForBlockDiffusion.from_pretrained(model_id, **kwargs)
                if not bnb:
                    model = model.to(device)
        except ModelLoadError:
            raise
        except (OSError, ValueError, KeyError, RuntimeError, ImportError, TypeError) as exc:
            raise ModelLoadError(f"could not load DiffusionGemma checkpoint {model_id!r}: {exc}") from exc
        return cls(model, tokenizer, model_id)

    def describe(self) -> dict:
        params = sum(p.numel() for p in self.model.parameters())
        return {"model": self.model_id, "backend": "diffusiongemma", "parameters": params,
                "device": str(self.device), "dtype": str(self.dtype).removeprefix("torch."),
                "prompt_format": self.prompt_format, "noise": self.noise}

    # -- encoder ---------------------------------------------------------------------------------------
    def _new_cache(self):
        from transformers.cache_utils import DynamicCache

        return DynamicCache(config=self.text_config)

    def _reusable(self, ids: tuple[int, ...]) -> tuple[object | None, int]:
        """The cached prompt sharing the longest prefix with `ids`, and that prefix's length."""
        if ids in self._caches:
            self._caches.move_to_end(ids)
            return self._caches[ids], len(ids)
        best, best_len = None, 0
        for key, cache in self._caches.items():
            n = _common_prefix(key, ids)
            if n > best_len and self._croppable(cache, n):
                best, best_len = (key, cache), n
        if best is None:
            return None, 0
        self._caches.move_to_end(best[0])
        return best[1], best_len

    @torch.no_grad()
    def prefill(self, prompt) -> PromptState:
        ids = tuple(prompt.encoder_ids)
        started = time.perf_counter()
        base, reused = self._reusable(ids)
        # the same prompt again: the decoder never writes the cache, share it
        cache = base if reused == len(ids) else self._extend(base, reused, ids)
        self._caches[ids] = cache
        while len(self._caches) > self.cache_entries:
            self._caches.popitem(last=False)
        stats = self.cache_stats
        stats.prefills += 1
        stats.hits += reused > 0
        stats.reused_tokens += reused
        stats.computed_tokens += len(ids) - reused
        stats.seconds += time.perf_counter() - started
        return PromptState(prompt=prompt, position=len(ids), payload=cache, reused_tokens=reused,
                           computed_tokens=len(ids) - reused)

    def _extend(self, base, reused: int, ids: tuple[int, ...]):
        """A cache of `ids`: the first `reused` positions of `base` (None: nothing reused), the rest encoded."""
        cache = _prefix_copy(base, reused, self._new_cache()) if base is not None else self._new_cache()
        todo = torch.tensor([ids[reused:]], device=self.device)
        positions = torch.arange(reused, len(ids), device=self.device)[None]
        self.model.model.encoder(input_ids=todo, cache=cache, position_ids=positions)
        return cache

    def _croppable(self, cache, n: int) -> bool:
        return _croppable(cache, n)

    def clear_cache(self) -> None:
        self._caches.clear()

    # -- decoder ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def denoise(self, state: PromptState, canvas: torch.Tensor, self_conditioning: torch.Tensor | None,
                rows: torch.Tensor | None = None, slots: torch.Tensor | None = None) -> torch.Tensor:
        batch, length = canvas.shape  # (b, L)
        merged = state.extra.get("merged")
        if merged is None:  # one prompt: its cache serves every row
            cache = _expanded(state.payload, batch, self._new_cache())
            positions = torch.arange(state.position, state.position + length, device=self.device)[None]
            mask = None
        else:  # several prompts, left-padded to one length: take the rows still running
            rows = torch.arange(batch) if rows is None else rows.cpu()
            cache = _select_rows(state.payload, rows.to(self.device), self._new_cache())
            starts = merged["lengths"][rows].to(self.device)  # (b,) each prompt's own length
            positions = starts[:, None] + torch.arange(length, device=self.device)  # (b, L)
            mask = torch.cat([merged["mask"][rows].to(self.device),
                              torch.ones(batch, length, dtype=torch.long, device=self.device)], dim=-1)
        if self_conditioning is not None:  # the class takes logits and softmaxes them: log p gives p back
            logits = self_conditioning.log()
            if slots is not None:  # the other slots condition on their own token: a one-hot distribution
                logits = torch.full((batch, length, self.vocab_size), float("-inf"), device=self.device)
                logits.scatter_(-1, canvas[..., None], 0.0)
                logits[:, slots] = self_conditioning.log()
            self_conditioning = logits.to(self.dtype)
        out = self.model(decoder_input_ids=canvas, cache=cache, decoder_position_ids=positions,
                         decoder_attention_mask=mask, self_conditioning_logits=self_conditioning)
        return out.logits if slots is None else out.logits[:, slots]  # (b, C, V) float32, softcapped

    def merge(self, states: list[PromptState], rows: list[int]) -> PromptState:
        """Left-pad each prompt's cache to the longest, repeat it for its rows, stack: one batch of caches."""
        longest = max(s.position for s in states)
        merged = self._new_cache()
        for i, layer in enumerate(merged.layers):
            parts = [(s.payload.layers[i], n, longest - s.position) for s, n in zip(states, rows, strict=True)]
            if not parts[0][0].is_initialized:
                continue
            keys = torch.cat([_left_pad(src.keys, pad).expand(n, -1, -1, -1) for src, n, pad in parts])
            values = torch.cat([_left_pad(src.values, pad).expand(n, -1, -1, -1) for src, n, pad in parts])
            layer.lazy_initialization(keys, values)
            layer.keys, layer.values = keys, values
            if hasattr(layer, "cumulative_length"):
                layer.cumulative_length = longest
        lengths = torch.tensor([s.position for s, n in zip(states, rows, strict=True) for _ in range(n)])
        mask = (torch.arange(longest)[None] >= (longest - lengths)[:, None]).long()  # (B, P) 1 on real tokens
        return PromptState(prompt=states[0].prompt, position=longest, payload=merged,
                           extra={"merged": {"lengths": lengths, "mask": mask}})


class FusedBackend(DiffusionGemmaBackend):
    """The same checkpoint through `fused.FusedStack` on a CPU: float32 (the class's logits within 1e-5) or
    int8 matmuls. Prompt caches are plain per-layer (K, V) lists; a denoising run keeps its canvas buffers
    (`fused.CanvasKV`) on its PromptState while its rows and canvas length stay the same."""

    def __init__(self, lean, tokenizer, config, model_id: str, int8: bool = False, cache_entries: int = 4) -> None:
        self.model = None  # no transformers module: everything runs on `stack`
        self.lean = lean
        self.stack = FusedStack(lean, int8=int8)
        self._setup(tokenizer, config, model_id, torch.device("cpu"), torch.float32, cache_entries)

    @classmethod
    def load(cls, path: Path, options: LoadOptions = LoadOptions()) -> FusedBackend:
        from .checkpoint import load_lean, read_config
        from .lean import LeanDiffusionGemma
        from .tokenizer import FastTokenizer

        try:
            config = read_config(path)
            if (path / RANDOM_INIT_MARKER).exists():  # weights drawn by the class's own initialisation
                lean = LeanDiffusionGemma.from_hf(cls._load_class(str(path), options, torch.device("cpu"),
                                                                  torch.float32).model).eval()
            else:
                lean = load_lean(path, "cpu", torch.float32)
            tokenizer = FastTokenizer(path)
        except ModelLoadError:
            raise
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
            raise ModelLoadError(f"could not load DiffusionGemma checkpoint {str(path)!r}: {exc}") from exc
        return cls(lean, tokenizer, config, str(path), int8=cpu_int8(options))

    def describe(self) -> dict:
        return {"model": self.model_id, "backend": "diffusiongemma", "stack": "fused",
                "weights": "int8" if self.stack.int8 else "float32", "canvas_buckets": list(self.canvas_buckets),
                "parameters": sum(p.numel() for p in self.lean.parameters()), "device": "cpu",
                "dtype": "float32", "prompt_format": self.prompt_format, "noise": self.noise}

    # -- encoder ---------------------------------------------------------------------------------------
    def _extend(self, base, reused: int, ids: tuple[int, ...]):
        past = [(k[:, :, :reused], v[:, :, :reused]) for k, v in base] if base is not None and reused else None
        todo = torch.tensor([ids[reused:]])
        return self.stack.encode(todo, torch.arange(reused, len(ids))[None], past)

    def _croppable(self, cache, n: int) -> bool:
        return n > 0  # the whole prompt fits the window: nothing was ever dropped

    # -- decoder ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def denoise(self, state: PromptState, canvas: torch.Tensor, self_conditioning: torch.Tensor | None,
                rows: torch.Tensor | None = None, slots: torch.Tensor | None = None) -> torch.Tensor:
        batch, length = canvas.shape  # (b, L)
        rows = torch.arange(batch) if rows is None else rows.cpu()
        key = (tuple(rows.tolist()), length)
        run = state.extra.get("canvas")
        if run is None or run[0] != key:  # a new run, or rows left it: buffers for these rows and this length
            merged = state.extra.get("merged")
            if merged is None:  # one prompt: its K/V serve every row
                buffers = self.stack.canvas_kv(state.payload, batch, length)
                positions = torch.arange(state.position, state.position + length)[None]  # (1, L)
            else:  # several prompts, left-padded to one length
                kv = [(k[rows], v[rows]) for k, v in state.payload]
                buffers = self.stack.canvas_kv(kv, batch, length, merged["mask"][rows])
                positions = merged["lengths"][rows][:, None] + torch.arange(length)  # (b, L)
            run = state.extra["canvas"] = (key, buffers, positions)
        _, buffers, positions = run
        soft = self.stack.soft_embeddings(self_conditioning) if self_conditioning is not None else None
        return self.stack.decode(canvas, positions, buffers, soft, slots)  # (b, C, V) float32, softcapped

    def merge(self, states: list[PromptState], rows: list[int]) -> PromptState:
        """Left-pad each prompt's K/V to the longest and repeat it for its rows: one batch of prompts."""
        longest = max(s.position for s in states)
        kv = []
        for i in range(len(states[0].payload)):
            parts = [(s.payload[i], n, longest - s.position) for s, n in zip(states, rows, strict=True)]
            kv.append((torch.cat([_left_pad(k, pad).expand(n, -1, -1, -1) for (k, _), n, pad in parts]),
                       torch.cat([_left_pad(v, pad).expand(n, -1, -1, -1) for (_, v), n, pad in parts])))
        lengths = torch.tensor([s.position for s, n in zip(states, rows, strict=True) for _ in range(n)])
        mask = torch.arange(longest)[None] >= (longest - lengths)[:, None]  # (B, P) True on real tokens
        return PromptState(prompt=states[0].prompt, position=longest, payload=kv,
                           extra={"merged": {"lengths": lengths, "mask": mask}})


def cpu_int8(options: LoadOptions) -> bool:
    """Whether the fused stack runs int8 matmuls: asked for (`int8`), refused (`none`), else the CPU default."""
    from .int8 import available

    if options.quantize == "int8" and not available():
        raise ModelLoadError("this torch build has no int8 CPU kernels (fbgemm/x86); drop --quantize int8")
    if options.quantize in ("int8", "none"):
        return options.quantize == "int8"
    return CPU_INT8_DEFAULT and available()


def fused_fits(path: Path, options: LoadOptions, device: torch.device, dtype: torch.dtype) -> str | None:
    """None when the fused stack can run this checkpoint as asked, else why not (one phrase)."""
    from ..prompt import PromptConfig
    from ..spans.config import SizingConfig
    from .checkpoint import read_config, shard_files
    from .lean import DENSE_EXPERTS_MAX

    if options.stack == "transformers":
        return "transformers' class was asked for"
    if device.type != "cpu" or dtype != torch.float32:
        return f"it runs on the CPU in float32, not {device.type} {str(dtype).removeprefix('torch.')}"
    if options.quantize in BNB_KINDS:
        return "bitsandbytes quantization needs transformers' class"
    if not path.is_dir() or not (path / "tokenizer.json").exists():
        return "it reads a checkpoint directory with a tokenizer.json"
    if not (path / RANDOM_INIT_MARKER).exists() and not shard_files(path):
        return "it reads safetensors weights"
    try:
        text = read_config(path).text_config
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"config.json: {exc}"
    if (text.num_experts or 0) > DENSE_EXPERTS_MAX:
        return f"it runs at most {DENSE_EXPERTS_MAX} experts densely"
    limits = _trained_limits(str(path))
    longest = limits.get("prompt_tokens", PromptConfig.max_prompt_tokens) + 4 + \
        limits.get("canvas", SizingConfig.max_canvas)  # 4: the prompt's special tokens
    if longest > text.sliding_window:
        return f"prompt + canvas ({longest}) exceed the sliding window ({text.sliding_window})"
    return None


def _trained_limits(path: str) -> dict:
    """Prompt and canvas lengths the checkpoint at `path` was trained on (our own models record them), so the
    engine does not ask for positions the model never saw. Empty for checkpoints without a training report."""
    report = Path(path) / "training_report.json" if path else None
    if not report or not report.exists():
        return {}
    try:
        cfg = json.loads(report.read_text()).get("train_config", {})
        buckets = tuple(cfg["buckets"]) if "buckets" in cfg else (cfg["canvas_len"],)  # reports before the bank
        return {"prompt_tokens": int(cfg["prompt_len"]) - 4, "canvas": int(max(buckets)), "buckets": buckets}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _bnb_config(kind: str, device: torch.device):
    if device.type != "cuda":
        raise ModelLoadError("bitsandbytes quantization needs a CUDA GPU; drop --quantize on CPU")
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError as exc:
        raise ModelLoadError("quantization needs bitsandbytes: pip install 'infill[gpu]'") from exc
    if kind == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_quant_type="nf4")
    if kind == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    raise ModelLoadError(f"unknown quantization {kind!r}; choose 4bit or 8bit")


def _common_prefix(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _croppable(cache, n: int) -> bool:
    """A sliding layer that already dropped its oldest tokens cannot be rewound."""
    for layer in cache.layers:
        sliding = getattr(layer, "is_sliding", False) and layer.keys is not None
        if sliding and layer.keys.shape[-2] < getattr(layer, "cumulative_length", layer.keys.shape[-2]):
            return False
    return n > 0


def _prefix_copy(src, n: int, dst):
    """A new cache holding the first n positions of `src` (views, no copy; `src` is never mutated)."""
    for s, d in zip(src.layers, dst.layers, strict=True):
        if not s.is_initialized:
            continue
        d.lazy_initialization(s.keys[..., :n, :], s.values[..., :n, :])
        d.keys, d.values = s.keys[..., :n, :], s.values[..., :n, :]
        if hasattr(d, "cumulative_length"):
            d.cumulative_length = n
    return dst


def _left_pad(t: torch.Tensor, pad: int) -> torch.Tensor:
    """(B, H, T, D) -> (B, H, pad + T, D), zeros in front (masked out by the attention mask)."""
    return torch.nn.functional.pad(t, (0, 0, pad, 0)) if pad else t


def _select_rows(src, rows: torch.Tensor, dst):
    """A cache holding only `rows` of `src` (copies: index_select), for the rows still denoising."""
    if len(rows) == src.layers[0].keys.shape[0]:
        return src
    for s, d in zip(src.layers, dst.layers, strict=True):
        if not s.is_initialized:
            continue
        keys, values = s.keys.index_select(0, rows), s.values.index_select(0, rows)
        d.lazy_initialization(keys, values)
        d.keys, d.values = keys, values
        if hasattr(d, "cumulative_length"):
            d.cumulative_length = s.cumulative_length
    return dst


def _expanded(src, batch: int, dst):
    """The same cache with batch size `batch` (expanded views; the decoder only reads the cache)."""
    if batch == 1:
        return src
    for s, d in zip(src.layers, dst.layers, strict=True):
        if not s.is_initialized:
            continue
        keys = s.keys.expand(batch, *s.keys.shape[1:])
        values = s.values.expand(batch, *s.values.shape[1:])
        d.lazy_initialization(keys, values)
        d.keys, d.values = keys, values
        if hasattr(d, "cumulative_length"):
            d.cumulative_length = s.cumulative_length
    return dst
