"""Keystroke-to-item latency through the language server and the model daemon, while typing a line: the code
before a change (the baseline commit) and this checkout, side by side in one run.

For each tree: starts its model daemon (`infill daemon`, on a free loopback port, token files in a
temporary $XDG_RUNTIME_DIR, one torch thread) with the bundled model (or `--model`, or a random-init
checkpoint of `--preset`), starts its `infill lsp --daemon ...` over stdio, opens a 300-line Python file
(the first 300 lines of the standard library's textwrap.py), empties one line of a function body down to
its indentation and types it back character by character: one didChange and one
textDocument/inlineCompletion per keystroke. The trees run one after the other on the same machine, with
each tree's own defaults for as-you-type requests (quality `fast`, no step override).

Scenarios:
- back-to-back: each keystroke waits for its item before the next one; debounce 0, so this measures the
  language server + websocket + daemon + model path alone. The issue's target: p50 <= 150 ms, p95 <= 400 ms.
- follow: back-to-back, but the user types the suggestion on screen whenever there is one (else the line's
  next character): what type-through reuse serves without a model call.
- paced: the line typed at a fixed interval per key with a pause after each word, requests not awaited,
  the default 150 ms debounce: what a user sees. Items arrive at pauses; superseded requests come back empty.

Reports p50/p95 latency of the requests that got an item, the share of keystrokes with an item, the
type-through reuse rate (language server), and the encoder-cache hit rate of the daemon (`infill daemon
status`), before and after, with the ratio of p50s and p95s.

    python benchmarks/lsp_latency.py --threads 1 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def source_file(lines: int) -> str:
    """The first `lines` lines of the standard library's textwrap module: ordinary, well-formed Python."""
    text = Path(sysconfig.get_paths()["stdlib"], "textwrap.py").read_text()
    return "".join(text.splitlines(keepends=True)[:lines])


def target_line(text: str) -> int:
    """A code line of a function body near the middle of the file, of typical length."""
    lines = text.split("\n")
    middle = len(lines) // 2
    for i in sorted(range(len(lines)), key=lambda i: abs(i - middle)):
        code = lines[i].strip()
        if lines[i].startswith("        ") and 25 <= len(code) <= 60 and not code.startswith(("#", '"', "'")):
            return i
    raise SystemExit("no suitable line to type")


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Session:
    """One language-server client with the file open and the target line emptied."""

    def __init__(self, client: Any, uri: str, text: str, row: int) -> None:
        from infill.document import LineIndex

        self.client, self.uri, self.row = client, uri, row
        line = text.split("\n")[row]
        self.indent = line[: len(line) - len(line.lstrip())]
        self.reference = line.strip()
        lines = text.split("\n")
        lines[row] = self.indent
        self.text = "\n".join(lines)
        self.cursor = LineIndex.of(self.text).starts[row] + len(self.indent)
        self.version = 1

    def position(self):
        from lsprotocol import types as T

        from infill.document import LineIndex

        line, col = LineIndex.of(self.text).position_utf16(self.cursor)
        return T.Position(line, col)

    def type(self, ch: str) -> None:
        from lsprotocol import types as T

        pos = self.position()
        self.version += 1
        self.client.text_document_did_change(T.DidChangeTextDocumentParams(
            T.VersionedTextDocumentIdentifier(uri=self.uri, version=self.version),
            [T.TextDocumentContentChangePartial(range=T.Range(pos, pos), text=ch)]))
        self.text = self.text[: self.cursor] + ch + self.text[self.cursor:]
        self.cursor += len(ch)

    def request(self):
        from lsprotocol import types as T

        return self.client.text_document_inline_completion_async(T.InlineCompletionParams(
            context=T.InlineCompletionContext(trigger_kind=T.InlineCompletionTriggerKind.Automatic),
            text_document=T.TextDocumentIdentifier(self.uri), position=self.position()))


async def lsp_status(client: Any) -> Any:
    return await client.protocol.send_request_async("infill/status", {})


async def open_session(client: Any, text: str, row: int, name: str) -> Session:
    from lsprotocol import types as T

    uri = f"file:///tmp/lsp-latency/{name}.py"
    session = Session(client, uri, text, row)
    client.text_document_did_open(T.DidOpenTextDocumentParams(T.TextDocumentItem(uri, "python", 1, session.text)))
    return session


