"""Source code that is already on the machine, as a training corpus: no hub, no network.

The corpus is the Python standard library plus the site-packages of the running interpreter
(and, by default, those of the base interpreter behind a virtualenv). Every file whose extension
maps to a bundled grammar is a candidate; benchmark data, this repository, caches, big, binary,
minified and duplicate files are left out. Files are split into train / val **by package**, so
that no validation file has a near-copy (another version, a vendored copy) in training.

    corpus = collect_corpus()                  # stdlib + site-packages, a few seconds
    train = corpus.split("train")              # list[SourceFile]; .text reads the file
    write_manifest(corpus, "infill/weights/corpus_manifest.json", tokenizer=tok)
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import site
import sys
import sysconfig
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
STDLIB_LICENCE = "PSF-2.0"
SPLITS = ("train", "val")
# Directory names never walked into.
PRUNE_DIRS = frozenset({"__pycache__", ".git", ".hg", ".svn", ".tox", ".mypy_cache", ".pytest_cache", ".ruff_cache"})


@dataclass(frozen=True)
class CorpusConfig:
    max_file_bytes: int = 512 * 1024  # larger files are data or generated code
    max_mean_line: float = 100.0  # mean characters per line above this: minified or generated
    max_line: int = 5000  # any single line longer than this: minified, embedded data
    val_fraction: float = 0.02  # share of files held out for validation, whole packages in name-hash order
    languages: tuple[str, ...] | None = None  # None: every language a bundled grammar covers
    # Paths containing any of these (case-insensitive, "/" separators) are benchmark data, never trained on.
    exclude_parts: tuple[str, ...] = ("shared/benchmarks", "human_eval", "humaneval", "human-eval", "safim")
    base_site_packages: bool = True  # inside a virtualenv, also read the base interpreter's site-packages
    workers: int = 1  # processes that read and check files (the GPU machine has 16 cores)
    # Licences (case-insensitive substrings) whose code never goes into the shipped weights.
    excluded_licences: tuple[str, ...] = ("proprietary", "licenseref-nvidia", "commercial")


@dataclass(frozen=True)
class SourceFile:
    """One corpus file. `text` reads it from disk on each access (the corpus keeps no contents)."""

    path: Path
    language: str  # grammar name, as infill.syntax names it
    package: str  # "stdlib/<module>" or the distribution name; the unit of the train/val split
    split: str  # "train" or "val"
    size: int  # bytes on disk
    licence: str

    @property
    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")


@dataclass
class Corpus:
    files: list[SourceFile]
    roots: list[tuple[str, Path]]  # (kind, path), kind "stdlib" or "site-packages"
    skipped: Counter = field(default_factory=Counter)  # reason -> number of files left out

    def split(self, name: str) -> list[SourceFile]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; choose one of: {', '.join(SPLITS)}")
        return [f for f in self.files if f.split == name]

    @property
    def packages(self) -> set[str]:
        return {f.package for f in self.files}

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[SourceFile]:
        return iter(self.files)


# ----------------------------------------------------------------------------- languages

def language_table() -> Callable[[str], str | None]:
    """`infill.syntax.language_for_path`, or the same table read without importing tree-sitter.

    The training machine may lack tree-sitter; `infill.syntax` imports it at module level, so there
    we read its `EXTENSIONS` literal from the source instead of keeping a second copy here.
    """
    try:
        from infill.syntax import language_for_path
        return language_for_path
    except ImportError:
        source = (Path(__file__).resolve().parents[1] / "syntax.py").read_text(encoding="utf-8")
        for node in ast.parse(source).body:
            if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "EXTENSIONS":
                table: dict[str, str] = ast.literal_eval(node.value)
                return lambda path: table.get(os.path.splitext(path)[1].lower()) if path else None
        raise


_CPP_HEADER = re.compile(r"^\s*(namespace\s+[\w:]+\s*\{|template\s*<|class\s+\w+[^;(]*\{|using\s+namespace\b)|\bstd::",
                         re.MULTILINE)


def refine_language(path: str, language: str, text: str) -> str:
    """A `.h` file written in C++ (most of torch's headers) is parsed and counted as C++."""
    if language == "c" and path.endswith(".h") and _CPP_HEADER.search(text):
        return "cpp"
    return language


# ----------------------------------------------------------------------------- roots and packages

def default_roots(config: CorpusConfig = CorpusConfig()) -> list[tuple[str, Path]]:
    """The stdlib and the site-packages directories of this interpreter (existing, deduplicated)."""
    roots: list[tuple[str, Path]] = [("stdlib", Path(sysconfig.get_paths()["stdlib"]))]
    paths = sysconfig.get_paths()
    site_dirs = [*site.getsitepackages(), paths["purelib"], paths["platlib"]]
    if config.base_site_packages and sys.base_prefix != sys.prefix:
        base = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix})
        site_dirs += [base["purelib"], base["platlib"]]
    roots += [("site-packages", Path(p)) for p in site_dirs]
    seen: set[Path] = set()
    unique = []
    for kind, p in roots:
        r = p.resolve()
        if r.is_dir() and r not in seen:
            seen.add(r)
            unique.append((kind, r))
    return unique


