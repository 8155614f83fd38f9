"""How well `infill.spans.size_hole` guesses the canvas length, on HumanEval-Infilling.

For every row the true length is the canonical middle in tokens plus one end token. Two cases:

- cursor: the document is prompt + suffix and the cursor sits where the middle goes (what an editor sends);
- span: the document is prompt + canonical + suffix and the canonical middle is the selected range
  (a "regenerate this" request: the sizer sees the removed text, so this case is close to an oracle).

A row is covered when some candidate is at least the true length. Reported per set and case: coverage,
coverage of the first candidate, the median of (smallest covering candidate / true length) over covered
rows, the median of (first candidate / true length), the kind distribution, and the same figures for a
fixed 64- and 256-token canvas.

    python benchmarks/sizing.py [--tokenizer infill/weights/tokenizer.json] [--wait-minutes 60]

The tokenizer is the project's own; while it is missing the script polls for it, then falls back to a
small byte-level BPE trained here on the Python standard library (never on benchmark data).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import platform
import re
import statistics
import sys
import sysconfig
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infill.spans import SizingConfig, size_hole  # noqa: E402

DATA = Path("/work/shared/benchmarks/humaneval-infilling")
SETS = {"single-line": "HumanEval-SingleLineInfilling.jsonl.gz", "multi-line": "HumanEval-MultiLineInfilling.jsonl.gz"}
FIXED = (64, 256)  # baseline canvases
POLL_SECONDS = 60  # between checks for the project tokenizer
FALLBACK_VOCAB = 8192  # size of the stand-in BPE
FALLBACK_CHARS = 8_000_000  # standard-library text it is trained on


# -- tokenizer -------------------------------------------------------------------------------------------
def _stdlib_texts(limit: int) -> Iterator[str]:
    """Python files of the standard library (tests excluded), up to `limit` characters."""
    total = 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        if "test" in path.parts or "site-packages" in path.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        yield text
        total += len(text)
        if total >= limit:
            return


def train_fallback() -> Tokenizer:
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=FALLBACK_VOCAB, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(_stdlib_texts(FALLBACK_CHARS), trainer)
    return tok


def load_tokenizer(path: Path, wait_minutes: float) -> tuple[Tokenizer, str]:
    deadline = time.monotonic() + wait_minutes * 60
    while not path.exists() and time.monotonic() < deadline:
        print(f"waiting for {path} ...", file=sys.stderr, flush=True)
        time.sleep(POLL_SECONDS)
    if path.exists():
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        return Tokenizer.from_file(str(path)), f"{shown} (sha256 {digest}, {time.ctime(path.stat().st_mtime)})"
    print(f"{path} did not appear; training a stand-in BPE on the standard library", file=sys.stderr)
    return train_fallback(), (f"FALLBACK: byte-level BPE, {FALLBACK_VOCAB} vocab, trained on "
                              f"{FALLBACK_CHARS // 1_000_000}M chars of the Python standard library")


# -- measurement -----------------------------------------------------------------------------------------
@dataclass
class Tally:
    """Figures for one candidate policy on one set."""

    covering: list[float] = field(default_factory=list)  # smallest covering candidate / true, covered rows
    first: list[float] = field(default_factory=list)  # first candidate / true, every row
    largest: list[int] = field(default_factory=list)  # the largest candidate (what a batch costs), every row
    first_covers: int = 0
    candidates: int = 0  # total candidates, for the mean
    kinds: Counter = field(default_factory=Counter)
    by_problem: dict[str, list[bool]] = field(default_factory=dict)  # HumanEval problem -> covered per row

    def add(self, lengths: tuple[int, ...], true: int, kind: str | None, task_id: str) -> None:
        covering = [n for n in lengths if n >= true]
        if covering:
            self.covering.append(covering[0] / true)
        self.first.append(lengths[0] / true)
        self.largest.append(lengths[-1])
        self.first_covers += lengths[0] >= true
        self.candidates += len(lengths)
        if kind:
            self.kinds[kind] += 1
        problem = task_id.split("/", 1)[1].rsplit("/", 1)[0]  # "SingleLineInfilling/HumanEval/0/L1" -> "HumanEval/0"
        self.by_problem.setdefault(problem, []).append(bool(covering))

    def summary(self) -> dict:
        rows = len(self.first)
        median = lambda xs: round(statistics.median(xs), 3) if xs else None  # noqa: E731
        per_problem = [sum(c) / len(c) for c in self.by_problem.values()]
        out = {
            "rows": rows,
            "coverage": round(len(self.covering) / rows, 4),
            "coverage_largest": round(len(self.covering) / rows, 4),  # candidates ascend: the same figure
            "coverage_per_problem": round(statistics.mean(per_problem), 4),  # each problem weighs the same
            "coverage_first": round(self.first_covers / rows, 4),
            "median_covering_ratio": median(self.covering),
            "median_first_ratio": median(self.first),
            "median_largest": median(self.largest),
            "mean_candidates": round(self.candidates / rows, 2),
        }
        if self.kinds:
            out["kinds"] = dict(self.kinds.most_common())
        return out


def read_rows(name: str, data: Path, limit: int | None) -> list[dict]:
    with gzip.open(data / SETS[name], "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return rows[:limit] if limit else rows


@dataclass(frozen=True)
class Case:
    """One hole cut from a row: the document, the cursor or span, and the true middle."""

    text: str
    middle: str
    cursor: int | None = None
    span: tuple[int, int] | None = None


def cursor_case(row: dict) -> Case | None:
    return Case(row["prompt"] + row["suffix"], row["canonical_solution"], cursor=len(row["prompt"]))


def span_case(row: dict) -> Case | None:
    prompt, middle = row["prompt"], row["canonical_solution"]
    return Case(prompt + middle + row["suffix"], middle, span=(len(prompt), len(prompt) + len(middle)))


def rest_of_line_case(row: dict) -> Case | None:
    """The first word of the middle is typed; the rest of its line is the hole (the line break stays)."""
    middle = row["canonical_solution"]
    line = middle.rstrip("\n")
    typed = FIRST_WORD.match(line)
    if "\n" in line or typed is None or typed.end() >= len(line):
        return None
    text = row["prompt"] + line[: typed.end()] + middle[len(line) :] + row["suffix"]
    return Case(text, line[typed.end() :], cursor=len(row["prompt"]) + typed.end())


def in_brackets_case(row: dict) -> Case | None:
    """The arguments of the middle's first call or literal are the hole: `foo(|)` with the rest of the line."""
    middle = row["canonical_solution"]
    opening = FIRST_BRACKETS.search(middle)
    if "\n" in middle.rstrip("\n") or opening is None:
        return None
    inner_start, inner_end = opening.start(1), opening.end(1)
    text = row["prompt"] + middle[:inner_start] + middle[inner_end:] + row["suffix"]
    return Case(text, middle[inner_start:inner_end], cursor=len(row["prompt"]) + inner_start)