async def back_to_back(client: Any, text: str, row: int, follow: bool) -> dict[str, Any]:
    """Type the line; each keystroke waits for its answer. `follow`: type the suggestion when there is one."""
    session = await open_session(client, text, row, "follow" if follow else "back_to_back")
    before = await lsp_status(client)
    latencies, model_ms, overheads, items, reused = [], [], [], 0, 0
    suggestion = ""
    for typed in range(len(session.reference)):
        ch = suggestion[0] if follow and suggestion else session.reference[typed]
        prior = await lsp_status(client)
        started = time.perf_counter()
        session.type(ch)
        result = await session.request()
        elapsed = time.perf_counter() - started
        suggestion = result.items[0].insert_text if result.items else ""
        now = await lsp_status(client)
        if result.items:
            items += 1
            latencies.append(elapsed * 1000)
            reused += now.typethrough_hits > prior.typethrough_hits
            if now.model_calls > prior.model_calls:  # what the language server and the websocket add to the model
                model_ms.append((now.model_seconds - prior.model_seconds) * 1000)
                overheads.append(elapsed * 1000 - model_ms[-1])
    after = await lsp_status(client)
    out = summarize(latencies, len(session.reference), items, after, before, reused=reused)
    out["model_ms_p50"] = _round(percentile(model_ms, 0.5))
    out["overhead_ms_p50"] = _round(percentile(overheads, 0.5))
    out["overhead_ms_p95"] = _round(percentile(overheads, 0.95))
    return out


async def paced(client: Any, text: str, row: int, key_ms: float, pause_ms: float) -> dict[str, Any]:
    """Type at `key_ms` per key, pausing `pause_ms` after each word; requests are not awaited."""
    session = await open_session(client, text, row, "paced")
    before = await lsp_status(client)
    pending: list[tuple[float, asyncio.Future]] = []
    for ch in session.reference:
        session.type(ch)
        pending.append((time.perf_counter(), asyncio.ensure_future(session.request())))
        await asyncio.sleep((key_ms + (pause_ms if ch in " (,." else 0)) / 1000)
    latencies, items = [], 0
    for started, future in pending:
        result = await future
        if result.items:
            items += 1
            latencies.append((future.done_at - started) * 1000)  # type: ignore[attr-defined]
    after = await lsp_status(client)
    return summarize(latencies, len(session.reference), items, after, before)


def summarize(latencies: list[float], keystrokes: int, items: int, after: Any, before: Any,
              reused: int | None = None) -> dict[str, Any]:
    hits = after.typethrough_hits - before.typethrough_hits
    misses = after.typethrough_misses - before.typethrough_misses
    out = {
        "keystrokes": keystrokes,
        "items": items,
        "p50_ms": _round(percentile(latencies, 0.5)),
        "p95_ms": _round(percentile(latencies, 0.95)),
        "mean_ms": _round(statistics.fmean(latencies)) if latencies else None,
        "model_calls": after.model_calls - before.model_calls,
        "typethrough_reuse_rate": round(hits / (hits + misses), 3) if hits + misses else 0.0,
        "superseded": after.superseded - before.superseded,
        "cancelled_running": after.cancelled_running - before.cancelled_running,
        "model_seconds_total": round(after.model_seconds - before.model_seconds, 3),
    }
    if reused is not None:
        out["items_from_typethrough"] = reused
    return out


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def timed(awaitable: Any) -> asyncio.Future:
    future = asyncio.ensure_future(awaitable)
    future.add_done_callback(lambda f: setattr(f, "done_at", time.perf_counter()))
    return future


