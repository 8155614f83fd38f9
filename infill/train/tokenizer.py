"""The project's tokenizer: byte-level BPE trained on the code corpus.

Layout of the vocabulary (what `infill.prompt` and the model config rely on):

    0 .. 10            SPECIAL_TOKENS, in the order infill.prompt lists them (<pad> <eos> <bos> ...)
    11 .. V-40         byte alphabet (256) and learned merges
    V-39 .. V-1        WHITESPACE_TOKENS: runs of 2-32 spaces and 1-8 tabs, as added (non-special) tokens

Byte-level with no normalizer and no prefix space, so `decode(encode(x)) == x` for any text
(tabs, CRLF, unicode). Plain `encode` adds no special tokens: the prompt module adds its own.
Text is always text: a literal "<eos>" in a source file encodes as the characters, never as the
special id (`encode_special_tokens`; transformers: `split_special_tokens`). tokenizer.json cannot
store that flag, so a bare `tokenizers.Tokenizer.from_file` must set it; `load_tokenizer` does.

    tok = train_tokenizer(corpus.split("train"), vocab_size=12288, out_dir="infill/weights")
    tok = load_tokenizer("infill/weights")          # TokenizerWrapper
    tok.encode("def f():\\n    return 1")           # list[int]
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from ..prompt import SPECIAL_TOKENS, WHITESPACE_TOKENS, SpecialIds
from .corpus import SourceFile

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"

# Pre-tokenizer split, tuned for code (cl100k-like, without English contractions): a word may take
# one leading space or punctuation mark (" foo", ".append", "_name"); numbers split into groups of
# at most 3 digits; punctuation runs keep their trailing newlines ("):\n"); whitespace runs alone.
# Runs of 2+ spaces and all tabs never reach it: they are added tokens, matched first.
SPLIT_PATTERN = r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_WHITESPACE_RUN = re.compile(r" {2,}|\t+")  # what the added whitespace tokens take out of the text

# Share of the tokenizer's training text per language; languages missing locally give theirs to Python.
LANGUAGE_MIX = {"python": 0.7, "cpp": 0.08, "c": 0.06, "javascript": 0.04, "typescript": 0.04,
                "go": 0.02, "rust": 0.02, "java": 0.02, "lua": 0.01, "tsx": 0.01}


class TokenizerWrapper:
    """The `infill.prompt.TextTokenizer` the project's own models use, over a `tokenizers.Tokenizer`."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        tokenizer.encode_special_tokens = True  # "<eos>" in a file is text, not the end token
        self.tokenizer = tokenizer
        missing = [t for i, t in enumerate(SPECIAL_TOKENS) if tokenizer.token_to_id(t) != i]
        if missing:
            raise ValueError(f"tokenizer does not hold the special tokens at their fixed ids: {missing}")

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def encode_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids and the (start, end) character offsets of each token in `text`."""
        enc = self.tokenizer.encode(text, add_special_tokens=False)
        return enc.ids, enc.offsets

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        return [len(e) for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int], keep_special: bool = False) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=not keep_special)

    def token_to_id(self, name: str) -> int | None:
        return self.tokenizer.token_to_id(name)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def special_ids(self) -> SpecialIds:
        return special_ids()


def special_ids() -> SpecialIds:
    """Special ids of the project's tokenizer. They are fixed by SPECIAL_TOKENS' order."""
    i = {name: n for n, name in enumerate(SPECIAL_TOKENS)}
    # Never in a middle: image ids, FIM markers, <mask>, <file_sep>, <bos>. Not <pad> (it fills the
    # canvas after <eos>) and not <eos> (it ends the middle).
    banned = tuple(i[t] for t in ("<image>", "<boi>", "<eoi>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>",
                                  "<mask>", "<file_sep>", "<bos>"))
    return SpecialIds(pad=i["<pad>"], eos=(i["<eos>"],), bos=i["<bos>"], fim_prefix=i["<fim_prefix>"],
                      fim_suffix=i["<fim_suffix>"], fim_middle=i["<fim_middle>"], mask=i["<mask>"], banned=banned)


def new_tokenizer() -> Tokenizer:
    """An untrained byte-level BPE with the project's pre-tokenizer and decoder."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    return tok


def sample_training_text(files: Sequence[SourceFile], max_bytes: int, seed: int = 0,
                         mix: dict[str, float] = LANGUAGE_MIX) -> list[SourceFile]:
    """Files whose sizes add up to about `max_bytes`, shared across languages by `mix`.

    A language with less code than its share gives the rest to Python (or to the largest language).
    """
    rng = random.Random(seed)
    by_lang: dict[str, list[SourceFile]] = {}
    for f in files:
        by_lang.setdefault(f.language, []).append(f)
    for group in by_lang.values():
        rng.shuffle(group)
    have = {lang: sum(f.size for f in group) for lang, group in by_lang.items()}
    quota = {lang: min(have[lang], mix.get(lang, 0.01) * max_bytes) for lang in by_lang}
    main = "python" if "python" in by_lang else max(have, key=have.__getitem__, default=None)
    if main is not None:
        quota[main] = min(have[main], max_bytes - sum(q for lang, q in quota.items() if lang != main))
    chosen: list[SourceFile] = []
    for lang, group in sorted(by_lang.items()):
        total = 0
        for f in group:
            if total >= quota[lang]:
                break
            chosen.append(f)
            total += f.size
    return chosen


