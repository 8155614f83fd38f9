"""The one protocol every backend implements, and the loading options they share."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import torch

from ..prompt import EncodedPrompt, SpecialIds, TextTokenizer

NoiseKind = Literal["uniform", "mask"]


@dataclass(frozen=True)
class LoadOptions:
    device: str = "auto"  # "auto" picks cuda when available, else cpu
    dtype: str = "auto"  # "auto": bfloat16 on cuda, float32 on cpu; or float32 / bfloat16 / float16
    quantize: str | None = None  # None: the device's default; "none"; "int8" (CPU int8 matmuls, dynamic
    #                              activations); "4bit" or "8bit" (bitsandbytes, CUDA only)
    stack: str = "auto"  # DiffusionGemma: "auto" (the fused stack where it fits), "fused" or "transformers"
    trust_remote_code: bool = False  # needed by masked-diffusion checkpoints that ship their own modeling code
    threads: int | None = None  # torch CPU threads; None: half the cores, 1 to 4 (see set_cpu_threads)


@dataclass
class CacheStats:
    """Encoder prefill accounting, for `infill daemon status` and the cache benchmarks."""

    prefills: int = 0
    hits: int = 0  # prefills that reused a cached prefix of at least one token
    reused_tokens: int = 0
    computed_tokens: int = 0
    seconds: float = 0.0

    @property
    def hit_rate(self) -> float:
        """Share of prefills that reused anything (every prompt shares its first special tokens)."""
        return self.hits / self.prefills if self.prefills else 0.0

    @property
    def reused_share(self) -> float:
        """Share of prompt tokens served from the cache instead of encoded: the figure that matters."""
        total = self.reused_tokens + self.computed_tokens
        return self.reused_tokens / total if total else 0.0


@dataclass
class PromptState:
    """What a backend needs to denoise canvases for one prompt (an encoder cache, or the raw ids)."""

    prompt: EncodedPrompt
    position: int  # position id of the first canvas slot
    payload: object = None  # backend-specific: a KV cache, token tensors, ...
    reused_tokens: int = 0
    computed_tokens: int = 0
    extra: dict = field(default_factory=dict)


@runtime_checkable
class Backend(Protocol):
    model_id: str
    prompt_format: str  # key of infill.prompt.PROMPT_FORMATS
    noise: NoiseKind  # "uniform": noised slots hold random ids; "mask": they hold the mask id
    tokenizer: TextTokenizer
    ids: SpecialIds
    vocab_size: int
    device: torch.device
    dtype: torch.dtype
    cache_stats: CacheStats

    def prefill(self, prompt: EncodedPrompt) -> PromptState:
        """Run (or reuse) the encoder over the prompt. Counts as one forward pass when it computes anything."""
        ...

    def denoise(
        self, state: PromptState, canvas: torch.Tensor, self_conditioning: torch.Tensor | None,
        rows: torch.Tensor | None = None, slots: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """canvas (b, L) ids -> logits (b, C, V) float32 of the clean canvas in columns `slots` (C,) (None: all
        L). One forward pass over the whole canvas.

        `self_conditioning` (b, C, V) is the previous step's probabilities in those columns (None on the first
        step); a slot outside them conditions on its own token. `rows` (b,) says which rows of a merged state
        these canvases are (rows leave as they finish); a single prompt's state serves any number of rows.
        The caller may change the returned tensor."""
        ...

    def merge(self, states: list[PromptState], rows: list[int]) -> PromptState:
        """One state for a batch holding rows[i] canvases of states[i], in that order (micro-batching)."""
        ...

    def describe(self) -> dict:
        """Model id, parameters, device and dtype, for status messages."""
        ...


def placement(options: LoadOptions) -> tuple[torch.device, torch.dtype]:
    """Device and dtype for a load, with the CPU thread count set."""
    device = resolve_device(options.device)
    set_cpu_threads(options.threads, device)
    return device, resolve_dtype(options.dtype, device)


def set_cpu_threads(threads: int | None, device: torch.device) -> None:
    """CPU inference threads. Small matrix products gain little from many threads and lose a lot when the
    machine is busy (an editor, a build): on a loaded 2-core machine one thread was 3-10x faster than two."""
    if device.type != "cpu":
        return
    if threads is None:
        threads = min(4, max(1, (os.cpu_count() or 2) // 2))
    torch.set_num_threads(threads)


def resolve_device(name: str) -> torch.device:
    from ..errors import BadInputError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise BadInputError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BadInputError(f"device {name!r} asked for, but this PyTorch build sees no CUDA GPU "
                            "(install a CUDA build of torch, see README)")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if name not in table:
        from ..errors import BadInputError

        raise BadInputError(f"unknown dtype {name!r}; choose one of: auto, {', '.join(sorted(table))}")
    return table[name]
