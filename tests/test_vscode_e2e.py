"""The VS Code extension in a real VS Code: builds the .vsix, then runs vscode-extension/test/e2e.mjs (code-server in
headless Chromium, driven by playwright-core, VS Code's default settings) against `infill lsp` and the model daemon it
starts, with the tiny random checkpoint: Tab beside the word suggestions, typing with VS Code's cancel pattern within
a budget of the daemon's own request time, a refused fix, a fill selected afterwards (see e2e.mjs).

The tools come from `editors/setup_vscode_e2e.sh`. Without them the test is skipped, unless INFILL_EDITOR_TESTS=1
(CI): then a missing tool is a failure. Screenshots, logs and timings land in vscode-extension/test/artifacts/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = pytest.mark.editor

EXT = ROOT / "vscode-extension"
ARTIFACTS = EXT / "test" / "artifacts"
CODE_SERVER_VERSION = "4.100.3"  # as in editors/setup_vscode_e2e.sh


def missing_tools() -> list[str]:
    home = Path(os.environ.get("INFILL_E2E_HOME") or Path.home() / ".cache" / "infill" / "vscode-e2e")
    wanted = {
        "node": shutil.which("node"),
        "npm": shutil.which("npm"),
        "chromium": os.environ.get("CHROMIUM") or shutil.which("chromium"),
        f"code-server {CODE_SERVER_VERSION}": home / f"code-server-{CODE_SERVER_VERSION}/node_modules/.bin/code-server",
        "the extension's npm packages (playwright-core, @vscode/vsce)": EXT / "node_modules/playwright-core",
    }
    return [name for name, path in wanted.items() if not path or not Path(path).exists()]


def test_ghost_text_is_accepted_as_shown_and_fix_block_stays_in_the_block():
    missing = missing_tools()
    if missing:
        message = f"missing {', '.join(missing)}: run editors/setup_vscode_e2e.sh"
        if os.environ.get("INFILL_EDITOR_TESTS") == "1":
            pytest.fail(message)
        pytest.skip(message)

    build = subprocess.run(["npm", "run", "package"], cwd=EXT, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, f"npm run package failed:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}"

    env = {**os.environ, "INFILL_PYTHON": sys.executable, "INFILL_E2E_ARTIFACTS": str(ARTIFACTS)}
    e2e = subprocess.run(["node", "test/e2e.mjs", str(EXT / "infill.vsix")], cwd=EXT, env=env, capture_output=True,
                         text=True, timeout=600)
    output = f"{e2e.stdout[-6000:]}\n{e2e.stderr[-6000:]}"
    assert e2e.returncode == 0, f"the VS Code end-to-end test failed (artifacts in {ARTIFACTS}):\n{output}"
    assert (ARTIFACTS / "ghost-text.png").exists()
    measures = json.loads((ARTIFACTS / "timings.json").read_text())["measures"]
    assert measures["suggest_widget_with_ghost"] is True  # the ghost text beside VS Code's word suggestions
    assert measures["typing"]["cancelled"] > 0  # the requests VS Code gave up on were cancelled in the daemon
