"""The real-code trial: does `syntax_ok` mean the file compiles, on code from other projects?

Line and block holes in files installed on this machine by other projects, five languages, one fixed seed:

- line: a one-line statement inside a function, cut after `= `, `return ` or `(`; the rest of the line is deleted
  and the model completes it at the cursor (what typing looks like);
- block: 2-4 whole consecutive statements of a function body, regenerated as a range.

Each middle is spliced into the file and, where a compiler runs here, the file is compiled: CPython's
`compile` (Python), `node --check` (JavaScript), `gcc`/`g++ -fsyntax-only` (C, C++); Go has no compiler here.
A file is used only when its original compiles. The run writes `results/real_code_LABEL.json`; with both
labels there, `--table` writes the comparison (`results/real_code.md`).

    python benchmarks/real_code.py --label after                             # this checkout
    PYTHONPATH=/tmp/main python benchmarks/real_code.py --label before       # another checkout's infill/
    python benchmarks/real_code.py --table                                   # before vs after

The holes depend only on the files and `--seed`, not on the infill version, so both runs fill the same holes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
CODE_SERVER = Path.home() / ".cache/infill/vscode-e2e/code-server-4.100.3/node_modules"  # editors/setup_vscode_e2e.sh
VSCODE_MODULES = CODE_SERVER / "code-server/lib/vscode/node_modules"
SPDLOG = VSCODE_MODULES / "@vscode/spdlog/deps/spdlog"
ARGON2 = CODE_SERVER / "argon2/argon2"
SITE = Path(sysconfig.get_paths()["purelib"])


@dataclass(frozen=True)
class Source:
    """Where a language's files come from, and the compiler command that checks one (None: none here)."""

    roots: tuple[Path, ...]
    suffixes: tuple[str, ...]
    check: tuple[str, ...] | None  # the file's path is appended; "{dir}" is the original file's directory


SOURCES = {
    "python": Source((SITE / "websockets", SITE / "pygls", SITE / "click", SITE / "h11"), (".py",), ("python",)),
    "javascript": Source((CODE_SERVER / "ws/lib", CODE_SERVER / "semver", CODE_SERVER / "express/lib"), (".js",),
                         ("node", "--check")),
    "c": Source((ARGON2 / "src",), (".c",), ("gcc", "-fsyntax-only", f"-I{ARGON2 / 'include'}", "-I{dir}")),
    "cpp": Source((SPDLOG / "bench", SPDLOG / "tests"), (".cpp",),
                  ("g++", "-std=c++17", "-fsyntax-only", f"-I{SPDLOG / 'include'}", "-I{dir}")),
    "go": Source((Path("/usr/share/doc/git/contrib"),), (".go",), None),  # tab-indented; no Go compiler here
}
BLOCK_PARENTS = {"python": "block", "javascript": "statement_block", "c": "compound_statement",
                 "cpp": "compound_statement", "go": "statement_list"}
CUTS = ("= ", "return ", "(")  # where a line hole's cursor goes: after the first of these


@dataclass(frozen=True)
class HoleSpec:
    language: str
    kind: str  # "line" or "block"
    path: str
    start: int  # in the document with the hole (for a line hole: the original with the rest of the line cut)
    end: int
    cut: tuple[int, int] | None  # line holes: the original's [cursor, end of line) that was deleted


# -- files and holes ----------------------------------------------------------------------------------------------
def compiles(language: str, text: str, original: Path) -> bool | None:
    """Does `text`, in place of `original`, compile? None when no compiler for the language runs here."""
    if language == "python":
        try:
            compile(text, str(original), "exec", dont_inherit=True)
            return True
        except (SyntaxError, ValueError):
            return False
    source = SOURCES[language]
    if source.check is None or shutil.which(source.check[0]) is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / original.name
        path.write_text(text)
        cmd = [part.replace("{dir}", str(original.parent)) for part in source.check] + [str(path)]
        return subprocess.run(cmd, capture_output=True, timeout=120).returncode == 0


def files(language: str) -> list[Path]:
    source = SOURCES[language]
    found = sorted(p for root in source.roots if root.is_dir() for p in root.rglob("*")
                   if p.suffix in source.suffixes and 1_000 <= p.stat().st_size <= 60_000)
    return found


def statements(text: str, language: str) -> list[list]:
    """Runs of sibling statements in function bodies: [[node, node, ...], ...]."""
    from infill.syntax import parse

    runs = []
    stack = [parse(text, language).root_node]
    while stack:
        node = stack.pop()
        if node.type == BLOCK_PARENTS[language]:
            runs.append([c for c in node.named_children if "comment" not in c.type])
        stack.extend(node.children)
    return runs


