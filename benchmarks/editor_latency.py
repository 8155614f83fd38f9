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

    python benchmarks/editor_latency.py --out benchmarks/results                  # both editors, label "after"
    python benchmarks/editor_latency.py --editors vscode --label before --out ...   # e.g. with an older checkout

Each run goes into benchmarks/results/editor_latency.json under its label (other labels are kept), and
editor_latency.md is written again from all of them.

Needs editors/setup_vscode_e2e.sh (VS Code) and an nvim of 0.12 (Neovim); the extension is built first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
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
    return summarize(raw)


def table(runs: dict) -> str:
    rows = ["| run | editor | suggestions shown / lines | last key -> ghost text p50 | max | daemon: served / "
            "cancelled / failed (deadline) | daemon CPU s | CPU s per suggestion |",
            "|---|---|---|---:|---:|---|---:|---:|"]
    for label, run in runs.items():
        for editor in ("vscode", "neovim"):
            r = run.get(editor)
            if r is None:
                continue
            p50 = f"{r['latency_p50_ms'] / 1000:.2f} s" if r["latency_p50_ms"] is not None else "-"
            top = f"{r['latency_max_ms'] / 1000:.2f} s" if r["latency_max_ms"] is not None else "-"
            per = r["daemon_cpu_seconds_per_suggestion"]
            rows.append(f"| {label} ({run['commit']}, {run['date']}) | {editor} | {r['suggestions']} / "
                        f"{len(r['latencies_ms'])} | {p50} | {top} | {r['served']} / {r['cancelled']} / "
                        f"{r['failed']} | {r['daemon_cpu_seconds']} | {per if per is not None else '-'} |")
    return "\n".join(rows)


def commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return out.stdout.strip() + ("+changes" if dirty else "")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--interval-ms", type=int, default=300, help="between keys (default 300)")
    p.add_argument("--editors", nargs="+", default=["vscode", "neovim"], choices=["vscode", "neovim"])
    p.add_argument("--label", default="after", help="the name of this run in the results (default after)")
    p.add_argument("--out", type=Path, help="add the run to editor_latency.json here and rewrite editor_latency.md")
    args = p.parse_args()
    run: dict = {"machine": f"{platform.node()}: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} at start",
                 "interval_ms": args.interval_ms, "lines": LINES, "date": time.strftime("%Y-%m-%d %H:%M"),
                 "commit": commit(), "command": shlex.join(["python", *sys.argv])}
    for editor in args.editors:
        run[editor] = (vscode if editor == "vscode" else neovim)(args.interval_ms)
        print(editor, json.dumps(run[editor]), flush=True)
    runs = {args.label: run}
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / "editor_latency.json"
        runs = {**(json.loads(path.read_text()) if path.exists() else {}), args.label: run}
        path.write_text(json.dumps(runs, indent=2) + "\n")
        (args.out / "editor_latency.md").write_text(
            f"# Last keystroke -> ghost text, in the editors\n\n{__doc__.split(chr(10) + chr(10))[0]}\n\n"
            + table(runs) + "\n\n" + "\n".join(f"- {label}: `{r['command']}`; {r['machine']}"
                                               + (f"; {r['note']}" if r.get("note") else "")
                                               for label, r in runs.items()) + "\n")
    print(table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
