"""The code as it was before a change, for benchmarks that print old and new side by side in one run.

`checkout(rev, dir)` writes the tree of a commit (weights included) into `dir` with `git archive`; a benchmark
then runs that tree's own scripts and CLI in subprocesses (PYTHONPATH and cwd set to it), next to this
checkout's, on the same inputs. The default baseline is main before issue 16 (the as-you-type latency work).

    with tempfile.TemporaryDirectory() as tmp:
        old = checkout(BASELINE, Path(tmp))
        subprocess.run([sys.executable, "benchmarks/humaneval.py", ...], cwd=old, env=env_for(old))
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "fee0a71"  # main when issue 16 started: the keystroke path before this work


def resolve(rev: str) -> str:
    """The full commit hash of `rev` in this checkout's repository."""
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", f"{rev}^{{commit}}"], check=True,
                          capture_output=True, text=True).stdout.strip()


def checkout(rev: str, into: Path) -> Path:
    """The tree of commit `rev`, written into `into` (created); returns `into`."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", resolve(rev)], check=True,
                          capture_output=True).stdout
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into


def env_for(tree: Path, **extra: str) -> dict[str, str]:
    """The environment that makes `python -m infill` and `import infill` mean the code in `tree`."""
    env = dict(os.environ, PYTHONPATH=str(tree), HF_HUB_OFFLINE="1", **extra)
    env.pop("INFILL_MODEL", None)  # each tree's own bundled model unless a benchmark says otherwise
    return env


def publish(report: dict, markdown: str, out: Path | None) -> None:
    """Print the table; with `out`, write the report as JSON there and the table next to it (.md)."""
    print(markdown)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + "\n")
        out.with_suffix(".md").write_text(markdown)


__all__ = ["BASELINE", "ROOT", "checkout", "env_for", "publish", "resolve"]
