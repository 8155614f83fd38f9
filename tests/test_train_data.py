"""Training data: corpus collection, the bundled tokenizer, FIM examples and batches."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from infill.prompt import SPECIAL_TOKENS, WHITESPACE_TOKENS
from infill.train.corpus import (
    CorpusConfig,
    SourceFile,
    choose_val_packages,
    collect_corpus,
    read_licence,
    write_manifest,
)
from infill.train.examples import (
    Example,
    ExampleConfig,
    ExampleMaker,
    FileTokens,
    FileView,
    FimDataset,
    collate,
    indented_block_hole,
    lines_hole,
    preview,
    rest_of_line_hole,
)
from infill.train.tokenizer import WEIGHTS_DIR, load_tokenizer, special_ids, train_tokenizer

TRICKY = [
    "",
    "def f(x):\n\treturn x  # tab\n",
    "a = 1\r\nb = 2\r\n",
    "mixed\r\nline\nends\r",
    " " * 70 + "x" + "\t" * 11 + "y",
    "   \n\n\t \t  \r\n  ",
    "s = 'é中文😀 ünïcödé'  # \u00a0nbsp \u2028 sep\n",
    "literal <eos> and <pad> and <fim_middle> in code",
    "ĠĠ Ċ ĉ byte-level look-alikes",
    "x=123456789012;y=0.5e-3",
    "\x0b\x0c form feeds \x1b escapes",
]

PY_SOURCE = '''import os


class Greeter:
    """Says hello."""

    def __init__(self, name: str) -> None:
        self.name = name

    def greet(self, loud: bool = False) -> str:
        text = f"hello, {self.name}"
        if loud:
            text = text.upper() + "!"
        return text


def main(argv=None):
    g = Greeter(os.environ.get("USER", "world"))
    for i in range(3):
        print(i, g.greet(loud=i % 2 == 0))
    return 0
'''


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(WEIGHTS_DIR)


# ----------------------------------------------------------------------------- tokenizer

def test_bundled_tokenizer_round_trips_tricky_strings(tok):
    for s in TRICKY:
        assert tok.decode(tok.encode(s)) == s, repr(s)


def test_bundled_tokenizer_round_trips_real_files(tok):
    files = sorted(Path(random.__file__).parent.glob("[a-s]*.py"))[:40]
    texts = [p.read_text(encoding="utf-8") for p in files]
    for text, ids in zip(texts, tok.encode_batch(texts), strict=True):
        assert tok.decode(ids) == text


def test_special_and_whitespace_ids_are_fixed(tok):
    for i, name in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(name) == i
    assert tok.vocab_size == 12288
    first_ws = tok.vocab_size - len(WHITESPACE_TOKENS)
    for i, ws in enumerate(WHITESPACE_TOKENS):
        assert tok.token_to_id(ws) == first_ws + i
    assert tok.encode("        return") [0] == tok.token_to_id(" " * 8)
    assert tok.encode("\t\treturn")[0] == tok.token_to_id("\t\t")
    # Literal special-token text is text, never a special id.
    assert not set(tok.encode("<eos><pad><bos>")) & set(range(len(SPECIAL_TOKENS)))


def test_special_ids():
    ids = special_ids()
    assert (ids.pad, ids.eos, ids.bos, ids.mask) == (0, (1,), 2, 9)
    assert (ids.fim_prefix, ids.fim_suffix, ids.fim_middle) == (6, 7, 8)
    assert ids.pad not in ids.banned and ids.eos[0] not in ids.banned
    assert set(ids.banned) == {2, 3, 4, 5, 6, 7, 8, 9, 10}


def test_decode_keeps_specials_only_when_asked(tok):
    ids = [2, *tok.encode("x = 1"), 1, 0]
    assert tok.decode(ids) == "x = 1"
    assert tok.decode(ids, keep_special=True) == "<bos>x = 1<eos><pad>"


def test_transformers_loads_the_bundled_tokenizer_offline(tok):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(WEIGHTS_DIR), local_files_only=True)
    assert (hf.pad_token, hf.eos_token, hf.bos_token, hf.mask_token) == ("<pad>", "<eos>", "<bos>", "<mask>")
    assert (hf.pad_token_id, hf.eos_token_id, hf.bos_token_id) == (0, 1, 2)
    for s in TRICKY:
        ids = hf.encode(s)  # default add_special_tokens=True must still add nothing
        assert ids == tok.encode(s), repr(s)
        assert hf.decode(ids) == s


def test_train_tokenizer_layout(tmp_path):
    files = []
    for i in range(6):
        p = tmp_path / f"m{i}.py"
        p.write_text(PY_SOURCE.replace("Greeter", f"Greeter{i}"), encoding="utf-8")
        files.append(SourceFile(p, "python", "pkg", "train", p.stat().st_size, "MIT"))
    t = train_tokenizer(files, vocab_size=400, out_dir=tmp_path / "out")
    assert t.vocab_size <= 400
    assert [t.token_to_id(s) for s in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    assert t.token_to_id("\t" * 8) == t.vocab_size - 1
    again = load_tokenizer(tmp_path / "out")
    for s in TRICKY + [PY_SOURCE]:
        assert again.decode(again.encode(s)) == s
    assert (tmp_path / "out" / "tokenizer_config.json").is_file()


# ----------------------------------------------------------------------------- corpus

def _write(root: Path, rel: str, text: str | bytes) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8", newline="")
    return p


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "lib" / "site-packages"
    _write(root, "alpha/__init__.py", "def a():\n    return 1\n")
    _write(root, "alpha/util.py", "def u(x):\n    return x * 2\n")
    _write(root, "alpha/copy.py", "def u(x):\r\n    return x * 2\r\n")  # duplicate after line-ending normalisation
    _write(root, "alpha-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: alpha\nLicense-Expression: MIT\n\nbody\n")
    _write(root, "alpha-1.0.dist-info/RECORD", "alpha/__init__.py,sha256=x,1\nalpha/util.py,,\n")
    _write(root, "beta.py", "import os\nprint(os.sep)\n")
    _write(root, "beta-2.0.dist-info/METADATA",
           "Name: beta\nClassifier: License :: OSI Approved :: BSD License\n\n")
    _write(root, "beta-2.0.dist-info/top_level.txt", "beta\n")
    _write(root, "gamma/main.c", "int main(void) { return 0; }\n")
    _write(root, "gamma/cls.h", "namespace g {\nclass A { int x; };\n}\n")
    _write(root, "gamma/shared/benchmarks/leak.py", "def leak(): pass\n")
    _write(root, "delta/human_eval/data.py", "def solve(): pass\n")
    _write(root, "delta/__pycache__/x.py", "cached = 1\n")
    _write(root, "delta/empty.py", "\n\n  \n")
    _write(root, "delta/latin1.py", "x = '\xe9'\n".encode("latin-1"))
    _write(root, "delta/min.js", "var a=1;" * 400)
    _write(root, "delta/big.py", "x = 1\n" * 100_000)
    _write(root, "delta/ok.py", "y = 2\n")
    _write(root, "delta/notes.txt", "not code\n")
    return root


def test_corpus_exclusions_and_dedup(site):
    corpus = collect_corpus([site], CorpusConfig(val_fraction=0.0))
    rel = sorted(str(f.path.relative_to(site)) for f in corpus.files)
    assert rel == ["alpha/__init__.py", "alpha/copy.py", "beta.py", "delta/ok.py", "gamma/cls.h", "gamma/main.c"] or \
        rel == ["alpha/__init__.py", "alpha/util.py", "beta.py", "delta/ok.py", "gamma/cls.h", "gamma/main.c"]
    assert corpus.skipped["duplicate"] == 1
    for reason in ("empty", "not utf-8", "minified or generated", "too large"):
        assert corpus.skipped[reason] == 1, reason
    assert not any("benchmarks" in str(f.path) or "human_eval" in str(f.path) for f in corpus.files)
    langs = {f.path.name: f.language for f in corpus.files}
    assert langs["cls.h"] == "cpp" and langs["main.c"] == "c"


def test_corpus_packages_and_licences(site, tmp_path):
    corpus = collect_corpus([site], CorpusConfig(val_fraction=0.0))
    by_name = {f.path.name: f for f in corpus.files}
    assert by_name["__init__.py"].package == "alpha" and by_name["__init__.py"].licence == "MIT"
    assert by_name["beta.py"].package == "beta" and by_name["beta.py"].licence == "BSD"
    assert by_name["main.c"].package == "gamma" and by_name["main.c"].licence == "unknown"
    manifest = write_manifest(corpus, tmp_path / "m.json")
    assert manifest["files"] == len(corpus) and manifest["licences"]["MIT"]["files"] == 2
    assert (tmp_path / "m.json").is_file()


def test_read_licence():
    assert read_licence("Name: x\nLicense-Expression: Apache-2.0\nLicense: whatever\n\n") == "Apache-2.0"
    assert read_licence("Classifier: License :: OSI Approved :: MIT License\n\n") == "MIT"
    assert read_licence("License: BSD-3-Clause\n\n") == "BSD-3-Clause"
    assert read_licence("Name: x\n\n") == "unknown"


def test_split_is_by_package_and_deterministic():
    sizes = {f"pkg{i}": (i % 7) + 1 for i in range(400)} | {"huge": 5000}
    a = choose_val_packages(sizes, 0.02)
    assert a == choose_val_packages(dict(reversed(list(sizes.items()))), 0.02)
    assert "huge" not in a
    share = sum(sizes[p] for p in a) / sum(sizes.values())
    assert 0.015 < share < 0.035


def test_corpus_split_keeps_packages_whole(site):
    corpus = collect_corpus([site], CorpusConfig(val_fraction=0.3))
    splits: dict[str, set[str]] = {}
    for f in corpus.files:
        splits.setdefault(f.package, set()).add(f.split)
    assert all(len(s) == 1 for s in splits.values())
    assert corpus.split("val") and corpus.split("train")
    with pytest.raises(ValueError):
        corpus.split("test")


# ----------------------------------------------------------------------------- examples

def _check_example(e: Example, tok, cfg: ExampleConfig) -> None:
    ids = special_ids()
    L = len(e.canvas)
    assert len(e.canvas) <= cfg.max_canvas and len(e.encoder_ids) <= cfg.prompt_len
    m = len(e.middle_ids)
    assert list(e.canvas[:m]) == list(e.middle_ids)
    if e.kind.endswith("/open"):
        assert e.free == L
        assert e.canvas[m] == ids.eos[0] and set(e.canvas[m + 1 :]) <= {ids.pad}
    else:
        k = len(e.canvas) - m - e.canvas[m:].count(ids.pad)
        assert e.free == m and 1 <= k <= cfg.max_seam
        assert list(e.canvas[m : m + k]) == list(e.suffix_ids[:k])
        assert ids.eos[0] not in e.canvas
    assert e.encoder_ids == (ids.bos, ids.fim_suffix, *e.suffix_ids, ids.fim_prefix, *e.prefix_ids, ids.fim_middle)


def _examples(tok, cfg: ExampleConfig, text: str = PY_SOURCE, language: str | None = "python", n: int = 200):
    maker = ExampleMaker(tok, special_ids(), cfg)
    return maker.from_text(text, language, random.Random(0), n=n)


def test_examples_layouts_and_reconstruction(tok):
    cfg = ExampleConfig(max_canvas=48, max_prompt_tokens=64, seam_share=0.5)
    exs = _examples(tok, cfg)
    assert len(exs) > 150
    kinds = {e.kind.split("/")[0] for e in exs}
    assert {"random", "expression", "rest_of_line"} <= kinds
    assert {e.kind.split("/")[1] for e in exs} == {"open", "seam"}
    for e in exs:
        _check_example(e, tok, cfg)
        region = tok.decode(list(e.prefix_ids)) + tok.decode(list(e.middle_ids)) + tok.decode(list(e.suffix_ids))
        assert region in PY_SOURCE
    assert any(len(e.prefix_ids) + len(e.suffix_ids) == 64 for e in exs)  # prompts get truncated to budget


def test_examples_without_tree_sitter(tok):
    cfg = ExampleConfig(max_canvas=64, max_prompt_tokens=128, use_tree_sitter=False)
    exs = _examples(tok, cfg)
    assert {"random", "rest_of_line", "block"} <= {e.kind.split("/")[0] for e in exs}
    for e in exs:
        _check_example(e, tok, cfg)
    lua = "local t = {}\nfor i = 1, 3 do\n  t[i] = i * 2\nend\nreturn t\n"  # any text, no grammar needed
    for e in _examples(tok, cfg, lua, language=None, n=30):
        _check_example(e, tok, cfg)


def test_no_tree_sitter_on_the_machine(tok, monkeypatch):
    """The GPU box may lack tree-sitter: file types still map, and holes fall back to lines."""
    import sys

    import infill.train.examples as examples
    from infill.syntax import language_for_path
    from infill.train.corpus import language_table

    monkeypatch.setitem(sys.modules, "infill.syntax", None)  # any import of it now fails
    monkeypatch.setattr(examples, "_ts_state", {})
    table = language_table()
    for name in ("a.py", "b.H", "c.tsx", "d.rs", "e.lua", "f.txt", "g"):
        assert table(name) == language_for_path(name)
    assert FileView(PY_SOURCE, "python").tree is None
    for e in _examples(tok, ExampleConfig(max_canvas=48, max_prompt_tokens=64), n=40):
        assert e.kind.split("/")[0] in {"random", "rest_of_line", "line", "lines", "block", "empty"}


def test_line_hole_finders():
    f = FileView(PY_SOURCE, None, use_tree_sitter=False)
    rng = random.Random(1)
    for finder in (lines_hole, rest_of_line_hole, indented_block_hole):
        for _ in range(20):
            span = finder(f, rng, 40)
            if span is None:
                continue
            start, end, _ = span
            assert 0 <= start <= end <= len(PY_SOURCE)
            assert end == len(PY_SOURCE) or PY_SOURCE[end] == "\n"  # line holes end at a line end
    crlf = PY_SOURCE.replace("\n", "\r\n")
    g = FileView(crlf, None, use_tree_sitter=False)
    for i in range(20):
        start, end, _ = lines_hole(g, random.Random(i), 40)
        assert crlf[end : end + 2] in ("\r\n", "") and "\r" not in crlf[end - 1 : end]
    block = next(s for s in (indented_block_hole(f, random.Random(i), 40) for i in range(50)) if s)
    assert PY_SOURCE[block[0] - 1] == " " and PY_SOURCE[block[0]] != " "


def test_file_tokens_match_direct_encoding(tok):
    text = (PY_SOURCE + "\r\n \n\n  x = 'é😀'\n \tdef g():\n\t\tpass\n") * 4
    f = FileView(text, "python", use_tree_sitter=False)
    cached = FileTokens(tok, f)
    assert cached.safe
    rng = random.Random(0)
    for _ in range(300):
        a = rng.randrange(len(text) + 1)
        b = rng.randrange(a, min(len(text), a + 80) + 1)
        cached.hole = (a, b)
        for s in (text[rng.randrange(a + 1) : a], text[b : rng.randrange(b, len(text) + 1)]):
            assert cached.encode(s) == tok.encode(s)


def test_empty_middle_ends_at_once(tok):
    cfg = ExampleConfig(max_canvas=32, max_prompt_tokens=64, empty_share=1.0, seam_share=0.0)
    e = _examples(tok, cfg, n=5)[0]
    assert e.middle_ids == () and e.canvas[0] == special_ids().eos[0] and e.kind == "empty/open"


def test_collate_shapes_padding_positions(tok):
    cfg = ExampleConfig(max_canvas=40, max_prompt_tokens=60, seam_share=0.5)
    exs = [e for e in _examples(tok, cfg, n=60)]
    exs = [next(e for e in exs if e.kind.endswith("/seam")), next(e for e in exs if e.kind.endswith("/open"))]
    b = collate(exs)
    P, Lb = max(len(e.encoder_ids) for e in exs), max(len(e.canvas) for e in exs)
    assert b["input_ids"].shape == b["attention_mask"].shape == b["position_ids"].shape == (2, P)
    assert b["canvas"].shape == b["noise_mask"].shape == b["decoder_position_ids"].shape == (2, Lb)
    fixed = collate(exs, prompt_len=cfg.prompt_len, canvas_len=cfg.max_canvas)
    assert fixed["input_ids"].shape == (2, cfg.prompt_len) and fixed["canvas"].shape == (2, cfg.max_canvas)
    for i, e in enumerate(exs):
        n, L = len(e.encoder_ids), len(e.canvas)
        row = fixed["input_ids"][i]
        assert row[-n:].tolist() == list(e.encoder_ids) and set(row[:-n].tolist()) <= {0}  # left padded
        assert fixed["attention_mask"][i].tolist() == [0] * (cfg.prompt_len - n) + [1] * n
        assert fixed["position_ids"][i, -n:].tolist() == list(range(n))
        assert fixed["canvas"][i, :L].tolist() == list(e.canvas) and not fixed["canvas"][i, L:].any()
        assert fixed["noise_mask"][i].tolist() == [True] * e.free + [False] * (cfg.max_canvas - e.free)
        assert fixed["decoder_position_ids"][i].tolist() == list(range(n, n + cfg.max_canvas))
    assert fixed["noise_mask"].dtype == torch.bool
    with pytest.raises(ValueError):
        collate(exs, prompt_len=4)


def test_dataset_streams_batches_and_shards(tok, tmp_path):
    paths = []
    for i in range(6):
        paths.append(_write(tmp_path, f"m{i}.py", PY_SOURCE.replace("Greeter", f"G{i}")))
    cfg = ExampleConfig(max_canvas=32, max_prompt_tokens=64)
    ds = FimDataset(paths, tok, cfg, seed=3, epochs=1, batch_size=8, shuffle_buffer=16)
    batches = list(ds)
    assert batches and all(b["input_ids"].shape[1] == cfg.prompt_len for b in batches)
    assert all(b["canvas"].shape[1] == cfg.max_canvas for b in batches)
    again = list(FimDataset(paths, tok, cfg, seed=3, epochs=1, batch_size=8, shuffle_buffer=16))
    assert all(torch.equal(x["canvas"], y["canvas"]) for x, y in zip(batches, again, strict=True))
    endless = iter(FimDataset(paths[:1], tok, cfg, seed=0, shuffle_buffer=8))
    assert all(isinstance(next(endless), Example) for _ in range(50))


def test_preview_prints(tok, capsys):
    preview(_examples(tok, ExampleConfig(max_canvas=32, max_prompt_tokens=64), n=3), tok)
    assert "\u2503" in capsys.readouterr().out


def test_corpus_leaves_out_proprietary_code(site):
    _write(site, "secret/__init__.py", "def s():\n    return 3\n")
    _write(site, "secret-1.0.dist-info/METADATA", "Name: secret\nLicense: Other/Proprietary License\n\n")
    _write(site, "secret-1.0.dist-info/top_level.txt", "secret\n")
    corpus = collect_corpus([site], CorpusConfig(val_fraction=0.0))
    assert not any(f.package == "secret" for f in corpus.files)
    assert corpus.skipped["licence"] == 1


def test_only_the_gpu_configuration_replaces_the_bundled_weights(tmp_path):
    from infill.train.cli import export_dir

    assert export_dir("gpu", None, tmp_path) == WEIGHTS_DIR
    assert export_dir("cpu", None, tmp_path) == tmp_path / "weights"  # an hour of CPU never replaces GPU weights
    assert export_dir("smoke", None, tmp_path) is None
    assert export_dir("cpu", tmp_path / "x", tmp_path) == tmp_path / "x"
