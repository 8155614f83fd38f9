"""`infill daemon`: run the model daemon in the foreground, or ask a running one.

    infill daemon                          # serve the default model on ws://127.0.0.1:8977 until Ctrl-C / SIGTERM
    infill daemon --model DIR --port 9000 --max-batch 16
    infill daemon --idle-exit 300          # stop after 5 minutes without a connection (what `infill lsp` starts)
    infill daemon status [--port P]        # the running daemon's status as JSON (exit 4: none, 5: not ours)
    infill daemon stop [--port P]          # SIGTERM to the daemon named in the state file

This module stays light (argparse only): every `infill` invocation builds all subparsers. websockets and
torch are imported in `run`.
"""

from __future__ import annotations

import argparse
import os
import sys

from infill.cli import positive_int

from .contract import DEFAULT_HOST, DEFAULT_PORT, LIMITS, ws_address

EXIT_STUCK = 1  # stop: the daemon did not stop in time
EXIT_MODEL = 3  # as `infill fill`: the model failed to load
EXIT_NO_DAEMON = 4  # status, stop: nothing listens on the address
EXIT_NOT_A_DAEMON = 5  # status: something else listens there (another program, a daemon that refuses our token)
EXITS = (f"exit status: 0 ok; {EXIT_STUCK} the daemon did not stop within 30 s (stop); 2 bad input (an option, an unsafe token file, the port taken); {EXIT_MODEL} the model "
         f"failed to load (run); {EXIT_NO_DAEMON} no daemon on the address (status, stop); {EXIT_NOT_A_DAEMON} "
         "something else is listening on the address (status)")


