"""Source files -> fill-in-the-middle diffusion examples, in the layouts inference uses.

One example is one hole cut from a file: prefix | middle | suffix. The prefix and suffix become the
encoder prompt (`infill.prompt.encode_fim`), the middle becomes the clean canvas
(`infill.prompt.training_canvas`):

    open layout   canvas = MIDDLE <eos> <pad> ... (length L)   all L slots are noised
    seam layout   canvas = MIDDLE SUFFIX_HEAD <pad> ...         only the middle's slots are noised;
                                                                the suffix head and pads stay clean,
                                                                as inference clamps them

Holes come in two halves:
- structural: tree-sitter nodes (expressions, argument lists, statements, blocks, function bodies),
  the rest of a line after a cursor, whole lines. Without tree-sitter, or for a language with no
  grammar, the same idea from lines and indentation (whole lines, rest of line, indented blocks).
- random character spans, which may start or end inside a token.

Middle lengths are drawn in tokens, skewed short (most real holes are 4-40 tokens) but spread over
1..max_canvas-1.

Speed: each file is tokenized once and every hole's prompt copies its ids (`FileTokens`), which
gives the same ids as tokenizing the prompt text itself; about 350 examples (180k prompt+canvas
tokens) per CPU-second with a 384-token prompt.

    ds = FimDataset(corpus.split("train"), load_tokenizer(), ExampleConfig(), seed=0, batch_size=64)
    loader = DataLoader(ds, batch_size=None, num_workers=14)     # yields collate() dicts
"""

from __future__ import annotations

import bisect
import importlib
import math
import random
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..prompt import PromptConfig, SpecialIds, TextTokenizer, encode_fim, training_canvas
from .corpus import SourceFile, language_table


@dataclass(frozen=True)
class ExampleConfig:
    max_canvas: int = 128  # canvas slots; an open-layout middle plus <eos> must fit
    max_prompt_tokens: int = 512  # encoder budget for prefix + suffix (the prompt adds 4 special ids)
    structural_share: float = 0.5  # holes that follow syntax (or lines); the rest are random character spans
    seam_share: float = 0.25  # examples with a non-empty suffix that use the seam layout
    max_seam: int = 4  # seam layouts clamp 1..max_seam suffix tokens
    empty_share: float = 0.01  # empty middles (cursor where nothing is missing): the canvas is <eos> <pad>...
    median_middle: float = 14.0  # median middle length in tokens of the skewed-short draw
    long_share: float = 0.2  # middles drawn log-uniformly over 1..max_canvas-1 instead
    holes_per_kb: float = 1.0  # holes cut from a file per KB of text, at least 1 ...
    max_holes_per_file: int = 16  # ... and at most this many
    use_tree_sitter: bool = True  # False: line/indentation holes only (what a box without tree-sitter gets)
    reuse_file_tokens: bool = True  # tokenize each file once and reuse it for every hole's prompt

    @property
    def prompt_len(self) -> int:
        """Longest encoder prompt: <bos> <fim_suffix> SUFFIX <fim_prefix> PREFIX <fim_middle>."""
        return self.max_prompt_tokens + 4


@dataclass(frozen=True)
class Example:
    encoder_ids: tuple[int, ...]
    canvas: tuple[int, ...]  # length L: the clean target
    free: int  # slots a sampler would denoise: L (open) or len(middle) (seam)
    kind: str  # how the hole was cut: "expression", "block", "line", "random", ... plus "/open" or "/seam"
    prefix_ids: tuple[int, ...]  # the prompt's prefix and suffix after truncation, for previews and tests
    middle_ids: tuple[int, ...]
    suffix_ids: tuple[int, ...]


# ----------------------------------------------------------------------------- the file being cut

