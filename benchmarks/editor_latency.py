"""Last keystroke -> ghost text in the real editors, as a user sees it: the bundled model, infill's default settings,
the model daemon that `infill lsp` starts, lines typed a key at a time at the end of a 250-line module (the first
250 lines of the standard library's textwrap.py).

- VS Code: code-server 1.100 in headless Chromium (vscode-extension/test/e2e.mjs with INFILL_E2E_MODEL=bundled;
  VS Code's default settings, so its own cancel pattern: $/cancelRequest for the pending request at each key,
  then the edit).
- Neovim 0.12: its built-in vim.lsp.inline_completion with `require("infill").setup{}` (benchmarks/nvim_latency.lua).

For each: the latency of every line's ghost text (none when the model proposed nothing), and the daemon's own
counters over the typing (served, cancelled, failed at the deadline) and its CPU seconds (`infill daemon status`:
cpu_seconds), per suggestion shown.

    python benchmarks/editor_latency.py --interval-ms 300 --out benchmarks/results

Needs editors/setup_vscode_e2e.sh (VS Code) and an nvim of 0.12 (Neovim); the extension is built first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINES = ["values = sorted", "total = sum(values", "count = len(values", "width = max(len", "text = wrap(",
         "lines = text.split"]  # as in vscode-extension/test/e2e.mjs (BUNDLED_LINES)


def summarize(raw: dict) -> dict:
    shown = sorted(x for x in raw["latencies_ms"] if x is not None)
    out = dict(raw)
    out["suggestions"] = len(shown)
    out["latency_p50_ms"] = statistics.median(shown) if shown else None
    out["latency_max_ms"] = shown[-1] if shown else None
    cpu = raw["daemon_cpu_seconds"]
    out["daemon_cpu_seconds"] = round(cpu, 2)
    out["daemon_cpu_seconds_per_suggestion"] = round(cpu / len(shown), 2) if shown else None
    return out


def vscode(interval_ms: int) -> dict:
    if interval_ms != 300:
        raise SystemExit("the VS Code measurement types 300 ms apart (e2e.mjs); use --interval-ms 300")
    ext = ROOT / "vscode-extension"
    subprocess.run(["npm", "run", "package"], cwd=ext, check=True, capture_output=True)
    with tempfile.TemporaryDirectory() as artifacts:
        env = {**os.environ, "INFILL_E2E_MODEL": "bundled", "INFILL_PYTHON": sys.executable,
               "INFILL_E2E_ARTIFACTS": artifacts}
        proc = subprocess.run(["node", "test/e2e.mjs", str(ext / "infill.vsix")], cwd=ext, env=env,
                              capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise SystemExit(f"VS Code run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        typing = json.loads((Path(artifacts) / "timings.json").read_text())["measures"]["typing"]
    return summarize(typing)


def neovim(interval_ms: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        module = t / "module-src.py"
        module.write_text("\n".join(Path(textwrap.__file__).read_text().split("\n")[:250]) + "\n")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "INFILL_TEST_PYTHON": sys.executable,
               "INFILL_TEST_DIR": str(t), "INFILL_TEST_DAEMON": f"ws://127.0.0.1:{port}",
               "XDG_RUNTIME_DIR": str(t / "run"), "XDG_STATE_HOME": str(t / "state"),
               "XDG_CONFIG_HOME": str(t / "config"), "XDG_DATA_HOME": str(t / "data"),
               "INFILL_BENCH_MODULE": str(module), "INFILL_BENCH_LINES": json.dumps(LINES),
               "INFILL_BENCH_INTERVAL_MS": str(interval_ms), "INFILL_BENCH_OUT": str(t / "out.json"),
               "INFILL_TEST_SUITE_TIMEOUT_MS": "900000"}
        env.pop("INFILL_MODEL", None)
        cmd = ["nvim", "--headless", "--clean", "-u", str(ROOT / "tests/nvim/init.lua"),
               "-c", f"luafile {ROOT / 'benchmarks/nvim_latency.lua'}"]
        try:
            proc = subprocess.run(cmd, cwd=t, env=env, capture_output=True, text=True, timeout=1200)
        finally:
            subprocess.run([sys.executable, "-m", "infill", "daemon", "stop", "--port", str(port)], env=env,
                           capture_output=True)
        if proc.returncode != 0 or not (t / "out.json").exists():
            raise SystemExit(f"Neovim run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        raw = json.loads((t / "out.json").read_text())
    raw["latencies_ms"] = [None if x is None or x == {} else x for x in raw["latencies_ms"]]
    return summarize(raw)


def table(results: dict) -> str:
    rows = ["| editor | suggestions shown / lines | last key -> ghost text p50 | max | daemon: served / cancelled / "
            "deadline | daemon CPU s | CPU s per suggestion |", "|---|---|---:|---:|---|---:|---:|"]
    for editor, r in results.items():
        if not isinstance(r, dict) or "latencies_ms" not in r:
            continue
        p50 = f"{r['latency_p50_ms'] / 1000:.2f} s" if r["latency_p50_ms"] is not None else "-"
        top = f"{r['latency_max_ms'] / 1000:.2f} s" if r["latency_max_ms"] is not None else "-"
        per = r["daemon_cpu_seconds_per_suggestion"]
        rows.append(f"| {editor} | {r['suggestions']} / {len(r['latencies_ms'])} | {p50} | {top} | "
                    f"{r['served']} / {r['cancelled']} / {r['failed']} | {r['daemon_cpu_seconds']} | "
                    f"{per if per is not None else '-'} |")
    return "\n".join(rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--interval-ms", type=int, default=300, help="between keys (default 300)")
    p.add_argument("--editors", nargs="+", default=["vscode", "neovim"], choices=["vscode", "neovim"])
    p.add_argument("--out", type=Path, help="write editor_latency.json and .md here")
    args = p.parse_args()
    results: dict = {"machine": f"{platform.node()}: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
                     "interval_ms": args.interval_ms, "lines": LINES, "date": time.strftime("%Y-%m-%d %H:%M")}
    for editor in args.editors:
        results[editor] = (vscode if editor == "vscode" else neovim)(args.interval_ms)
        print(editor, json.dumps(results[editor]), flush=True)
    print(table(results))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "editor_latency.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