def pick_holes(language: str, per_kind: int, rng: random.Random) -> list[tuple[HoleSpec, str]]:
    """Up to `per_kind` line and block holes, at most one of each per file, from files that compile."""
    out: list[tuple[HoleSpec, str]] = []
    counts = {"line": 0, "block": 0}
    paths = files(language)
    rng.shuffle(paths)
    for path in paths:
        if min(counts.values()) >= per_kind:
            break
        text = path.read_text(encoding="utf-8", errors="strict")
        if not text.isascii() or compiles(language, text, path) is False:
            continue  # byte offsets of tree-sitter equal code points on ASCII files
        runs = statements(text, language)
        rng.shuffle(runs)
        for kind in ("line", "block"):
            if counts[kind] >= per_kind:
                continue
            hole = (line_hole if kind == "line" else block_hole)(text, language, str(path), runs, rng)
            if hole is not None:
                out.append(hole)
                counts[kind] += 1
    return out


def line_hole(text: str, language: str, path: str, runs: list[list], rng: random.Random):
    lines = [n for run in runs for n in run if n.start_point[0] == n.end_point[0]]
    rng.shuffle(lines)
    for node in lines:
        line = text[node.start_byte : node.end_byte]
        if not 15 <= len(line) <= 100:
            continue
        cut = min((line.find(c) + len(c) for c in CUTS if line.find(c) > 0), default=-1)
        if cut < 0 or len(line[cut:].strip()) < 4:
            continue
        cursor = node.start_byte + cut
        eol = text.find("\n", cursor)
        eol = len(text) if eol < 0 else eol
        doc = text[:cursor] + text[eol:]
        return HoleSpec(language, "line", path, cursor, cursor, (cursor, eol)), doc
    return None


def block_hole(text: str, language: str, path: str, runs: list[list], rng: random.Random):
    for run in runs:
        if len(run) < 2:
            continue
        size = rng.randint(2, min(4, len(run)))
        first = rng.randint(0, len(run) - size)
        nodes = run[first : first + size]
        start = text.rfind("\n", 0, nodes[0].start_byte) + 1
        end = text.find("\n", nodes[-1].end_byte)
        if text[start : nodes[0].start_byte].strip() or end < 0 or text[nodes[-1].end_byte : end].strip():
            continue  # whole lines only
        if not 2 <= text.count("\n", start, end + 1) <= 6:
            continue
        return HoleSpec(language, "block", path, start, end + 1, None), text
    return None


# -- running ---------------------------------------------------------------------------------------------------
def style(middle: str, doc: str, hole: HoleSpec) -> dict:
    """What the file's style says about a middle: trailing blanks it writes, space-indented lines in a tab file."""
    lines = middle.split("\n")
    ends_line = doc[hole.end : hole.end + 1] in ("", "\n", "\r")
    trailing = any(ln != ln.rstrip(" \t") for ln in (lines if ends_line else lines[:-1]))
    indented = [ln for ln in doc.splitlines() if ln[:1] in (" ", "\t") and ln.strip()]
    tab_file = sum(ln.startswith("\t") for ln in indented) > len(indented) / 2
    owned = lines[1:] if doc[doc.rfind("\n", 0, hole.start) + 1 : hole.start].strip() else lines
    spaces = tab_file and any(ln.startswith("  ") and ln.strip() for ln in owned)
    return {"trailing_blanks": trailing, "tab_file": tab_file, "spaces_in_tab_file": spaces}


def run(args: argparse.Namespace) -> dict:
    import infill
    from infill.engine import Engine
    from infill.models.base import LoadOptions
    from infill.request import InfillRequest

    rng = random.Random(args.seed)
    holes = [h for lang in args.languages for h in pick_holes(lang, args.per_kind, rng)]
    engine = Engine.load(args.model, LoadOptions(device="cpu", threads=args.threads))
    records = []
    started = time.perf_counter()
    for i, (hole, doc) in enumerate(holes):
        cursor = hole.start if hole.kind == "line" else None
        span = None if hole.kind == "line" else (hole.start, hole.end)
        res = engine.fill(InfillRequest(text=doc, cursor=cursor, span=span, path=hole.path, quality=args.quality,
                                        seed=args.seed))
        empty = getattr(res, "empty", False)
        spliced = doc if empty else doc[: res.start] + res.text + doc[res.end :]
        record = {**asdict(hole), "text": res.text, "syntax_ok": res.syntax_ok, "empty": empty,
                  "compiles": compiles(hole.language, spliced, Path(hole.path)), "seconds": round(res.seconds, 2),
                  "forward_passes": res.forward_passes, **style(res.text, doc, hole)}
        records.append(record)
        print(f"[{i + 1}/{len(holes)}] {hole.language} {hole.kind} {Path(hole.path).name}: syntax_ok "
              f"{res.syntax_ok} compiles {record['compiles']} {res.text[:50]!r}", file=sys.stderr, flush=True)
    return {"label": args.label, "infill": str(Path(infill.__file__).parent), "model": engine.model_id,
            "quality": args.quality, "seed": args.seed, "seconds": round(time.perf_counter() - started, 1),
            "command": "python benchmarks/real_code.py " + " ".join(sys.argv[1:]), "records": records}