class FileView:
    """A file's text with line offsets and, when available, its tree-sitter tree."""

    def __init__(self, text: str, language: str | None, use_tree_sitter: bool = True) -> None:
        self.text = text
        self.language = language
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.tree = parse_or_none(text, language) if use_tree_sitter else None
        self._ascii = text.isascii()
        self._utf8 = None if self._ascii else text.encode("utf-8")

    # Offsets: tree-sitter speaks UTF-8 bytes, everything else code points.
    def to_byte(self, offset: int) -> int:
        return offset if self._ascii else len(self.text[:offset].encode("utf-8"))

    def to_char(self, byte: int) -> int:
        return byte if self._ascii else len(self._utf8[:byte].decode("utf-8", errors="ignore"))

    def line_span(self, i: int) -> tuple[int, int]:
        """(start, end) of line i, end excluding its newline (and the \\r of a CRLF)."""
        start = self.line_starts[i]
        end = self.line_starts[i + 1] - 1 if i + 1 < len(self.line_starts) else len(self.text)
        if end > start and self.text[end - 1] == "\r":
            end -= 1
        return start, end

    def content_start(self, i: int) -> int:
        start, end = self.line_span(i)
        line = self.text[start:end]
        return start + len(line) - len(line.lstrip(" \t"))

    def indent(self, i: int) -> int:
        return self.content_start(i) - self.line_starts[i]

    def is_blank(self, i: int) -> bool:
        start, end = self.line_span(i)
        return not self.text[start:end].strip()

    def random_code_line(self, rng: random.Random, tries: int = 8) -> int | None:
        for _ in range(tries):
            i = rng.randrange(len(self.line_starts))
            if not self.is_blank(i):
                return i
        return None


_ts_state: dict[str, object] = {}


def parse_or_none(text: str, language: str | None):
    """The tree-sitter tree of `text`, or None: no language, tree-sitter missing, grammar missing."""
    if language is None or _ts_state.get("missing"):
        return None
    try:
        syntax = importlib.import_module("infill.syntax")  # imports tree_sitter: absent on some training machines
    except ImportError:
        _ts_state["missing"] = True
        return None
    try:
        return syntax.parse(text, language)
    except Exception:  # a grammar wheel that is not installed or does not load: fall back to lines
        return None


class FileTokens:
    """A TextTokenizer for substrings of one file that reuses one tokenization of the whole file.

    Tokenizing the prompt is most of the cost of an example, and the holes of one file share it.
    `encode(s)` for s = text[x:y] re-encodes only the partial lines at both ends and copies the
    file's tokens in between. The copy is cut at *safe* line starts: positions after a newline
    where both the added whitespace tokens and the pre-tokenizer split, so the ids are the ones
    `tok.encode(s)` returns (tests check it). Strings that are not substrings of the file around
    the current hole are encoded directly.
    """

    def __init__(self, tok: TextTokenizer, f: FileView, max_chars: int = 1 << 17) -> None:
        self.tok, self.f = tok, f
        self.hole = (0, 0)
        self.ids: list[int] = []
        self.at: dict[int, int] = {}  # safe line start -> index of the token that starts there
        self.safe: list[int] = []  # sorted safe line starts
        if len(f.text) > max_chars or not hasattr(tok, "encode_offsets"):
            return  # a huge file: direct encoding per hole is cheaper than tokenizing it all
        self.ids, offsets = tok.encode_offsets(f.text)
        starts: dict[int, int] = {}
        for k, (a, _) in enumerate(offsets):
            starts.setdefault(a, k)
        text = f.text
        for q in f.line_starts[1:]:
            if q in starts and self._safe_at(text, q):
                self.at[q] = starts[q]
                self.safe.append(q)

    @staticmethod
    def _safe_at(text: str, q: int) -> bool:
        """Whether a line start splits the same way in any substring (not before a blank-ish line)."""
        c = text[q : q + 1]
        if c in ("", "\r", "\n"):
            return False
        return not (c == " " and text[q + 1 : q + 2] in ("", "\r", "\n", "\t"))

    def encode(self, s: str) -> list[int]:
        a, b = self.hole
        text = self.f.text
        if self.safe and len(s) <= a and text.startswith(s, a - len(s)):
            return self.encode_range(a - len(s), a)
        if self.safe and text.startswith(s, b):
            return self.encode_range(b, b + len(s))
        return self.tok.encode(s)

    def encode_range(self, x: int, y: int) -> list[int]:
        i = bisect.bisect_left(self.safe, x)
        j = bisect.bisect_right(self.safe, y) - 1
        if i > j:
            return self.tok.encode(self.f.text[x:y])
        q1, q2 = self.safe[i], self.safe[j]
        head = self.tok.encode(self.f.text[x:q1]) if x < q1 else []
        tail = self.tok.encode(self.f.text[q2:y]) if q2 < y else []
        return head + self.ids[self.at[q1] : self.at[q2]] + tail

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids)