async def run(args: argparse.Namespace, model: str, env: dict[str, str], tree: Path) -> dict[str, Any]:
    """One tree's language server and daemon through the three scenarios."""
    from lsprotocol import types as T
    from pygls.lsp.client import LanguageClient

    port = free_port()
    address = f"ws://127.0.0.1:{port}"
    daemon_cmd = [sys.executable, "-m", "infill", "daemon", "--port", str(port), "--model", model,
                  "--device", args.device, *(["--threads", str(args.threads)] if args.threads else [])]
    daemon = subprocess.Popen(daemon_cmd, env=env, cwd=tree, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    client = LanguageClient("lsp-latency", "1")
    try:
        await wait_for_daemon(address, env)
        await client.start_io(sys.executable, "-m", "infill", "lsp", "--daemon", address, env=env, cwd=str(tree))
        settings = {"quality": args.quality, "debounce": 0, "deadline": 60000}
        if args.max_steps:
            settings["maxSteps"] = args.max_steps
        await client.initialize_async(T.InitializeParams(capabilities=T.ClientCapabilities(),
                                                         initialization_options=settings))
        client.initialized(T.InitializedParams())
        text = source_file(args.lines)
        row = target_line(text)
        # warm up: the first request pays for lazy imports and the first prefill
        warm = await open_session(client, text, row, "warmup")
        await warm.request()

        # pygls returns its own futures: time each answer when it arrives
        original = client.text_document_inline_completion_async
        client.text_document_inline_completion_async = lambda params: timed(original(params))  # type: ignore
        results = {"back_to_back": await back_to_back(client, text, row, follow=False),
                   "follow": await back_to_back(client, text, row, follow=True)}
        client.workspace_did_change_configuration(T.DidChangeConfigurationParams(
            settings={"infill": {"debounce": args.debounce}}))
        results["paced"] = await paced(client, text, row, args.key_ms, args.pause_ms)
        final = await lsp_status(client)
        status = subprocess.run([sys.executable, "-m", "infill", "daemon", "status", "--port", str(port)], env=env,
                                cwd=tree, capture_output=True, text=True, timeout=60)
        daemon_status = json.loads(status.stdout) if status.returncode == 0 else {"error": status.stderr.strip()}
        return {
            "file": f"textwrap.py, first {args.lines} lines", "typed_line": row + 1,
            "typed_text": text.split("\n")[row].strip(), "scenarios": results,
            "typethrough_reuse_rate_overall": round(final.typethrough_rate, 3),
            "daemon_cache_hit_rate": daemon_status.get("cache_hit_rate"),
            "daemon_served": daemon_status.get("served"),
            "daemon_status": daemon_status,
        }
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.stop(), 10)
        daemon.terminate()
        try:
            daemon.wait(10)
        except subprocess.TimeoutExpired:
            daemon.kill()


async def wait_for_daemon(address: str, env: dict[str, str], timeout: float = 120) -> None:
    os.environ["XDG_RUNTIME_DIR"] = env["XDG_RUNTIME_DIR"]
    from server.client import DaemonClient
    from server.protocol import Unavailable

    deadline = time.monotonic() + timeout
    while True:
        try:
            client = DaemonClient(address)
            await client.connect(timeout=2)
            await client.close()
            return
        except Unavailable:
            if time.monotonic() > deadline:
                raise SystemExit(f"the daemon did not answer at {address}") from None
            await asyncio.sleep(0.2)