# -- the table ---------------------------------------------------------------------------------------------------
def no_code(record: dict) -> bool:
    """No code, judged the same way for both runs (infill.syntax of this checkout: blank or only new comments)."""
    from infill.syntax import check_splice

    path = Path(record["path"])
    text = path.read_text(encoding="utf-8")
    doc = text if record["cut"] is None else text[: record["cut"][0]] + text[record["cut"][1] :]
    return check_splice(doc, record["start"], record["end"], record["text"], record["language"]).empty


def share(records: list[dict], key) -> str:
    if not records:
        return "–"
    k = sum(1 for r in records if key(r))
    return f"{k}/{len(records)} ({k / len(records):.0%})"


def table(before: dict, after: dict) -> str:
    rows = ["| language | holes | syntax_ok | syntax_ok that compile | syntax_ok with no code | no code (after: "
            "no suggestion) | trailing blanks | spaces in a tab file |",
            "|---|---:|---|---|---|---|---|---|"]
    languages = list(dict.fromkeys(r["language"] for r in after["records"]))
    for lang in [*languages, "all"]:
        sides = []
        for run_ in (before, after):
            rs = [r for r in run_["records"] if lang in ("all", r["language"])]
            ok = [r for r in rs if r["syntax_ok"]]
            checked = [r for r in ok if r["compiles"] is not None]
            sides.append((rs, ok, checked))
        (b, b_ok, b_chk), (a, a_ok, a_chk) = sides
        cells = [
            (share(b, lambda r: r["syntax_ok"]), share(a, lambda r: r["syntax_ok"])),
            (share(b_chk, lambda r: r["compiles"]), share(a_chk, lambda r: r["compiles"])),
            (share(b_ok, no_code), share(a_ok, no_code)),
            (share(b, lambda r: r["empty"] or no_code(r)), share(a, lambda r: r["empty"] or no_code(r))),
            (share(b, lambda r: r["trailing_blanks"]), share(a, lambda r: r["trailing_blanks"])),
            (share([r for r in b if r["tab_file"]], lambda r: r["spaces_in_tab_file"]),
             share([r for r in a if r["tab_file"]], lambda r: r["spaces_in_tab_file"])),
        ]
        rows.append(f"| {lang} | {len(a)} | " + " | ".join(f"{x} → {y}" for x, y in cells) + " |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--label", default="after", help="names the results file: results/real_code_LABEL.json")
    p.add_argument("--languages", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    p.add_argument("--per-kind", type=int, default=5, help="line holes and block holes per language (default 5)")
    p.add_argument("--quality", default="balanced", help="sampler preset (default balanced, as `infill fill`)")
    p.add_argument("--seed", type=int, default=0, help="picks the holes and seeds the sampler (default 0)")
    p.add_argument("--model", default=None, help="checkpoint (default: the bundled model)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--table", nargs="*", metavar="LABEL",
                   help="write results/real_code.md from runs already made: a table for each consecutive pair of "
                        "LABELs (default: before after)")
    args = p.parse_args(argv)
    if args.table is not None:
        labels = args.table or ["before", "after"]
        if len(labels) < 2:
            p.error("--table compares runs: give two labels or more")
        runs = [json.loads((RESULTS / f"real_code_{label}.json").read_text()) for label in labels]
        made = "".join(f"- {r['label']}: `{r['command']}` with infill from {r['infill']}, {r['seconds']:.0f} s\n"
                       for r in runs)
        tables = "".join(f"\n{a['label']} → {b['label']}:\n\n{table(a, b)}" for a, b in zip(runs, runs[1:], strict=False))
        (RESULTS / "real_code.md").write_text(made + tables)
        print(tables)
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    report = run(args)
    out = RESULTS / f"real_code_{args.label}.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
