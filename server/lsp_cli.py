"""`infill lsp`: the language server over stdio.

    infill lsp                                  # talk to the model daemon, starting it when none runs
    infill lsp --daemon ws://127.0.0.1:9000     # another daemon address
    infill lsp --embedded --model DIR           # the engine in this process, no daemon
    infill lsp --log-file /tmp/infill-lsp.log

stdout carries the protocol and nothing else: logs go to stderr (and --log-file), and anything a library
prints is redirected to stderr before the server starts. Settings from the editor (initializationOptions,
workspace/didChangeConfiguration) override these options; see `server.settings`.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from infill.cli import add_model_arguments
    from infill.quality import DEFAULTS, NAMES

    from .contract import DEFAULT_ADDRESS
    from .settings import Settings

    p.add_argument("--embedded", action="store_true",
                   help="run the model in this process instead of talking to the daemon")
    p.add_argument("--daemon", metavar="ADDRESS", help=f"model daemon address (default {DEFAULT_ADDRESS})")
    p.add_argument("--debounce", type=int, metavar="MS",
                   help=f"wait this long for more keystrokes (default {Settings.debounce_ms})")
    p.add_argument("--quality", choices=NAMES,
                   help=f"sampler preset of as-you-type completions (default {DEFAULTS.typing})")
    p.add_argument("--action-quality", choices=NAMES,
                   help=f"sampler preset of 'Fix this block' and 'Fill selection' (default {DEFAULTS.action})")
    p.add_argument("--log-file", metavar="PATH", help="also write the log here")
    add_model_arguments(p)
    p.epilog = ("exit status: 0 the editor ended the session, 2 bad options (a model that fails to load does not "
                "stop the server: it answers empty and logs why)")


def run(args: argparse.Namespace) -> int:
    import logging
    import os
    import sys

    # The protocol gets the real stdout; file descriptor 1 (prints, child processes) goes to stderr from now on.
    protocol_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    verbose = getattr(args, "verbose", False)
    # Editors show the server's stderr as errors (Neovim logs every line as "rpc stderr"): only warnings go
    # there; --log-file and window/logMessage carry the informational lines.
    stderr_handler = logging.StreamHandler(sys.stderr)
    stderr_handler.setLevel(logging.DEBUG if verbose else logging.WARNING)
    # what the client already shows through window/logMessage (InfillServer.notify) is not repeated here
    stderr_handler.addFilter(lambda record: not getattr(record, "in_client_log", False))
    handlers: list[logging.Handler] = [stderr_handler]
    if args.log_file:
        handlers.append(logging.FileHandler(args.log_file, encoding="utf-8"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=handlers,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    logging.getLogger("pygls").setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("websockets").setLevel(logging.WARNING)

    from infill.cli import load_options, quiet_transformers

    from .lsp import build_server
    from .services import DaemonService, EmbeddedService
    from .settings import Settings

    raw = {k: v for k, v in {"model": args.model, "daemon": args.daemon, "debounce": args.debounce,
                             "quality": args.quality, "actionQuality": args.action_quality}.items() if v is not None}
    settings, problems = Settings().merged(raw)
    for problem in problems:
        logging.getLogger("infill.lsp").error("%s", problem)
    if problems:
        return 2
    holder: dict = {}

    def notify(level: int, message: str) -> None:
        holder["server"].notify(level, message)

    if args.embedded:
        quiet_transformers(verbose)
        service = EmbeddedService(settings.resolved_model, load_options(args), notify)
    else:
        service = DaemonService(settings.daemon, settings.resolved_model, notify, extra_args=daemon_args(args),
                                idle_exit=settings.daemon_idle_exit)
    server = holder["server"] = build_server(service, settings)
    server.start_io(sys.stdin.buffer, protocol_out)
    return 0


def daemon_args(args: argparse.Namespace) -> tuple[str, ...]:
    """The model options given here, for a daemon this server has to start (`ensure_daemon`)."""
    out: list[str] = []
    for flag, value, default in (("--device", args.device, "auto"), ("--dtype", args.dtype, "auto"),
                                 ("--quantize", args.quantize, None), ("--threads", args.threads, None)):
        if value != default:
            out += [flag, str(value)]
    if args.trust_remote_code:
        out.append("--trust-remote-code")
    return tuple(out)