def _normalize_dist(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


_LICENCE_CLASSIFIERS = {
    "MIT License": "MIT", "BSD License": "BSD", "Apache Software License": "Apache-2.0",
    "Python Software Foundation License": "PSF-2.0", "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "ISC License (ISCL)": "ISC", "The Unlicense (Unlicense)": "Unlicense",
    "GNU Lesser General Public License v3 (LGPLv3)": "LGPL-3.0",
    "GNU General Public License v2 (GPLv2)": "GPL-2.0", "GNU General Public License v3 (GPLv3)": "GPL-3.0",
    "Historical Permission Notice and Disclaimer (HPND)": "HPND",
}


def read_licence(metadata: str) -> str:
    """Licence of a distribution from its METADATA headers: License-Expression, classifiers, License."""
    headers = metadata.split("\n\n", 1)[0]
    expression, classifiers, plain = None, [], None
    for line in headers.splitlines():
        key, _, value = line.partition(":")
        value = value.strip()
        if key == "License-Expression" and value:
            expression = value
        elif key == "Classifier" and value.startswith("License ::"):
            name = value.split("::")[-1].strip()
            classifiers.append(_LICENCE_CLASSIFIERS.get(name, name))
        elif key == "License" and value and plain is None:
            plain = value
    if expression:
        return expression
    if classifiers:
        return " OR ".join(sorted(set(classifiers)))
    if plain and len(plain) <= 60 and plain.upper() not in {"UNKNOWN", "NONE"}:
        return plain
    return "unknown" if not plain else "other (licence text in METADATA)"


@dataclass
class _SiteIndex:
    """Which distribution owns each file of one site-packages directory, and its licence."""

    owner: dict[str, str] = field(default_factory=dict)  # relative path -> distribution
    top_level: dict[str, str] = field(default_factory=dict)  # top-level name -> distribution
    licence: dict[str, str] = field(default_factory=dict)  # distribution -> licence


def _index_site_packages(root: Path) -> _SiteIndex:
    index = _SiteIndex()
    for info in sorted(root.glob("*.dist-info")) + sorted(root.glob("*.egg-info")):
        meta = info / ("METADATA" if info.suffix == ".dist-info" else "PKG-INFO")
        try:
            text = meta.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        name_match = re.search(r"^Name:\s*(\S+)", text, re.MULTILINE)
        dist = _normalize_dist(name_match.group(1) if name_match else info.name.split("-")[0])
        index.licence[dist] = read_licence(text)
        record = info / "RECORD"
        if record.is_file():
            for line in record.read_text(encoding="utf-8", errors="replace").splitlines():
                rel = line.rsplit(",", 2)[0].strip('"')
                if rel and not rel.startswith(".."):
                    index.owner[os.path.normpath(rel)] = dist
        top = info / "top_level.txt"
        if top.is_file():
            for name in top.read_text(encoding="utf-8", errors="replace").split():
                index.top_level.setdefault(name, dist)
    return index


def _package_of(kind: str, rel: str, index: _SiteIndex | None) -> tuple[str, str]:
    """(package, licence) of a file at `rel` (relative to its root)."""
    top = rel.split(os.sep, 1)[0]
    top = top[: -len(ext)] if (ext := os.path.splitext(top)[1]) else top
    if kind == "stdlib":
        return f"stdlib/{top}", STDLIB_LICENCE
    assert index is not None
    dist = index.owner.get(rel) or index.top_level.get(top) or _normalize_dist(top)
    return dist, index.licence.get(dist, "unknown")


def package_hash(package: str) -> float:
    """A package name's place in [0, 1): the same everywhere, whatever else is installed."""
    return int.from_bytes(hashlib.sha256(package.encode("utf-8")).digest()[:8], "big") / 2**64


def choose_val_packages(files_per_package: dict[str, int], val_fraction: float) -> set[str]:
    """Packages held out for validation: taken in hash order until they hold `val_fraction` of the files.

    Package sizes are very uneven (torch alone is a quarter of a site-packages), so a plain hash
    threshold would hold out anything from nothing to a third of the corpus. A package that would
    overshoot the target by more than half of it is passed over, so the giants always train.
    """
    target = val_fraction * sum(files_per_package.values())
    chosen: set[str] = set()
    total = 0
    for package in sorted(files_per_package, key=package_hash):
        if total >= target:
            break
        n = files_per_package[package]
        if total + n <= 1.5 * target:
            chosen.add(package)
            total += n
    return chosen


# ----------------------------------------------------------------------------- walking and checking

def _is_benchmark(path: str, config: CorpusConfig) -> bool:
    p = path.replace(os.sep, "/").lower()
    return any(part in p for part in config.exclude_parts)


def _in_this_repo(path: str) -> bool:
    """Our own sources (but not the site-packages of a virtualenv that lives inside the checkout)."""
    repo = str(REPO_ROOT) + os.sep
    return path.startswith(repo) and "site-packages" not in path[len(repo):].split(os.sep)


def _walk(kind: str, root: Path, config: CorpusConfig, language_of, skipped: Counter) -> Iterator[tuple[str, str]]:
    """(path, language) for candidate files under root, in sorted order."""
    for dirpath, dirnames, filenames in os.walk(root):
        keep = []
        for d in sorted(dirnames):
            full = os.path.join(dirpath, d)
            if d in PRUNE_DIRS or d.endswith((".dist-info", ".egg-info")) or _is_benchmark(full, config):
                continue
            if kind == "stdlib" and dirpath == str(root) and d in ("site-packages", "dist-packages"):
                continue  # walked as their own roots
            if _in_this_repo(full):
                continue
            keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            language = language_of(name)
            if language is None or (config.languages and language not in config.languages):
                continue
            full = os.path.join(dirpath, name)
            if _is_benchmark(full, config):
                skipped["benchmark"] += 1
            elif _in_this_repo(full):
                skipped["this repository"] += 1
            else:
                yield full, language


def check_text(data: bytes, config: CorpusConfig) -> tuple[str | None, str]:
    """(reason to skip or None, normalised text) for one file's bytes."""
    if not data.strip():
        return "empty", ""
    if len(data) > config.max_file_bytes:
        return "too large", ""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "not utf-8", ""
    if "\x00" in text:
        return "binary", ""
    norm = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = norm.count("\n") + 1
    if len(norm) / lines > config.max_mean_line or max(map(len, norm.split("\n"))) > config.max_line:
        return "minified or generated", ""
    return None, norm


def _check_file(args: tuple[str, str, CorpusConfig]) -> tuple[str | None, int, str, str]:
    """(reason or None, size, sha1 of the normalised text, language) for one candidate file."""
    path, language, config = args
    try:
        size = os.path.getsize(path)
        if size > config.max_file_bytes:
            return "too large", size, "", ""
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return "unreadable", 0, "", ""
    reason, norm = check_text(data, config)
    if reason:
        return reason, size, "", ""
    return None, size, hashlib.sha1(norm.encode("utf-8")).hexdigest(), refine_language(path, language, norm)


def collect_corpus(roots: list[Path] | None = None, config: CorpusConfig = CorpusConfig()) -> Corpus:
    """Walk the roots (default: stdlib + site-packages) and return the deduplicated, split corpus.

    A root named explicitly is treated as site-packages, unless it is the stdlib directory itself.
    """
    if roots is None:
        typed_roots = default_roots(config)
    else:
        stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
        typed_roots = [("stdlib" if Path(r).resolve() == stdlib else "site-packages", Path(r).resolve()) for r in roots]
    language_of = language_table()
    skipped: Counter = Counter()
    candidates: list[tuple[str, Path, str, str]] = []  # (kind, root, path, language)
    for kind, root in typed_roots:
        if _is_benchmark(str(root), config):
            continue
        candidates += [(kind, root, p, lang) for p, lang in _walk(kind, root, config, language_of, skipped)]

    jobs = [(path, language, config) for _, _, path, language in candidates]
    if config.workers > 1:
        with ProcessPoolExecutor(config.workers) as pool:
            checked: Iterable = list(pool.map(_check_file, jobs, chunksize=256))
    else:
        checked = map(_check_file, jobs)

    indexes = {root: _index_site_packages(root) for kind, root in typed_roots if kind == "site-packages"}
    seen: set[str] = set()
    kept: list[tuple[str, str, str, int, str]] = []  # (path, language, package, size, licence)
    for (kind, root, path, _), (reason, size, digest, language) in zip(candidates, checked, strict=True):
        if reason:
            skipped[reason] += 1
            continue
        if digest in seen:
            skipped["duplicate"] += 1
            continue
        seen.add(digest)
        package, licence = _package_of(kind, os.path.relpath(path, root), indexes.get(root))
        if any(bad in licence.lower() for bad in config.excluded_licences):
            skipped["licence"] += 1
            continue
        kept.append((path, language, package, size, licence))
    val = choose_val_packages(Counter(k[2] for k in kept), config.val_fraction)
    files = [SourceFile(path=Path(path), language=language, package=package,
                        split="val" if package in val else "train", size=size, licence=licence)
             for path, language, package, size, licence in kept]
    return Corpus(files=files, roots=typed_roots, skipped=skipped)


# ----------------------------------------------------------------------------- manifest

def _count_tokens(files: list[SourceFile], tokenizer, batch: int = 256) -> dict[Path, tuple[int, int]]:
    """(characters, tokens) per file."""
    counts: dict[Path, tuple[int, int]] = {}
    for i in range(0, len(files), batch):
        chunk = files[i : i + batch]
        texts = [f.text for f in chunk]
        for f, text, n in zip(chunk, texts, tokenizer.count_batch(texts), strict=True):
            counts[f.path] = (len(text), n)
    return counts


def summarize(corpus: Corpus, tokenizer=None) -> dict:
    """Counts per split and language, per licence, and the skip reasons (what the manifest holds).

    With a tokenizer, every entry also has characters, tokens and tokens per character.
    """
    counts = _count_tokens(corpus.files, tokenizer) if tokenizer is not None else None

    def stats(files: list[SourceFile]) -> dict:
        out: dict = {"files": len(files), "bytes": sum(f.size for f in files)}
        if counts is not None:
            out["chars"] = sum(counts[f.path][0] for f in files)
            out["tokens"] = sum(counts[f.path][1] for f in files)
            out["tokens_per_char"] = round(out["tokens"] / max(1, out["chars"]), 4)
        return out

    def by(files: list[SourceFile], key) -> dict:
        groups: dict[str, list[SourceFile]] = defaultdict(list)
        for f in files:
            groups[key(f)].append(f)
        return {k: stats(v) for k, v in sorted(groups.items(), key=lambda kv: -len(kv[1]))}

    splits = {}
    for name in SPLITS:
        part = corpus.split(name)
        splits[name] = {**stats(part), "packages": len({f.package for f in part}),
                        "languages": by(part, lambda f: f.language)}
    licences = by(corpus.files, lambda f: f.licence)
    for lic, entry in licences.items():
        entry["packages"] = len({f.package for f in corpus.files if f.licence == lic})
    out = {
        **stats(corpus.files),
        "packages": len(corpus.packages),
        "roots": [{"kind": kind, "path": str(path)} for kind, path in corpus.roots],
        "splits": splits,
        "languages": by(corpus.files, lambda f: f.language),
        "licences": licences,
        "val_packages": sorted({f.package for f in corpus.files if f.split == "val"}),
        "skipped": dict(corpus.skipped.most_common()),
    }
    if tokenizer is not None:
        out["tokenizer"] = {"vocab_size": tokenizer.vocab_size}
    return out


def write_manifest(corpus: Corpus, path: str | Path, tokenizer=None, config: CorpusConfig | None = None) -> dict:
    """Write the corpus summary as JSON (see `summarize`); `tokenizer` adds token counts."""
    manifest = summarize(corpus, tokenizer)
    if config is not None:
        manifest["config"] = asdict(config)
    manifest["python"] = sys.version.split()[0]
    Path(path).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest
