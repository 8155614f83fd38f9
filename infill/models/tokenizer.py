"""Thin wrappers that give every backend the same small tokenizer surface.

`HFTokenizer` wraps a transformers tokenizer (any checkpoint); `FastTokenizer` reads a checkpoint's
tokenizer.json with the `tokenizers` library alone (no transformers import: what the lean load path uses)
and encodes and decodes exactly as the transformers wrapper does for the same files.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..prompt import SPECIAL_TOKENS, SpecialIds

ROLES = ("pad", "eos", "bos", "mask")  # tokenizer_config.json's <role>_token entries special_ids falls back to


class HFTokenizer:
    """Wraps a `transformers` fast tokenizer: encode without specials, decode without specials."""

    def __init__(self, tok) -> None:
        self.hf = tok
        self._specials = set(tok.all_special_ids) | {
            i for name in SPECIAL_TOKENS if isinstance(i := tok.convert_tokens_to_ids(name), int) and i >= 0
            and tok.convert_ids_to_tokens(i) == name
        }

    def encode(self, text: str) -> list[int]:
        return list(self.hf.encode(text, add_special_tokens=False)) if text else []

    def decode(self, ids: list[int]) -> str:
        return self.hf.decode([i for i in ids if i not in self._specials], skip_special_tokens=False,
                              clean_up_tokenization_spaces=False)

    def __len__(self) -> int:
        return len(self.hf)

    def token_id(self, name: str) -> int | None:
        i = self.hf.convert_tokens_to_ids(name)
        if not isinstance(i, int) or i < 0 or self.hf.convert_ids_to_tokens(i) != name:
            return None
        return i

    def role_id(self, role: str) -> int | None:
        """The id of the tokenizer's pad / eos / bos / mask token, None when it names none."""
        return getattr(self.hf, f"{role}_token_id", None)


class FastTokenizer:
    """A checkpoint's tokenizer.json through `tokenizers` only, with HFTokenizer's behaviour: no special
    tokens added, specials dropped on decode, and (transformers' `split_special_tokens`) a literal "<eos>"
    in the text encoded as text."""

    def __init__(self, directory: Path) -> None:
        from tokenizers import Tokenizer

        directory = Path(directory)
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        config_file = directory / "tokenizer_config.json"
        config = json.loads(config_file.read_text()) if config_file.exists() else {}
        self.tokenizer.encode_special_tokens = bool(config.get("split_special_tokens", False))
        self._roles = {role: self._named(config.get(f"{role}_token")) for role in ROLES}
        added = self.tokenizer.get_added_tokens_decoder()
        self._specials = {i for i, t in added.items() if t.special} | {
            i for name in SPECIAL_TOKENS if (i := self.token_id(name)) is not None}

    def _named(self, entry) -> int | None:
        name = entry.get("content") if isinstance(entry, dict) else entry
        return self.token_id(name) if isinstance(name, str) else None

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids if text else []

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode([i for i in ids if i not in self._specials], skip_special_tokens=False)

    def __len__(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def token_id(self, name: str) -> int | None:
        return self.tokenizer.token_to_id(name)

    def role_id(self, role: str) -> int | None:
        return self._roles.get(role)


def special_ids(tok: HFTokenizer | FastTokenizer, extra_eos: tuple[int, ...] = ()) -> SpecialIds:
    """SpecialIds from whatever the tokenizer defines (our own names first, then its pad/eos/bos/mask roles)."""
    pad = tok.token_id("<pad>")
    if pad is None:
        pad = tok.role_id("pad") if tok.role_id("pad") is not None else tok.role_id("eos")
    eos = tok.token_id("<eos>")
    if eos is None:
        eos = tok.role_id("eos")
    assert pad is not None and eos is not None, "tokenizer has neither pad nor eos"
    names = ("<image>", "<boi>", "<eoi>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<mask>", "<file_sep>", "<bos>")
    banned = tuple(i for n in names if (i := tok.token_id(n)) is not None)
    return SpecialIds(
        pad=pad,
        eos=(eos, *[e for e in extra_eos if e != eos]),
        bos=tok.token_id("<bos>") if tok.token_id("<bos>") is not None else tok.role_id("bos"),
        fim_prefix=tok.token_id("<fim_prefix>"),
        fim_suffix=tok.token_id("<fim_suffix>"),
        fim_middle=tok.token_id("<fim_middle>"),
        mask=tok.token_id("<mask>") if tok.token_id("<mask>") is not None else tok.role_id("mask"),
        banned=banned,
    )