# ----------------------------------------------------------------------------- hole finders
# Each takes (file, rng, target_chars) and returns (start, end, kind) in code points, or None.

Span = tuple[int, int, str]

_BLOCK_TYPES = ("block", "body", "compound_statement", "statement_block", "declaration_list",
                "field_declaration_list", "class_body", "enum_body", "chunk")


def _category(node_type: str) -> str:
    if "argument" in node_type or "parameter" in node_type:
        return "arguments"
    if any(t in node_type for t in _BLOCK_TYPES):
        return "block"
    if any(t in node_type for t in ("statement", "declaration", "definition", "clause", "item")):
        return "statement"
    return "expression"


def node_hole(f: FileView, rng: random.Random, target: int) -> Span | None:
    """A syntax node around a random position, the one whose size is closest to the target."""
    if f.tree is None:
        return None
    i = f.random_code_line(rng)
    if i is None:
        return None
    start, end = f.content_start(i), f.line_span(i)[1]
    pos = f.to_byte(rng.randrange(start, max(start + 1, end)))
    node = f.tree.root_node.named_descendant_for_byte_range(pos, pos)
    best, best_err = None, math.inf
    while node is not None and node.parent is not None:  # the root (whole file) is never a hole
        size = node.end_byte - node.start_byte
        if size > 0 and node.type != "comment":
            err = abs(math.log(size / target))
            if err < best_err:
                best, best_err = node, err
        if size > 4 * target:
            break
        node = node.parent
    if best is None:
        return None
    return f.to_char(best.start_byte), f.to_char(best.end_byte), _category(best.type)


_WORD_BOUNDARY = re.compile(r"\b|(?<=[^\w\s])|(?=[^\w\s])")


def rest_of_line_hole(f: FileView, rng: random.Random, target: int) -> Span | None:
    """A cursor inside a line (at a token start with a tree, a word boundary without) to the line's end."""
    i = f.random_code_line(rng)
    if i is None:
        return None
    start, end = f.content_start(i), f.line_span(i)[1]
    if f.tree is not None:
        pos = f.to_byte(rng.randrange(start, max(start + 1, end)))
        leaf = f.tree.root_node.descendant_for_byte_range(pos, pos)
        cursor = max(start, f.to_char(leaf.start_byte)) if leaf is not None else start
    else:
        stops = [m.start() for m in _WORD_BOUNDARY.finditer(f.text, start, end) if m.start() < end] or [start]
        cursor = rng.choice(stops)
    # Often the hole goes on over the next lines, as when the cursor sits before a whole statement.
    stop = end
    j = i
    while stop - cursor < target and j + 1 < len(f.line_starts) and rng.random() < 0.5:
        j += 1
        stop = f.line_span(j)[1]
    return cursor, stop, "rest_of_line"


def lines_hole(f: FileView, rng: random.Random, target: int) -> Span | None:
    """Whole lines from the indentation of the first to the end of the last (the cursor on an empty line)."""
    i = f.random_code_line(rng)
    if i is None:
        return None
    start, stop = f.content_start(i), f.line_span(i)[1]
    j = i
    while stop - start < target * 0.7 and j + 1 < len(f.line_starts):
        j += 1
        stop = f.line_span(j)[1]
    return start, stop, "line" if j == i else "lines"


