"""DiffusionGemma through transformers' native `DiffusionGemmaForBlockDiffusion`.

The same class serves the released 26B-A4B checkpoint and the project's own small model. The encoder
(causal) prefills the prompt into a KV cache once; the decoder (bidirectional) denoises canvases
against it without changing it, so one cache serves every step and every candidate canvas.

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
from .presets import RANDOM_INIT_MARKER
from .tokenizer import HFTokenizer, special_ids

# The released instruction model ends its turn with <end_of_turn> (id 106) as well as <eos>.
CHAT_END_TOKENS = ("<end_of_turn>", "<turn|>")


# Noise kinds a DiffusionGemma-class checkpoint may be trained with (config.json "infill_noise"; the
# released 26B has none: uniform-state). The engine's sampler follows it.
NOISE_KINDS = ("uniform", "mask")


class DiffusionGemmaBackend:

    def __init__(self, model, tokenizer, model_id: str, cache_entries: int = 4) -> None:
        self.model = model.eval()
        self.hf_tokenizer = tokenizer
        self.tokenizer = HFTokenizer(tokenizer)
        self.model_id = model_id
        extra_eos = tuple(i for n in CHAT_END_TOKENS if (i := self.tokenizer.token_id(n)) is not None)
        self.ids = special_ids(self.tokenizer, extra_eos)
        self.noise = getattr(model.config, "infill_noise", None) or "uniform"
        if self.noise not in NOISE_KINDS:
            raise ModelLoadError(f"{model_id!r} says it was trained with {self.noise!r} noise; this version knows "
                                 f"{', '.join(NOISE_KINDS)}")
        if self.noise == "mask" and self.ids.mask is None:
            raise ModelLoadError(f"{model_id!r} was trained with mask noise but its tokenizer has no <mask> token")
        self.prompt_format = "fim" if self.ids.fim_middle is not None else "chat"
        text_cfg = model.config.get_text_config(decoder=True)
        self.text_config = text_cfg
        self.vocab_size = text_cfg.vocab_size
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.cache_entries = cache_entries
        self.limits = _trained_limits(model)
        self._caches: OrderedDict[tuple[int, ...], object] = OrderedDict()
        self.cache_stats = CacheStats()

    # -- loading -------------------------------------------------------------------------------------
    @classmethod
    def load(cls, model_id: str, options: LoadOptions = LoadOptions()) -> DiffusionGemmaBackend:
        from transformers import AutoTokenizer, DiffusionGemmaConfig, DiffusionGemmaForBlockDiffusion

        device, dtype = placement(options)
        path = Path(model_id)
        local = path.is_dir()
        if not local and ("/" not in model_id or model_id.startswith((".", "/"))):
            raise ModelLoadError(f"model {model_id!r} is not a directory; give a checkpoint directory or a hub id "
                                 "that is already in the local Hugging Face cache")
        try:
            tokenizer = AutoTokenizer.from_pretrained(model_id, local_files_only=True)
            if local and (path / RANDOM_INIT_MARKER).exists():
                config = DiffusionGemmaConfig.from_pretrained(model_id)
                torch.manual_seed(json.loads((path / RANDOM_INIT_MARKER).read_text()).get("seed", 0))
                with torch.device(device):
                    model = DiffusionGemmaForBlockDiffusion(config).to(dtype)
            else:
                kwargs = dict(dtype=dtype, local_files_only=True)
                if options.quantize:
                    kwargs["quantization_config"] = _bnb_config(options.quantize, device)
                    kwargs["device_map"] = {"": device.index or 0}
                model = DiffusionGemmaForBlockDiffusion.from_pretrained(model_id, **kwargs)
                if not options.quantize:
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
            if n > best_len and _croppable(cache, n):
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
        if reused == len(ids):  # the same prompt again: the decoder never writes the cache, share it
            cache = base
        else:
            cache = _prefix_copy(base, reused, self._new_cache()) if base is not None else self._new_cache()
            todo = torch.tensor([ids[reused:]], device=self.device)
            positions = torch.arange(reused, len(ids), device=self.device)[None]
            self.model.model.encoder(input_ids=todo, cache=cache, position_ids=positions)
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

    def clear_cache(self) -> None:
        self._caches.clear()

    # -- decoder ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def denoise(self, state: PromptState, canvas: torch.Tensor, self_conditioning: torch.Tensor | None,
                rows: torch.Tensor | None = None) -> torch.Tensor:
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
        out = self.model(decoder_input_ids=canvas, cache=cache, decoder_position_ids=positions,
                         decoder_attention_mask=mask, self_conditioning_logits=self_conditioning)
        return out.logits  # (b, L, V) float32, softcapped

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


def _trained_limits(model) -> dict[str, int]:
    """Prompt and canvas lengths the checkpoint was trained on (our own models record them), so the engine does
    not ask for positions the model never saw. Empty for checkpoints without a training report."""
    path = getattr(model.config, "_name_or_path", "")
    report = Path(path) / "training_report.json" if path else None
    if not report or not report.exists():
        return {}
    try:
        cfg = json.loads(report.read_text()).get("train_config", {})
        canvas = max(cfg["buckets"]) if "buckets" in cfg else cfg["canvas_len"]  # reports before the bank: canvas_len
        return {"prompt_tokens": int(cfg["prompt_len"]) - 4, "canvas": int(canvas)}
    except (OSError, ValueError, KeyError):
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