FIRST_WORD = re.compile(r"\s*[\w.]+\s?")
FIRST_BRACKETS = re.compile(r"[(\[{]([^()\[\]{}\n]+)[)\]}]")  # innermost-level brackets with content
# case name -> (how to cut the hole, the sets it applies to)
CASES: dict[str, tuple[Callable[[dict], Case | None], tuple[str, ...]]] = {
    "cursor": (cursor_case, tuple(SETS)),
    "span": (span_case, tuple(SETS)),
    "rest-of-line": (rest_of_line_case, ("single-line",)),
    "in-brackets": (in_brackets_case, ("single-line",)),
}


def measure_set(name: str, rows: list[dict], count: Callable[[str], int], cfg: SizingConfig) -> dict:
    tallies = {case: Tally() for case, (_, sets) in CASES.items() if name in sets}
    fixed = {n: Tally() for n in FIXED}
    for row in rows:
        for case_name, tally in tallies.items():
            case = CASES[case_name][0](row)
            if case is None:
                continue
            true = count(case.middle) + 1  # the canvas holds the middle and one end token
            hole = size_hole(case.text, "python", cursor=case.cursor, span=case.span, count_tokens=count, config=cfg)
            tally.add(hole.lengths, true, hole.kind.value, row["task_id"])
            if case_name == "cursor":
                for n, baseline in fixed.items():
                    baseline.add((n,), true, None, row["task_id"])
    true_lengths = [count(row["canonical_solution"]) + 1 for row in rows]
    return {
        "true_length": {"median": statistics.median(true_lengths), "max": max(true_lengths)},
        **{case: tally.summary() for case, tally in tallies.items()},
        **{f"fixed_{n}": tally.summary() for n, tally in fixed.items()},
    }