def indented_block_hole(f: FileView, rng: random.Random, target: int, search: int = 200) -> Span | None:
    """The body under a line that opens a block (the next code line is indented deeper).

    The editor case "empty body after `def ...:` or `{`": the prefix ends with the header and the
    body's indentation, the middle is the body, the suffix starts at the line that closes the block.
    Takes the first block after a random line whose body is at most about twice the target.
    """
    n = len(f.line_starts)
    first = rng.randrange(n)
    for i in range(first, min(n - 1, first + search)):
        if f.is_blank(i):
            continue
        body = next((k for k in range(i + 1, min(n, i + 8)) if not f.is_blank(k)), None)
        if body is None or f.indent(body) <= f.indent(i):
            continue
        start, stop = f.content_start(body), f.line_span(body)[1]
        for k in range(body + 1, n):
            if stop - start > 2 * target:
                break
            if f.is_blank(k):
                continue
            if f.indent(k) <= f.indent(i):
                break
            stop = f.line_span(k)[1]
        if stop - start <= 2 * target:
            return start, stop, "block"
    return None


def random_span_hole(f: FileView, rng: random.Random, target: int) -> Span | None:
    """Any character span: it may start and end inside tokens, lines or words."""
    n = len(f.text)
    length = max(1, min(n, int(target * rng.uniform(0.5, 1.5))))
    start = rng.randrange(0, n - length + 1)
    return start, start + length, "random"


# (finder, weight) for files with a tree, and for files without one.
SYNTAX_FINDERS: tuple[tuple[Callable[..., Span | None], float], ...] = (
    (node_hole, 0.5), (rest_of_line_hole, 0.2), (lines_hole, 0.15), (indented_block_hole, 0.15))
LINE_FINDERS: tuple[tuple[Callable[..., Span | None], float], ...] = (
    (lines_hole, 0.35), (rest_of_line_hole, 0.35), (indented_block_hole, 0.3))


# ----------------------------------------------------------------------------- examples

def draw_middle_length(rng: random.Random, cfg: ExampleConfig) -> int:
    """Target middle length in tokens: log-normal around `median_middle`, or log-uniform for `long_share`."""
    hi = cfg.max_canvas - 1
    if rng.random() < cfg.long_share:
        return max(1, min(hi, int(math.exp(rng.uniform(0.0, math.log(hi + 1))))))
    return max(1, min(hi, round(cfg.median_middle * math.exp(rng.gauss(0.0, 0.9)))))


def draw_canvas_length(rng: random.Random, need: int, cfg: ExampleConfig) -> int:
    """need (middle + end/seam) plus slack: none, a bit (up to 1.5x), or anything up to max_canvas."""
    room = cfg.max_canvas - need
    u = rng.random()
    if u < 0.25 or room <= 0:
        slack = 0
    elif u < 0.75:
        slack = int(need * rng.uniform(0.0, 1.5))
    else:
        slack = rng.randint(0, room)
    return need + min(slack, room)