def _port(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number") from None
    if not 0 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number (0-65535; 0 picks a free one)")
    return n


def _milliseconds(value: str) -> float:
    try:
        ms = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of milliseconds") from None
    if not 0 <= ms <= 10_000:
        raise argparse.ArgumentTypeError(f"{value!r} must be between 0 and 10000 ms")
    return ms


def _seconds(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of seconds") from None
    if not 0 <= n <= LIMITS.idle_exit:
        raise argparse.ArgumentTypeError(f"{value!r} must be between 0 and {LIMITS.idle_exit} seconds (0: never)")
    return n


def add_arguments(p: argparse.ArgumentParser) -> None:
    from infill.cli import add_model_arguments

    p.add_argument("action", nargs="?", choices=("run", "status", "stop"), default="run",
                   help="run (default): serve in the foreground; status: print a running daemon's status as JSON; "
                        "stop: send SIGTERM to the running daemon")
    net = p.add_argument_group("network")
    net.add_argument("--host", help=f"bind this address instead of {DEFAULT_HOST}; a non-loopback address is reachable "
                                    "by other machines, protected only by the token (a warning is printed)")
    net.add_argument("--port", type=_port, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    batch = p.add_argument_group("batching")
    batch.add_argument("--max-batch", type=positive_int, default=8, help="requests run together (default 8)")
    batch.add_argument("--batch-window-ms", type=_milliseconds, default=5.0,
                       help="wait this long after the oldest queued request for more to batch with it (default 5)")
    batch.add_argument("--max-queue", type=positive_int, default=64,
                       help="queued requests beyond this get an 'overloaded' error (default 64)")
    batch.add_argument("--no-prompt-cache", action="store_true",
                       help="clear the encoder caches before every batch (for cache benchmarks)")
    p.add_argument("--idle-exit", type=_seconds, default=0, metavar="SECONDS",
                   help="stop after this many seconds without a connection, freeing the model's memory (default 0: "
                        "never; `infill lsp` starts its daemons with its `daemonIdleExit` setting)")
    add_model_arguments(p)
    p.epilog = EXITS


def run(args: argparse.Namespace) -> int:
    if args.action == "status":
        return run_status(args)
    if args.action == "stop":
        return run_stop(args)
    return run_daemon(args)


def _address(args: argparse.Namespace) -> str:
    host = args.host or DEFAULT_HOST
    if host in ("0.0.0.0", "::", ""):  # a wildcard bind is reached through loopback
        host = DEFAULT_HOST
    return ws_address(host, args.port)


def _no_daemon(message: str, status: int = EXIT_NO_DAEMON) -> int:
    from infill.cli import fail

    return fail(message, status)


# -- infill daemon status / stop ------------------------------------------------------------------------------
def run_status(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from .client import DaemonClient
    from .protocol import FillError, NoDaemon

    async def ask() -> dict:
        async with DaemonClient(_address(args)) as client:
            return (await client.status()).to_dict()

    try:
        status = asyncio.run(ask())
    except NoDaemon as exc:
        return _no_daemon(f"{exc.message}; start one with `infill daemon`")
    except FillError as exc:  # something else listens there, or a daemon that refuses our token
        return _no_daemon(exc.message, EXIT_NOT_A_DAEMON)
    print(json.dumps(status, indent=2))
    return 0


def run_stop(args: argparse.Namespace) -> int:
    import os
    import signal
    import time

    from infill.files import pid_alive

    from . import auth

    state = auth.read_state(args.port)
    if state is None or not pid_alive(state.get("pid")):
        if state is not None:
            auth.remove_state(args.port)
        return _no_daemon(f"no daemon on {_address(args)} (no live state file in {auth.runtime_dir()})")
    pid = state["pid"]
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(pid):
        return _no_daemon(f"daemon {pid} did not stop within 30 s; `kill -9 {pid}` ends it", EXIT_STUCK)
    print(f"stopped the daemon on port {args.port} (pid {pid})")
    return 0


# -- infill daemon (run) --------------------------------------------------------------------------------------
def run_daemon(args: argparse.Namespace) -> int:
    import asyncio

    from . import auth
    from .auth import is_loopback

    auth.load_or_create_token()  # an unsafe token file stops us before the model loads
    host = args.host or DEFAULT_HOST
    if not is_loopback(host):
        print(f"infill daemon: warning: binding {host}: other machines can reach the daemon; only the token in "
              f"{auth.token_path()} protects it", file=sys.stderr)
    return asyncio.run(_serve(args, host))


async def _serve(args: argparse.Namespace, host: str) -> int:
    import asyncio
    import logging
    import signal

    from infill.cli import load_engine, load_options, quiet_transformers
    from infill.engine import default_model

    from .auth import token_path
    from .daemon import Daemon, DaemonConfig

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s")
    if not args.verbose:  # not a line per connection
        logging.getLogger("websockets").setLevel(logging.WARNING)
    quiet_transformers(args.verbose)
    model = args.model or default_model()
    config = DaemonConfig(host=host, port=args.port, allow_remote=args.host is not None, max_batch=args.max_batch,
                          batch_window=args.batch_window_ms / 1000, max_queue=args.max_queue,
                          prompt_cache=not args.no_prompt_cache, model=model, idle_exit=args.idle_exit or None)
    daemon = Daemon(lambda: load_engine(model, load_options(args), verbose=args.verbose), config)
    try:
        await daemon.start()
    except OSError as exc:
        from infill.errors import InfillError

        raise InfillError(f"cannot listen on {host}:{args.port}: {exc.strerror or exc} "
                          "(another daemon? try `infill daemon status`)") from exc
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    idle = f"; exits after {args.idle_exit} s without a connection" if args.idle_exit else ""
    print(f"infill daemon: listening on {daemon.address} (pid {os.getpid()}), loading {model}{idle}", file=sys.stderr)
    ready = asyncio.ensure_future(daemon.ready())
    stopping = asyncio.ensure_future(_first(stop.wait(), daemon.idle.wait()))
    await asyncio.wait([ready, stopping], return_when=asyncio.FIRST_COMPLETED)
    if ready.done() and ready.exception() is not None:
        await daemon.stop()
        raise ready.exception()
    if ready.done():
        s = daemon.status()
        print(f"infill daemon: ready: {s.model} on {s.device} ({s.dtype}); token in {token_path()}", file=sys.stderr)
    await stopping
    await daemon.stop()
    s = daemon.status()
    why = f"no connection for {args.idle_exit} s; " if daemon.idle.is_set() else ""
    print(f"infill daemon: stopped after {s.uptime_seconds:.0f} s ({why}{s.served} served, {s.failed} failed)",
          file=sys.stderr)
    return 0


async def _first(*waits) -> None:
    """Until the first of the awaitables finishes (the others are cancelled)."""
    import asyncio

    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