# -- report ----------------------------------------------------------------------------------------------
def markdown(results: dict) -> str:
    lines = [
        "# Canvas sizing on HumanEval-Infilling",
        "",
        f"Command: `{results['command']}`  ",
        f"Machine: {results['machine']}  ",
        f"Tokenizer: {results['tokenizer']}  ",
        f"Date: {results['date']}, {results['seconds']} s",
        "",
        "True length = tokens of the middle + 1 end token. Covered = some candidate >= true length (candidates",
        "ascend, so this is also the coverage of the largest one). Per problem = coverage averaged over the 164",
        "problems (one problem has 435 of the 5815 multi-line rows). Covering ratio = smallest covering",
        "candidate / true length, over covered rows. Cases: cursor = prompt + suffix with the cursor at the",
        "hole; span = the canonical middle selected (the sizer sees the removed text: close to an oracle);",
        "rest-of-line = the middle's first word typed, the rest of its line missing; in-brackets = the",
        "contents of the middle's first bracket pair missing (`foo(|)`). fixed_N = one N-token canvas.",
        "Median largest = the longest candidate, which sets the batch's canvas length (its cost).",
        "The ladder defaults in `SizingConfig` were chosen by looking at these same sets (a handful of",
        "multipliers), so read the figures as in-sample.",
        "",
        "| set | case | rows | coverage | per problem | first covers | median covering ratio "
        "| median first ratio | median largest | candidates |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, res in results["sets"].items():
        for case, s in res.items():
            if case == "true_length":
                continue
            lines.append(f"| {name} | {case} | {s['rows']} | {s['coverage']:.1%} | {s['coverage_per_problem']:.1%} "
                         f"| {s['coverage_first']:.1%} | {s['median_covering_ratio']} | {s['median_first_ratio']} "
                         f"| {s['median_largest']} | {s['mean_candidates']} |")
    lines += ["", "Kinds the sizer chose:", ""]
    for name, res in results["sets"].items():
        for case, s in res.items():
            if "kinds" in s and not case.startswith("fixed"):
                lines.append(f"- {name} / {case}: " + ", ".join(f"{k} {v}" for k, v in s["kinds"].items()))
        lines.append(f"- {name}: true length median {res['true_length']['median']}, max {res['true_length']['max']}")
    return "\n".join(lines) + "\n"


def machine() -> str:
    return f"{platform.node()}, {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokenizer", type=Path, default=ROOT / "infill/weights/tokenizer.json")
    parser.add_argument("--wait-minutes", type=float, default=60, help="how long to poll for the tokenizer")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--limit", type=int, default=None, help="rows per set (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results")
    args = parser.parse_args(argv)

    tok, described = load_tokenizer(args.tokenizer, args.wait_minutes)
    count = lambda s: len(tok.encode(s, add_special_tokens=False).ids)  # noqa: E731
    cfg = SizingConfig()
    started = time.perf_counter()
    results = {
        "command": " ".join(["python benchmarks/sizing.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine(),
        "tokenizer": described,
        "date": time.strftime("%Y-%m-%d"),
        "config": asdict(cfg),
    }
    results["sets"] = {name: measure_set(name, read_rows(name, args.data, args.limit), count, cfg) for name in SETS}
    results["seconds"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sizing.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "sizing.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