class ExampleMaker:
    """Cuts holes from files and builds examples. Keeps a running chars-per-token estimate to size holes."""

    def __init__(self, tok: TextTokenizer, ids: SpecialIds, cfg: ExampleConfig = ExampleConfig()) -> None:
        self.tok, self.ids, self.cfg = tok, ids, cfg
        self.chars_per_token = 3.0

    def holes_for(self, text: str) -> int:
        return max(1, min(self.cfg.max_holes_per_file, round(len(text) / 1024 * self.cfg.holes_per_kb)))

    def from_text(self, text: str, language: str | None, rng: random.Random, n: int | None = None) -> list[Example]:
        """Up to n examples (default: by file size) from one file's text."""
        if not text.strip():
            return []
        view = FileView(text, language, self.cfg.use_tree_sitter)
        cached = FileTokens(self.tok, view) if self.cfg.reuse_file_tokens else None
        out = []
        for _ in range(self.holes_for(text) if n is None else n):
            ex = self.one(view, rng, cached)
            if ex is not None:
                out.append(ex)
        return out

    def one(self, f: FileView, rng: random.Random, cached: FileTokens | None = None, tries: int = 4) -> Example | None:
        cfg = self.cfg
        target = draw_middle_length(rng, cfg)
        for _ in range(tries):
            span = self._span(f, rng, max(1, int(target * self.chars_per_token)))
            if span is None:
                continue
            start, end, kind = span
            if rng.random() < cfg.empty_share:
                end, kind = start, "empty"
            if cached is not None:
                cached.hole = (start, end)
            ex = self.build(f.text[:start], f.text[start:end], f.text[end:], kind, rng, cached)
            if ex is not None:
                return ex
            target = max(1, target // 2)  # the middle did not fit: try a smaller hole
        return None

    def _span(self, f: FileView, rng: random.Random, target_chars: int) -> Span | None:
        if rng.random() >= self.cfg.structural_share:
            return random_span_hole(f, rng, target_chars)
        finders = SYNTAX_FINDERS if f.tree is not None else LINE_FINDERS
        finder = rng.choices([fn for fn, _ in finders], [w for _, w in finders])[0]
        return finder(f, rng, target_chars) or lines_hole(f, rng, target_chars) or random_span_hole(f, rng, target_chars)

    def build(self, prefix: str, middle: str, suffix: str, kind: str, rng: random.Random,
              prompt_tok: TextTokenizer | None = None) -> Example | None:
        """One example from a cut, or None when the middle does not fit the canvas."""
        cfg = self.cfg
        middle_ids = self.tok.encode(middle)
        if middle:
            self.chars_per_token += 0.01 * (len(middle) / len(middle_ids) - self.chars_per_token)
        if len(middle_ids) + 1 > cfg.max_canvas:
            return None
        seam_k = rng.randint(1, cfg.max_seam) if suffix and rng.random() < cfg.seam_share else 0
        prompt = encode_fim(prompt_tok or self.tok, self.ids, prefix, suffix,
                            PromptConfig(max_prompt_tokens=cfg.max_prompt_tokens, seam_tokens=seam_k))
        seam = list(prompt.seam_ids)
        if seam and len(middle_ids) + len(seam) > cfg.max_canvas:
            seam = seam[: cfg.max_canvas - len(middle_ids)]
        if seam and not middle_ids:
            seam = []  # a seam canvas with no free slot teaches nothing
        need = len(middle_ids) + (len(seam) if seam else 1)
        length = draw_canvas_length(rng, need, cfg)
        canvas = training_canvas(middle_ids, length, self.ids, seam or None)
        return Example(
            encoder_ids=prompt.encoder_ids, canvas=tuple(canvas),
            free=len(middle_ids) if seam else length, kind=f"{kind}/{'seam' if seam else 'open'}",
            prefix_ids=prompt.prefix_ids, middle_ids=tuple(middle_ids), suffix_ids=prompt.suffix_ids,
        )


# ----------------------------------------------------------------------------- batches

def collate(examples: Sequence[Example], prompt_len: int | None = None, canvas_len: int | None = None,
            pad_id: int = 0) -> dict[str, torch.Tensor]:
    """A batch with static shapes when prompt_len / canvas_len are given.

    input_ids (B, P)            encoder prompt, LEFT-padded with pad
    attention_mask (B, P)       1 on real prompt tokens
    position_ids (B, P)         0.. over the real tokens (pads get 0)
    canvas (B, Lb)              clean canvases, right-extended with pad
    noise_mask (B, Lb) bool     slots that get noised: the first `free` of each row
    decoder_position_ids (B, Lb) real prompt length + arange(Lb)
    free (B,), length (B,)      each row's free slots and own canvas length L
    """
    P = prompt_len or max(len(e.encoder_ids) for e in examples)
    Lb = canvas_len or max(len(e.canvas) for e in examples)
    rows, canvases = [], []
    for e in examples:
        if len(e.encoder_ids) > P or len(e.canvas) > Lb:
            raise ValueError(f"example does not fit the batch shape: prompt {len(e.encoder_ids)} > {P} "
                             f"or canvas {len(e.canvas)} > {Lb}")
        rows.append([pad_id] * (P - len(e.encoder_ids)) + list(e.encoder_ids))
        canvases.append(list(e.canvas) + [pad_id] * (Lb - len(e.canvas)))
    prompt_lengths = torch.tensor([len(e.encoder_ids) for e in examples])  # (B,)
    input_ids = torch.tensor(rows, dtype=torch.long)  # (B, P)
    attention_mask = (torch.arange(P) >= (P - prompt_lengths)[:, None]).long()  # (B, P)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # (B, P)
    free = torch.tensor([e.free for e in examples])  # (B,)
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "position_ids": position_ids,
        "canvas": torch.tensor(canvases, dtype=torch.long),  # (B, Lb)
        "noise_mask": torch.arange(Lb) < free[:, None],  # (B, Lb)
        "decoder_position_ids": prompt_lengths[:, None] + torch.arange(Lb),  # (B, Lb)
        "free": free,
        "length": torch.tensor([len(e.canvas) for e in examples]),
    }


