"""Shared fixtures: a tiny random-init checkpoint (written once per session) and the CLI run in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the package need not be installed: tests import it from the checkout
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random-init `tiny` DiffusionGemma checkpoint with the project's tokenizer (a second or two to write)."""
    from infill.models.presets import bundled_tokenizer_dir, write_random_checkpoint

    if not (bundled_tokenizer_dir() / "tokenizer.json").exists():
        pytest.fail(f"no tokenizer in {bundled_tokenizer_dir()}: the checkout is missing infill/weights/tokenizer.json")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    return write_random_checkpoint(tmp_path_factory.mktemp("tiny-model"), "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_engine(tiny_model_dir):
    """The tiny checkpoint loaded once, on CPU, for in-process engine and CLI tests."""
    from infill.engine import Engine
    from infill.models.base import LoadOptions

    return Engine.load(str(tiny_model_dir), LoadOptions(device="cpu"))


def cli_env(model_dir: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["HF_HUB_OFFLINE"] = "1"  # tests never touch the network
    env.pop("INFILL_MODEL", None)
    if model_dir is not None:
        env["INFILL_MODEL"] = str(model_dir)
    return env


@pytest.fixture
def run_cli(tmp_path, tiny_model_dir):
    """Run `python -m infill ARGS...` in a subprocess (cwd: the test's tmp_path) with $INFILL_MODEL pointing at
    the tiny checkpoint. Returns the CompletedProcess with stdout and stderr decoded."""

    def run(*args: str, stdin: str | bytes | None = None, timeout: float = 120,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
        data = stdin.encode() if isinstance(stdin, str) else stdin
        proc = subprocess.run([sys.executable, "-m", "infill", *map(str, args)], input=data, capture_output=True,
                              cwd=cwd or tmp_path, env=cli_env(tiny_model_dir), timeout=timeout)
        return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode())

    return run
