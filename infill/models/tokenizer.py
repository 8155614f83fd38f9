"""A thin wrapper that gives every backend the same small tokenizer surface."""

from __future__ import annotations

from ..prompt import SPECIAL_TOKENS, SpecialIds


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


def special_ids(tok: HFTokenizer, extra_eos: tuple[int, ...] = ()) -> SpecialIds:
    """SpecialIds from whatever the tokenizer defines (our own names first, then the HF attributes)."""
    hf = tok.hf
    pad = tok.token_id("<pad>")
    if pad is None:
        pad = hf.pad_token_id if hf.pad_token_id is not None else hf.eos_token_id
    eos = tok.token_id("<eos>")
    if eos is None:
        eos = hf.eos_token_id
    assert pad is not None and eos is not None, "tokenizer has neither pad nor eos"
    names = ("<image>", "<boi>", "<eoi>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<mask>", "<file_sep>", "<bos>")
    banned = tuple(i for n in names if (i := tok.token_id(n)) is not None)
    return SpecialIds(
        pad=pad,
        eos=(eos, *[e for e in extra_eos if e != eos]),
        bos=tok.token_id("<bos>") if tok.token_id("<bos>") is not None else hf.bos_token_id,
        fim_prefix=tok.token_id("<fim_prefix>"),
        fim_suffix=tok.token_id("<fim_suffix>"),
        fim_middle=tok.token_id("<fim_middle>"),
        mask=tok.token_id("<mask>") if tok.token_id("<mask>") is not None else hf.mask_token_id,
        banned=banned,
    )