class FimDataset(IterableDataset):
    """An endless (or `epochs`-long) stream of examples from files, sharded across DataLoader workers.

    Each worker reads its own share of the files in a per-epoch shuffled order, cuts several holes
    per file, and mixes examples of different files through a shuffle buffer. With `batch_size` it
    yields `collate()` dicts of static shape (prompt_len = cfg.prompt_len, canvas_len = cfg.max_canvas),
    which keeps inter-process traffic low: use DataLoader(ds, batch_size=None, num_workers=N).
    """

    def __init__(self, files: Sequence[SourceFile | str | Path], tokenizer: TextTokenizer, cfg: ExampleConfig = ExampleConfig(),
                 seed: int = 0, epochs: int | None = None, batch_size: int | None = None,
                 shuffle_buffer: int = 1024) -> None:
        super().__init__()
        self.files = [f if isinstance(f, SourceFile) else Path(f) for f in files]
        self.tok, self.cfg, self.seed, self.epochs = tokenizer, cfg, seed, epochs
        self.batch_size, self.shuffle_buffer = batch_size, shuffle_buffer
        special = getattr(tokenizer, "special_ids", None)
        if special is None:
            raise ValueError("the tokenizer must provide special_ids() (use infill.train.tokenizer.load_tokenizer)")
        self.ids: SpecialIds = special()
        self._language_of = language_table()

    def _read(self, f: SourceFile | Path) -> tuple[str, str | None] | None:
        try:
            if isinstance(f, SourceFile):
                return f.text, f.language
            return f.read_text(encoding="utf-8"), self._language_of(str(f))
        except (OSError, UnicodeDecodeError):
            return None

    def examples(self) -> Iterator[Example]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        maker = ExampleMaker(self.tok, self.ids, self.cfg)
        rng = random.Random(f"{self.seed}/{worker}")
        buffer: list[Example] = []
        epoch = 0
        while self.epochs is None or epoch < self.epochs:
            order = list(range(len(self.files)))
            random.Random(f"{self.seed}/epoch{epoch}").shuffle(order)
            for k in order[worker::workers]:
                read = self._read(self.files[k])
                if read is None:
                    continue
                for ex in maker.from_text(read[0], read[1], rng):
                    if len(buffer) < self.shuffle_buffer:
                        buffer.append(ex)
                        continue
                    j = rng.randrange(len(buffer))
                    buffer[j], ex = ex, buffer[j]
                    yield ex
            epoch += 1
        rng.shuffle(buffer)
        yield from buffer

    def __iter__(self) -> Iterator:
        if self.batch_size is None:
            yield from self.examples()
            return
        batch: list[Example] = []
        for ex in self.examples():
            batch.append(ex)
            if len(batch) == self.batch_size:
                yield collate(batch, self.cfg.prompt_len, self.cfg.max_canvas, self.ids.pad)
                batch = []
        if batch:
            yield collate(batch, self.cfg.prompt_len, self.cfg.max_canvas, self.ids.pad)


# ----------------------------------------------------------------------------- eyeballing

def preview(examples: Sequence[Example], tok: TextTokenizer, context: int = 160, file=None) -> None:
    """Print prefix | middle | suffix (the prefix tail and suffix head) and the canvas of each example."""
    for e in examples:
        prefix, middle, suffix = tok.decode(list(e.prefix_ids)), tok.decode(list(e.middle_ids)), tok.decode(list(e.suffix_ids))
        print(f"--- {e.kind}: middle {len(e.middle_ids)} tokens, canvas {len(e.canvas)}, free {e.free}, "
              f"prompt {len(e.encoder_ids)}", file=file)
        print(f"{prefix[-context:]}\u2503{middle}\u2503{suffix[:context]}", file=file)
