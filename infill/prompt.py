"""Document + hole -> model input: the encoder prompt and the canvas layout.

Formats live in a small registry, one per family of checkpoints:

- ``fim``: the project's own models. Encoder prompt ``<bos><fim_suffix>SUFFIX<fim_prefix>PREFIX<fim_middle>``.
  The suffix comes first so that the encoder's cached state stays valid while the user types at the
  cursor: keystrokes only change the end of the prompt.
- ``chat``: instruction-tuned checkpoints with no fill-in-the-middle tokens (the released DiffusionGemma-it).
- ``masked``: Dream / DiffuCoder / LLaDA style; prefix, canvas and suffix form one sequence (the backend lays it out).

The canvas holds the middle followed by an end token and padding (``open`` layout), or the middle
followed by the first tokens of the suffix, clamped (``seam`` layout). See `CanvasLayout`; `training_canvas`
writes a canvas and `middle_ids` reads the middle back out of one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .errors import lookup

# Special tokens of the project's own tokenizer, in id order. The DiffusionGemma class needs
# pad/eos/bos and three image ids; the rest are ours.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<pad>",
    "<eos>",
    "<bos>",
    "<image>",
    "<boi>",
    "<eoi>",
    "<fim_prefix>",
    "<fim_suffix>",
    "<fim_middle>",
    "<mask>",
    "<file_sep>",
)
# Runs of indentation get tokens of their own, so that indentation costs one slot.
WHITESPACE_TOKENS: tuple[str, ...] = tuple(" " * n for n in range(2, 33)) + tuple("\t" * n for n in range(1, 9))


class TextTokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...  # no special tokens added
    def decode(self, ids: list[int]) -> str: ...


@dataclass(frozen=True)
class SpecialIds:
    """Ids a backend's sampler and constraints need. None where the checkpoint has no such token."""

    pad: int
    eos: tuple[int, ...]  # ids that end the middle (the first one is what training writes)
    bos: int | None = None
    fim_prefix: int | None = None
    fim_suffix: int | None = None
    fim_middle: int | None = None
    mask: int | None = None
    banned: tuple[int, ...] = ()  # ids that must never appear in a middle (image, FIM markers, ...)


@dataclass(frozen=True)
class PromptConfig:
    max_prompt_tokens: int = 1024  # encoder budget for prefix + suffix; the code nearest the hole is kept
    suffix_share: float = 0.25  # share of the budget the suffix gets when both sides are long
    cut_step: int = 64  # the prefix is cut in steps of this many tokens, so typing moves the cut rarely
    seam_tokens: int = 0  # suffix tokens clamped at the end of the canvas (0: open layout)


@dataclass(frozen=True)
class EncodedPrompt:
    """Token ids for one hole. `encoder_ids` is what a causal encoder prefills (may be empty)."""

    encoder_ids: tuple[int, ...]
    prefix_ids: tuple[int, ...]  # after truncation
    suffix_ids: tuple[int, ...]  # after truncation
    seam_ids: tuple[int, ...]  # suffix head to clamp at the end of the canvas ("seam" layout)
    truncated: bool  # whether the budget cut code from either side


@dataclass(frozen=True)
class CanvasLayout:
    """One candidate canvas: `free` slots to denoise, then clamped ids, then pad up to `length`.

    open layout: free slots hold MIDDLE <eos> <pad>..., clamps are empty.
    seam layout: free slots hold exactly the MIDDLE, clamps are the suffix head.
    Candidates of one batch share `length` (the longest); slots past a candidate's own end are pad, clamped.
    """

    free: int
    clamps: tuple[int, ...]
    length: int