def machine(device: str) -> dict[str, Any]:
    out = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
           "device": device}
    with contextlib.suppress(OSError):
        out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    try:
        import torch

        out["torch"] = torch.__version__
        if torch.cuda.is_available():
            out["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return out


def ratio(before: float | None, after: float | None) -> float | None:
    return round(before / after, 1) if before and after else None


def cell(value: float | None, unit: str = "") -> str:
    """A table cell: '–' where a tree had no item to time."""
    return "–" if value is None else f"{value}{unit}"


def markdown(report: dict[str, Any]) -> str:
    before, after = report["trees"]["before"], report["trees"]["after"]
    rows = []
    for name, a in after["scenarios"].items():
        b = before["scenarios"][name]
        rows.append(f"| {name} | {b['items']}/{b['keystrokes']} | {cell(b['p50_ms'])} | {cell(b['p95_ms'])} "
                    f"| {a['items']}/{a['keystrokes']} | {cell(a['p50_ms'])} | {cell(a['p95_ms'])} "
                    f"| {cell(ratio(b['p50_ms'], a['p50_ms']), 'x')} | {cell(ratio(b['p95_ms'], a['p95_ms']), 'x')} "
                    f"| {a['model_calls']} | {a['typethrough_reuse_rate']:.0%} |")
    m = report["machine"]
    bb, ab = before["scenarios"]["back_to_back"], after["scenarios"]["back_to_back"]
    after_extra = after["daemon_status"].get("extra", {})
    return "\n".join([
        "# Language server latency: keystroke to inline item, before and after",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Machine: {m['platform']}, {m['cpus']} CPUs, device {m['device']}"
        + (f" ({m['gpu']})" if m.get("gpu") else "") + f", load average at the end {m.get('load_average')}.",
        f"Model: {report['model']}; quality {report['quality']}, each tree's own step budget"
        + (f" (max_steps {report['max_steps']})" if report["max_steps"] else "") + f". File: {after['file']}; "
        f"typed line {after['typed_line']}: `{after['typed_text']}`. Before: {report['baseline']}; after: "
        f"{report['commit']}; the two ran one after the other in this run.",
        "",
        "| scenario | before items | before p50 ms | before p95 ms | after items | after p50 ms | after p95 ms "
        "| p50 ratio | p95 ratio | after model calls | after type-through |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Back-to-back, model calls only: engine time (daemon queue included) p50 {bb['model_ms_p50']} ms before, "
        f"{ab['model_ms_p50']} ms after; what the language server, the websocket and the post-processing add: "
        f"p50 {ab['overhead_ms_p50']} ms, p95 {ab['overhead_ms_p95']} ms after.",
        "",
        f"Daemon encoder-cache hit rate (`infill daemon status`): {before['daemon_cache_hit_rate']} before, "
        f"{after['daemon_cache_hit_rate']} after. After: the daemon ran the {after_extra.get('stack')} stack with "
        f"{after_extra.get('weights')} weights; as-you-type requests seeded by the previous keystroke's draft: "
        f"{after_extra.get('warm_starts')} warm, {after_extra.get('cold_starts')} cold.",
        "",
        "- back-to-back: debounce 0; each keystroke waits for its item (language server + daemon + model).",
        "- follow: back-to-back, typing the suggestion on screen when there is one: type-through serves it.",
        f"- paced: {report['key_ms']} ms per key, +{report['pause_ms']} ms after a word, debounce "
        f"{report['debounce_ms']} ms, requests not awaited; latency of the requests that got an item, from their "
        "keystroke.",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    from baseline import BASELINE, checkout, env_for, resolve

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="checkpoint directory (default: each tree's bundled model)")
    p.add_argument("--preset", help="a random-init checkpoint of this preset instead of the bundled model")
    p.add_argument("--max-steps", type=int, default=None, help="override both trees' step budget (default: theirs)")
    p.add_argument("--quality", default="fast")
    p.add_argument("--lines", type=int, default=300)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch threads of the daemon")
    p.add_argument("--debounce", type=int, default=150, help="debounce of the paced scenario (ms)")
    p.add_argument("--key-ms", type=float, default=90.0, help="paced: ms between keys")
    p.add_argument("--pause-ms", type=float, default=600.0, help="paced: extra ms after a word")
    p.add_argument("--baseline", default=BASELINE, help=f"commit of the 'before' tree (default {BASELINE})")
    p.add_argument("--out", type=Path, help="directory for lsp_latency.json and lsp_latency.md")
    args = p.parse_args(argv)

    trees: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        old = checkout(args.baseline, Path(tmp) / "before")
        for name, tree in (("before", old), ("after", ROOT)):
            runtime = Path(tmp) / f"run-{name}"
            runtime.mkdir(mode=0o700)
            env = env_for(tree, XDG_RUNTIME_DIR=str(runtime))
            model = args.model or str(tree / "infill" / "weights")
            if args.preset:
                model = str(Path(tmp) / f"model-{name}")
                subprocess.run([sys.executable, "-m", "infill", "model", "random", model, "--preset", args.preset],
                               check=True, env=env, cwd=tree, capture_output=True)
            started = time.perf_counter()
            trees[name] = asyncio.run(run(args, model, env, tree))
            print(f"{name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    report = {"command": "python benchmarks/lsp_latency.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
              "baseline": resolve(args.baseline), "commit": resolve("HEAD"),
              "model": f"random-init {args.preset}" if args.preset else (args.model or "the bundled model"),
              "max_steps": args.max_steps, "quality": args.quality, "key_ms": args.key_ms, "pause_ms": args.pause_ms,
              "debounce_ms": args.debounce, "machine": machine(args.device), "trees": trees}
    print(markdown(report))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "lsp_latency.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "lsp_latency.md").write_text(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