def _training_chunks(files: Sequence[SourceFile]) -> Iterator[str]:
    """File texts with whitespace runs cut out, so BPE spends no merges on what added tokens cover."""
    for f in files:
        try:
            text = f.text
        except (OSError, UnicodeDecodeError):
            continue
        yield from (piece for piece in _WHITESPACE_RUN.split(text) if piece)


def train_tokenizer(files: Sequence[SourceFile], vocab_size: int = 12288, out_dir: str | Path | None = WEIGHTS_DIR,
                    max_bytes: int = 150_000_000, seed: int = 0, min_frequency: int = 2) -> TokenizerWrapper:
    """Train on (a sample of) `files` and, unless out_dir is None, save it where transformers finds it.

    `vocab_size` counts everything: specials, byte alphabet, merges and the whitespace tokens.
    """
    n_ws = len(WHITESPACE_TOKENS)
    if vocab_size <= len(SPECIAL_TOKENS) + 256 + n_ws:
        raise ValueError(f"vocab_size {vocab_size} leaves no room for merges")
    tok = new_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - n_ws, min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), max_token_length=32, show_progress=False,
    )
    sample = sample_training_text(files, max_bytes, seed)
    tok.train_from_iterator(_training_chunks(sample), trainer=trainer)
    tok.add_tokens([AddedToken(w, normalized=False, special=False) for w in WHITESPACE_TOKENS])
    wrapper = TokenizerWrapper(tok)
    if out_dir is not None:
        save_tokenizer(wrapper, out_dir)
    return wrapper


def save_tokenizer(tok: TokenizerWrapper, out_dir: str | Path) -> None:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json (transformers' layout)."""
    from transformers import PreTrainedTokenizerFast

    named = {"<pad>", "<eos>", "<bos>", "<mask>"}
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok.tokenizer, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
        mask_token="<mask>", additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in named],
        add_bos_token=False, add_eos_token=False, clean_up_tokenization_spaces=False, split_special_tokens=True,
        padding_side="left", model_max_length=1 << 20,
    )
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(str(out_dir))


def load_tokenizer(path_or_dir: str | Path = WEIGHTS_DIR) -> TokenizerWrapper:
    """Load tokenizer.json from a file or a directory (offline; no transformers needed)."""
    path = Path(path_or_dir)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer at {path}; train one with `python -m infill.train.tokenizer`")
    return TokenizerWrapper(Tokenizer.from_file(str(path)))


def main(argv: list[str] | None = None) -> None:
    """Collect the local corpus, train the tokenizer, save it and the corpus manifest."""
    import argparse
    import time

    from .corpus import CorpusConfig, collect_corpus, write_manifest

    parser = argparse.ArgumentParser(prog="python -m infill.train.tokenizer", description=main.__doc__)
    parser.add_argument("--vocab-size", type=int, default=12288)
    parser.add_argument("--max-mb", type=float, default=150.0, help="training text cap, in MB")
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--workers", type=int, default=1, help="processes that read the corpus")
    parser.add_argument("--manifest-only", action="store_true", help="keep the saved tokenizer, rewrite the manifest")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    config = CorpusConfig(workers=args.workers)
    corpus = collect_corpus(config=config)
    print(f"corpus: {len(corpus)} files, {sum(f.size for f in corpus.files) / 1e6:.1f} MB "
          f"({time.perf_counter() - t0:.1f}s)")
    t0 = time.perf_counter()
    if args.manifest_only:
        tok = load_tokenizer(args.out)
    else:
        tok = train_tokenizer(corpus.split("train"), args.vocab_size, args.out, max_bytes=int(args.max_mb * 1e6))
        print(f"tokenizer: {tok.vocab_size} ids ({time.perf_counter() - t0:.1f}s) -> {args.out}")
    t0 = time.perf_counter()
    manifest = write_manifest(corpus, args.out / "corpus_manifest.json", tokenizer=tok, config=config)
    print(f"manifest: {manifest['tokens']} tokens ({time.perf_counter() - t0:.1f}s)")
    for name in ("train", "val"):
        for lang, entry in manifest["splits"][name]["languages"].items():
            print(f"{name} {lang}: {entry['files']} files, {entry['tokens']} tokens, "
                  f"{entry['tokens_per_char']:.4f} tokens/char")


if __name__ == "__main__":
    main()
