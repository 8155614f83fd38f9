"""Reliability figures: the tests of tests/reliability/ run with larger budgets, and what they counted.

    python benchmarks/reliability.py --scale 5 --clients 32       # writes benchmarks/results/reliability.*

Runs `pytest tests/reliability` with $INFILL_RELIABILITY_SCALE (hypothesis examples, writer kills, load rounds
and fault rounds multiplied by it) and $INFILL_RELIABILITY_CLIENTS (concurrent load clients), collects the
figures the tests record (inputs tried per category, crashes, requests answered and cancelled, latency, the
daemon's memory, faults survived, files written without loss), and writes reliability.json and reliability.md
with the command and the machine. The checks are the tests' own: a failing test fails this run (exit status 1,
the figures are still written and say so).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def machine() -> dict[str, Any]:
    import torch

    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "device": "cpu", "load_average": [round(x, 2) for x in os.getloadavg()]}


def run_suite(scale: float, clients: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """pytest over tests/reliability with the budgets; (figures, run summary)."""
    with tempfile.TemporaryDirectory() as tmp:
        figures_file = Path(tmp) / "figures.json"
        env = {**os.environ, "INFILL_RELIABILITY_SCALE": str(scale), "INFILL_RELIABILITY_CLIENTS": str(clients),
               "INFILL_RELIABILITY_FIGURES": str(figures_file)}
        cmd = [sys.executable, "-m", "pytest", "tests/reliability", "-q", "-p", "no:cacheprovider"]
        started = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        figures = json.loads(figures_file.read_text()) if figures_file.exists() else {}
    summary_line = next((line for line in reversed(proc.stdout.splitlines()) if " in " in line and
                         ("passed" in line or "failed" in line)), "")
    if proc.returncode:
        print(proc.stdout[-6000:], proc.stderr[-2000:], file=sys.stderr)
    return figures, {"pytest": shlex.join(["python", *cmd[1:]]), "exit_status": proc.returncode,
                     "result": summary_line.strip("= "),
                     "seconds": round(seconds, 1)}


def headline(f: dict[str, Any]) -> dict[str, Any]:
    """The figures the issue asks for, from the sections the tests wrote."""
    g = lambda section, key, default=0: f.get(section, {}).get(key, default)  # noqa: E731
    return {
        "parse_fuzz_inputs": g("parse_fuzz", "inputs"),
        "daemon_fuzz_frames": g("daemon_fuzz", "inputs") - g("daemon_fuzz", "disconnects"),
        "daemon_disconnects_at_random_bytes": g("daemon_fuzz", "disconnects"),
        "daemon_crashes": g("daemon_fuzz", "crashes", None),
        "auth_refusals_checked": g("auth", "refused_forms") + g("auth", "token_file_modes")
        + g("auth", "token_file_owners") + g("auth", "non_loopback_refused"),
        "load_clients_concurrent": g("load", "max_in_flight"),
        "load_requests": g("load", "requests"), "load_answered": g("load", "answered"),
        "load_cancelled": g("load", "cancelled") + g("load", "abandoned_by_disconnect"),
        "load_p50_ms": g("load", "p50_ms", None), "load_p95_ms": g("load", "p95_ms", None),
        "load_mean_batch_size": g("load", "mean_batch_size", None),
        "rss_after_warmup_mib": g("load", "rss_after_warmup_mib", None),
        "rss_after_load_mib": g("load", "rss_after_load_mib", None),
        "rss_growth_mib": g("load", "rss_growth_mib", None),
        "faults_survived": g("faults", "oom_in_daemon_survived") + g("faults", "oom_in_language_server_survived")
        + g("faults", "model_load_failures_exit_3") + g("faults", "language_servers_up_without_a_model"),
        "writer_kills": g("files", "kills"), "writer_kills_mid_write": g("files", "kills_mid_write"),
        "partial_files": g("files", "partial_files", None),
        "files_written_without_loss": g("files", "random_files_written_without_loss")
        + g("files", "versions_written_by_killed_writers"),
        "files_refused_untouched": g("files", "binary_or_non_utf8_refused_untouched")
        + g("files", "oversized_refused_untouched"),
        "lsp_incremental_edits_checked": g("lsp_documents", "incremental_edits"),
    }


def markdown(report: dict[str, Any]) -> str:
    m, run, f, h = report["machine"], report["run"], report["figures"], report["headline"]
    lines = [
        "# Reliability: fuzzing, auth, load, faults, file safety, LSP documents", "",
        f"Command: `{report['command']}` (scale {report['scale']:g}, {report['clients']} load clients)", "",
        f"Machine: {m['platform']}, {m['cpus']} CPUs, device {m['device']}, torch {m['torch']}, Python "
        f"{m['python']}, load average at the end {m['load_average']} (shared with other work).", "",
        f"Checks: `{run['pytest']}` -> {run['result']} (exit status {run['exit_status']}, {run['seconds']} s). "
        "Every figure below comes from a test that also asserts on it.", "",
        "Daemon under test: `infill daemon` with a random-init `tiny` checkpoint on the CPU, `--threads 1 "
        "--max-batch 8`; load requests are 2 denoising steps on one 8-token canvas.", "",
        "| figure | value |", "|---|---|",
    ]
    lines += [f"| {k.replace('_', ' ')} | {v} |" for k, v in h.items()]
    lines += ["", "## By test section", ""]
    for section, values in f.items():
        if section == "scale" or not isinstance(values, dict):
            continue
        lines += [f"**{section}**: " + ", ".join(f"{k} {v}" for k, v in values.items()), ""]
    lines += [
        "- parse fuzz: `server.protocol.parse` on random frames (wrong types in every field of every message, values",
        "  out of range, unknown types and fields, huge numbers, NaN/Infinity, unpaired surrogates, deep nesting,",
        "  random text and bytes, cut and spliced frames); each gets a sendable error with the right code and id,",
        "  or parses to a message that serializes back to itself.",
        "- daemon fuzz: the same frames to a real `infill daemon` over a websocket, each followed by a status",
        "  request; the answer must be the one parse gives, the process alive, and a separate client served every",
        "  20 frames; disconnects cut a handshake + streaming request at a random byte (FIN or RST).",
        "- load: clients x 10 requests per round (tiny model, 2 steps), a quarter cancelling every third request,",
        "  a quarter dropping the connection halfway; latency from send to result; RSS from /proc/PID/status.",
        "- faults: simulated torch.OutOfMemoryError on the 2nd denoising pass of a 3-request batch (daemon) and in",
        "  the embedded language server; a corrupt checkpoint (daemon exits 3, one line) and a missing one (the",
        "  language server, embedded and through a daemon it starts, stays up and answers empty).",
        "- files: writers running the real CLI in a loop SIGKILLed at random delays or the moment their temporary",
        "  file appears; random files, ranges and middles; random binary/non-UTF-8 files and size limits.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=5.0, help="budget multiplier (the tests run at 1; default 5)")
    p.add_argument("--clients", type=int, default=32, help="concurrent load clients (the tests use 16; default 32)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="where the results go")
    args = p.parse_args(argv)
    figures, run = run_suite(args.scale, args.clients)
    report = {"command": "python benchmarks/reliability.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
              "scale": args.scale, "clients": args.clients, "machine": machine(), "run": run,
              "headline": headline(figures), "figures": figures}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "reliability.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "reliability.md").write_text(markdown(report))
    print(markdown(report))
    return 1 if run["exit_status"] else 0


if __name__ == "__main__":
    sys.exit(main())