def truncate_to_budget(
    prefix_ids: list[int], suffix_ids: list[int], budget: int, suffix_share: float, cut_step: int = 1
) -> tuple[list[int], list[int], bool]:
    """Keep the tail of the prefix and the head of the suffix within `budget` tokens.

    The prefix loses whole multiples of `cut_step` tokens from its start: while the user types at the cursor
    the kept prefix keeps its first token for `cut_step` tokens of typing, so the encoder cache stays valid
    (a cut that moved with every token would re-encode the whole prefix on every keystroke).
    """
    if len(prefix_ids) + len(suffix_ids) <= budget:
        return prefix_ids, suffix_ids, False
    suffix_budget = max(int(budget * suffix_share), budget - len(prefix_ids))
    suffix_keep = min(len(suffix_ids), suffix_budget)
    overflow = max(0, len(prefix_ids) - (budget - suffix_keep))  # tokens the prefix must lose
    drop = -(-overflow // cut_step) * cut_step  # rounded up to a whole step
    return prefix_ids[drop:], suffix_ids[:suffix_keep], True


def _line_aligned(text: str, keep_tail: bool, max_chars: int) -> str:
    """Cut text to at most max_chars at a line boundary. The tail is cut in steps of a quarter of
    max_chars, so that typing at the end moves the cut (and invalidates the encoder cache) rarely."""
    if len(text) <= max_chars:
        return text
    if keep_tail:
        step = max(1, max_chars // 4)
        drop = -(-(len(text) - max_chars) // step) * step
        cut = text.find("\n", drop)
        return text[cut + 1 :] if cut >= 0 else text[drop:]
    cut = text.rfind("\n", 0, max_chars)
    return text[: cut + 1] if cut > 0 else text[:max_chars]


def encode_fim(tok: TextTokenizer, ids: SpecialIds, prefix: str, suffix: str, cfg: PromptConfig) -> EncodedPrompt:
    # Characters are cut before tokenizing (cheap for big files); ~1 token per 2 characters is a safe upper bound.
    prefix = _line_aligned(prefix, keep_tail=True, max_chars=cfg.max_prompt_tokens * 6)
    suffix = _line_aligned(suffix, keep_tail=False, max_chars=cfg.max_prompt_tokens * 6)
    p, s, truncated = truncate_to_budget(tok.encode(prefix), tok.encode(suffix), cfg.max_prompt_tokens, cfg.suffix_share,
                                       cfg.cut_step)
    assert ids.bos is not None and ids.fim_prefix is not None and ids.fim_suffix is not None
    assert ids.fim_middle is not None
    encoder = (ids.bos, ids.fim_suffix, *s, ids.fim_prefix, *p, ids.fim_middle)
    return EncodedPrompt(tuple(encoder), tuple(p), tuple(s), tuple(s[: cfg.seam_tokens]), truncated)


CHAT_INSTRUCTION = (
    "Fill in the missing code marked <HOLE>. Reply with only the code that replaces <HOLE>, "
    "without repeating the code around it and without markdown fences.\n\n"
)


def encode_chat(
    tok: TextTokenizer, ids: SpecialIds, prefix: str, suffix: str, cfg: PromptConfig,
    template: Callable[[str], list[int]] | None = None,
) -> EncodedPrompt:
    """Instruction prompt for chat checkpoints; `template` applies the checkpoint's chat template."""
    p, s, truncated = truncate_to_budget(tok.encode(prefix), tok.encode(suffix), cfg.max_prompt_tokens, cfg.suffix_share,
                                       cfg.cut_step)
    body = CHAT_INSTRUCTION + tok.decode(p) + "<HOLE>" + tok.decode(s)
    encoder = template(body) if template else ([ids.bos] if ids.bos is not None else []) + tok.encode(body)
    return EncodedPrompt(tuple(encoder), tuple(p), tuple(s), tuple(s[: cfg.seam_tokens]), truncated)


def encode_masked(tok: TextTokenizer, ids: SpecialIds, prefix: str, suffix: str, cfg: PromptConfig) -> EncodedPrompt:
    """Prefix and suffix stay apart: a masked-diffusion backend lays out prefix + canvas + suffix itself."""
    p, s, truncated = truncate_to_budget(tok.encode(prefix), tok.encode(suffix), cfg.max_prompt_tokens, cfg.suffix_share,
                                       cfg.cut_step)
    bos = (ids.bos,) if ids.bos is not None else ()
    return EncodedPrompt((), bos + tuple(p), tuple(s), tuple(s[: cfg.seam_tokens]), truncated)


PROMPT_FORMATS: dict[str, Callable[..., EncodedPrompt]] = {
    "fim": encode_fim,
    "chat": encode_chat,
    "masked": encode_masked,
}


def encode_prompt(fmt: str, tok: TextTokenizer, ids: SpecialIds, prefix: str, suffix: str, cfg: PromptConfig,
                  **kw) -> EncodedPrompt:
    return lookup(PROMPT_FORMATS, "prompt format", fmt)(tok, ids, prefix, suffix, cfg, **kw)


def candidate_layouts(lengths: tuple[int, ...], seam_ids: tuple[int, ...]) -> list[CanvasLayout]:
    """One layout per candidate length, padded to a shared canvas length.

    open (no seam): candidate n has n free slots (middle + <eos> must fit).
    seam: candidate n has n free slots for the middle, then the suffix head.
    """
    k = len(seam_ids)
    total = max(lengths) + k if k else max(lengths)
    return [CanvasLayout(free=n, clamps=tuple(seam_ids), length=total) for n in lengths]


def training_canvas(middle_ids: list[int], length: int, ids: SpecialIds, seam_ids: list[int] | None = None) -> list[int]:
    """The clean canvas a model is trained to produce, in the same layouts inference uses."""
    body = list(middle_ids) + (list(seam_ids) if seam_ids else [ids.eos[0]])
    assert len(body) <= length, "canvas too short for the middle"
    return body + [ids.pad] * (length - len(body))


def middle_ids(tokens: list[int], free: int, ids: SpecialIds, seam: bool) -> tuple[list[int], bool]:
    """The middle's ids from a canvas row, and whether the middle ended inside its slots."""
    body = tokens[:free]
    if seam:
        return [t for t in body if t not in ids.eos and t != ids.pad], True
    for i, t in enumerate(body):
        if t in ids.eos or t == ids.pad:
            return body[:i], True
    return body, False
