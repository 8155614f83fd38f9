"""The `infill` command line: parse, read files, build requests, call the engine, format the output.

    infill fill app.py --at 12:5                      # complete at line 12, column 5 (1-based, characters)
    infill fill app.py --range 3:1-5:1 --range 9:1-9:20 --json
    infill fill app.py --range 3:1-5:1 --write        # replace the range in place (atomic, change-checked)
    cat app.py | infill fill - --language python --at 4:1
    infill fill --jobs holes.jsonl                    # many holes, one model load, one JSON line per job
    infill model random /tmp/tiny --preset tiny       # a random-init checkpoint for tests
    infill train --config smoke                       # forwarded to infill.train.cli

Exit statuses are each command's own and listed in its --help (`FILL_EXITS` here for `infill fill`).

Subcommands live in `COMMANDS`: adding one is one `Command(help, add_arguments, run)` entry.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from .document import LineIndex, format_range, parse_position, parse_range
from .errors import BadInputError, InfillError, ModelLoadError
from .extras import missing_extra, require
from .files import (
    DEFAULT_MAX_BYTES,
    STDIN,
    SourceText,
    apply_edits,
    check_writable,
    match_newlines,
    read_source,
    write_atomic,
)
from .quality import DEFAULTS, NAMES
from .request import DEFAULT_SEED
from .syntax import normalize_language

if TYPE_CHECKING:
    from .engine import Engine
    from .models.base import LoadOptions
    from .request import InfillRequest, InfillResult

EXIT_OK = 0
EXIT_FAILED = 1  # some --jobs failed, or an internal error
EXIT_BAD_INPUT = 2  # also what argparse uses for usage errors
EXIT_MODEL = 3  # the model could not be loaded

PROG = "infill"
EXIT_HELP = "exit status: each command's --help lists its own; 2 is always a usage error (nothing was done)"
FILL_EXITS = ("exit status: 0 ok (also when the model wrote no code: no suggestion), 1 some --jobs failed or an "
              "internal error, 2 bad input or a missing optional extra (nothing written), 3 the model failed to load")
MODEL_EXITS = "exit status: 0 written, 2 bad input (nothing written), 3 no tokenizer to write with"
DTYPES = ("auto", "float32", "bfloat16", "float16")


class UsageError(BadInputError):
    """A command line that cannot be parsed or combines options that do not go together."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (raised, so `main` formats it like any bad input)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


@dataclass(frozen=True)
class Command:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    forward: bool = False  # pass unparsed arguments through as args.forwarded (no --help of our own)


# -- infill fill -----------------------------------------------------------------------------------------
def add_fill_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", metavar="FILE", help="source file, or - for stdin (give --language)")
    where = p.add_argument_group("where to fill (one of)")
    where.add_argument("--at", action="append", metavar="LINE:COL", help="complete at this cursor (1-based)")
    where.add_argument("--range", action="append", metavar="L1:C1-L2:C2",
                       help="regenerate this range, end exclusive (1-based); repeat for several holes")
    where.add_argument("--jobs", metavar="FILE.jsonl",
                       help='one hole per line: {"path": ..., "range": "L1:C1-L2:C2"} or {"path": ..., "at": "L:C"}'
                            ', optional "language" and "seed"; - reads stdin. Prints one JSON line per job')
    out = p.add_argument_group("output (default: the filled text)")
    out.add_argument("--json", action="store_true", help="one JSON object per hole")
    out.add_argument("--diff", action="store_true", help="a unified diff of the file")
    out.add_argument("--write", action="store_true",
                     help="replace the range(s) in FILE atomically; refused if FILE changed after it was read")
    gen = p.add_argument_group("generation")
    gen.add_argument("--language", help="grammar name (python, go, ...); default: from the file extension")
    gen.add_argument("--quality", choices=NAMES, default=DEFAULTS.cli,
                     help=f"sampler preset (default {DEFAULTS.cli})")
    gen.add_argument("--max-steps", type=positive_int, help="denoising step limit (overrides the preset)")
    gen.add_argument("--seed", type=int, default=DEFAULT_SEED,
                     help=f"sampling seed (default {DEFAULT_SEED}: the same file, hole, model and options give the "
                          "same middle, so --diff shows what --write writes)")
    gen.add_argument("--max-bytes", type=positive_int, default=DEFAULT_MAX_BYTES,
                     help=f"refuse larger files (default {DEFAULT_MAX_BYTES})")
    add_model_arguments(p)
    p.epilog = FILL_EXITS
    from server.contract import DEFAULT_ADDRESS

    d = p.add_argument_group("daemon (the model stays loaded between commands)")
    d.add_argument("--daemon", metavar="ADDRESS", default=DEFAULT_ADDRESS,
                   help=f"use the model daemon at ADDRESS when one answers there and serves the model asked for "
                        f"(default {DEFAULT_ADDRESS}); else the model loads in this process")
    d.add_argument("--no-daemon", action="store_true", help="always load the model in this process")


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    m = p.add_argument_group("model")
    m.add_argument("--model", metavar="ID_OR_DIR", help="checkpoint directory or cached hub id "
                   "(default: $INFILL_MODEL, else the bundled model)")
    m.add_argument("--device", default="auto", type=device_name,
                   help="auto, cpu, cuda, cuda:N or mps (default auto: cuda when there is one)")
    m.add_argument("--dtype", default="auto", choices=DTYPES,
                   help="weights and activations (default auto: bfloat16 on cuda, float32 on cpu)")
    m.add_argument("--quantize", choices=("none", "int8", "4bit", "8bit"),
                   help="int8: int8 matmuls on the CPU (per-channel weights, dynamic activations); none: float "
                        "weights; 4bit/8bit: bitsandbytes (CUDA only). Default: the device's (see README)")
    m.add_argument("--threads", type=positive_int, help="torch CPU threads")
    m.add_argument("--trust-remote-code", action="store_true", help="allow checkpoints that ship modeling code")


@dataclass(frozen=True)
class HoleSpec:
    """One hole as the user named it, resolved against the document."""

    option: str  # "at" or "range"
    spec: str  # as given, e.g. "3:1-5:1"
    cursor: int | None = None
    span: tuple[int, int] | None = None


def parse_holes(index: LineIndex, at: list[str] | None, ranges: list[str] | None) -> list[HoleSpec]:
    """--at / --range values to offsets; exactly one --at, or one or more non-overlapping --range."""
    if bool(at) == bool(ranges):
        raise UsageError("give --at LINE:COL or --range L1:C1-L2:C2 (not both)" if at else
                         "say where to fill: --at LINE:COL or --range L1:C1-L2:C2")
    if at:
        if len(at) > 1:
            raise UsageError("--at may be given once; use --range for several holes")
        return [HoleSpec("at", at[0], cursor=parse_position(at[0], index))]
    holes = [HoleSpec("range", r, span=parse_range(r, index)) for r in ranges or ()]
    ordered = sorted(holes, key=lambda h: h.span)
    for a, b in zip(ordered, ordered[1:], strict=False):
        if a.span[1] > b.span[0] or a.span[0] == b.span[0]:
            raise BadInputError(f"ranges {a.spec} and {b.spec} overlap")
    return holes


def run_fill(args: argparse.Namespace) -> int:
    if args.jobs:
        return run_jobs(args)
    if not args.file:
        raise UsageError("give a FILE (or - for stdin), or --jobs FILE.jsonl")
    if args.json and args.diff:
        raise UsageError("--json and --diff do not go together; pick one output")
    if args.write and args.file == STDIN:
        raise UsageError("--write needs a file; stdin cannot be written back")
    if args.file == STDIN and not args.language:
        raise UsageError("stdin has no file name to tell its language: add --language (python, go, ...)")
    language = normalize_language(args.language) if args.language else None
    check_extras(args)
    source = read_source(args.file, args.max_bytes)
    index = LineIndex.of(source.text)
    holes = parse_holes(index, args.at, args.range)
    if args.write:
        check_writable(source)
    filler = Filler(args)  # every input checked: now find the daemon or load the model
    results = [filler.fill(build_request(source, hole, args, language)) for hole in holes]
    filler.close()
    # What gets inserted: new lines of a CRLF file end in CRLF, in every output, not only on disk.
    texts = [match_newlines(r.text, source.newline) for r in results]
    for result in results:
        if result.empty:  # a suggestion is never a deletion: the hole stays as it was
            print(f"{PROG}: no suggestion at {format_range(index, result.start, result.end)}: the model wrote no "
                  "code (nothing, blanks or only comments)", file=sys.stderr)
    new_text = apply_edits(source.text, [(r.start, r.end, t) for r, t in zip(results, texts, strict=True)
                                         if not r.empty])

    if args.json:
        output = "".join(json.dumps(result_json(source.path, index, h, r, t, filler.via)) + "\n"
                         for h, r, t in zip(holes, results, texts, strict=True))
    elif args.diff:
        output = unified_diff(source.text, new_text, source.path)
    elif args.write:
        output = ""
    else:
        output = plain_output(index, results, texts)
    if args.write and new_text != source.text:
        write_atomic(source, new_text)
    sys.stdout.write(output)
    sys.stdout.flush()
    return EXIT_OK


def build_request(source: SourceText, hole: HoleSpec, args: argparse.Namespace, language: str | None,
                  seed: int | None = None) -> InfillRequest:
    from .request import InfillRequest

    return InfillRequest(
        text=source.text, cursor=hole.cursor, span=hole.span,
        path=None if source.path == STDIN else source.path, language=language, quality=args.quality,
        max_steps=args.max_steps, seed=args.seed if seed is None else seed,
    )


def check_extras(args: argparse.Namespace) -> None:
    """Options that need an optional extra fail here, before any file is read or model loaded."""
    if args.quantize in ("4bit", "8bit"):
        for module in ("bitsandbytes", "accelerate"):
            require(module, f"--quantize {args.quantize}")


class Filler:
    """Where `infill fill` sends its requests: a running daemon that serves the model asked for (it stays loaded
    between commands), else an engine loaded in this process. `via` says which, for --json's "backend"."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.impl = self._daemon() if self._may_use_daemon() else None
        self.via = "daemon" if self.impl is not None else "in-process"
        if self.impl is None:
            self.impl = load_engine(args.model, load_options(args), verbose=args.verbose)

    def _may_use_daemon(self) -> bool:
        """Not when told so, nor when an option asks for a model load the daemon did not make."""
        a = self.args
        return not a.no_daemon and a.device == "auto" and a.dtype == "auto" and not a.quantize \
            and not a.trust_remote_code

    def _daemon(self):
        from server.remote import connect

        from .models.presets import default_model

        return connect(self.args.daemon, self.args.model or default_model())

    def fill(self, req: InfillRequest) -> InfillResult:
        if self.via == "in-process":
            return self.impl.fill(req)
        from server.protocol import Unavailable

        try:
            return self.impl.fill(req)
        except Unavailable:  # the daemon went away mid-command: load the model here and carry on
            self.close()
            self.impl, self.via = load_engine(self.args.model, load_options(self.args), self.args.verbose), "in-process"
            return self.impl.fill(req)

    def close(self) -> None:
        if self.via == "daemon":
            self.impl.close()


def load_options(args: argparse.Namespace) -> LoadOptions:
    from .models.base import LoadOptions

    return LoadOptions(device=args.device, dtype=args.dtype, quantize=args.quantize or None,
                       trust_remote_code=args.trust_remote_code, threads=args.threads)


def load_engine(model: str | None, options: LoadOptions, verbose: bool = False) -> Engine:
    """Load the engine once per process; every failure becomes a ModelLoadError with a one-line message."""
    quiet_transformers(verbose)
    from .engine import Engine

    try:
        return Engine.load(model, options)
    except (ModelLoadError, BadInputError):
        raise
    except ModuleNotFoundError as exc:
        raise missing_extra(exc, f"loading {model or 'the model'}") or ModelLoadError(
            f"could not load model {model or '(default)'}: {exc}") from exc
    except Exception as exc:  # transformers and torch raise all kinds of things for a bad checkpoint or device
        if verbose:
            raise
        raise ModelLoadError(f"could not load model {model or '(default)'}: {type(exc).__name__}: {exc}") from exc


def quiet_transformers(verbose: bool) -> None:
    """No progress bars or library warnings on stderr unless --verbose. transformers reads the environment when
    it is imported; a model that loads without it (the fused stack) never pays ~1 s to import it here."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "0" if verbose else "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "warning" if verbose else "error")
    if "transformers" not in sys.modules:
        return
    from transformers.utils import logging as hf_logging

    if verbose:
        hf_logging.set_verbosity_warning()
        hf_logging.enable_progress_bar()
    else:
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


# -- output formatting -------------------------------------------------------------------------------------
def result_json(path: str, index: LineIndex, hole: HoleSpec | None, result: InfillResult, text: str,
                backend: str = "in-process") -> dict:
    """One hole as a JSON object: where (path, range as L1:C1-L2:C2 and offsets), what, and how it was made
    (`backend`: "daemon" or "in-process")."""
    fields = result.to_dict()
    candidates = fields.pop("candidates")
    out = {"path": path, "range": format_range(index, result.start, result.end)}
    if hole is not None:
        out[hole.option] = hole.spec
    out |= fields
    out["text"] = text
    out["seconds"] = round(result.seconds, 4)
    out["backend"] = backend
    out["candidates"] = [
        {"length": c["length"], "chars": len(c["text"]), "syntax_ok": c["syntax_ok"],
         "confidence": round(c["confidence"], 4), "finished": c["finished"]}
        for c in candidates
    ]
    return out


def plain_output(index: LineIndex, results: list[InfillResult], texts: list[str]) -> str:
    """The filled text, ending with a line break (so the shell prompt starts on a line of its own; --json has the
    exact text); nothing for no suggestion. For several holes, each under a `==> L1:C1-L2:C2 <==` header."""

    def line(text: str) -> str:
        return text if not text or text.endswith("\n") else text + "\n"

    if len(results) == 1:
        return line(texts[0])
    return "".join(f"==> {format_range(index, r.start, r.end)} <==\n{line(t)}"
                   for r, t in zip(results, texts, strict=True))


def unified_diff(old: str, new: str, path: str) -> str:
    """A unified diff that `patch -p1` and `git apply` take, with "No newline at end of file" markers."""
    name = path.lstrip("/") if path != STDIN else "stdin"
    lines = difflib.unified_diff(_lines(old), _lines(new), f"a/{name}", f"b/{name}", lineterm="\n")
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


def _lines(text: str) -> list[str]:
    """Lines split after each "\\n" only (a CR stays part of its line, as in `diff`)."""
    lines = text.split("\n")
    out = [line + "\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


# -- infill fill --jobs ------------------------------------------------------------------------------------
JOB_KEYS = ("path", "range", "at", "language", "seed")


def run_jobs(args: argparse.Namespace) -> int:
    clash = [flag for flag, on in (("FILE", args.file), ("--at", args.at), ("--range", args.range),
                                   ("--diff", args.diff), ("--write", args.write)) if on]
    if clash:
        raise UsageError(f"--jobs takes its holes from the jobs file; drop {', '.join(clash)}")
    if args.language:
        normalize_language(args.language)
    check_extras(args)
    jobs = []  # (line number, line, what to fill or the reason it cannot be): all checked before the model loads
    for number, line in read_jobs(args.jobs):
        try:
            jobs.append((number, line, prepare_job(line, args)))
        except InfillError as exc:
            jobs.append((number, line, exc))
    filler = None
    status = EXIT_OK
    for number, line, job in jobs:
        try:
            if isinstance(job, InfillError):
                raise job
            filler = filler or Filler(args)
            out = run_job(filler, job, args)
        except ModelLoadError:
            raise
        except InfillError as exc:
            out, status = job_error(line, number, str(exc)), EXIT_FAILED
        except Exception as exc:  # one job's bug must not cost the others their results
            if args.verbose:
                raise
            out, status = job_error(line, number, f"internal error: {type(exc).__name__}: {exc}"), EXIT_FAILED
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()
    if filler is not None:
        filler.close()
    return status


def read_jobs(name: str) -> Iterator[tuple[int, str]]:
    """(line number, line) for every non-blank line of the jobs file; the file is checked before the model loads."""
    source = read_source(name, max_bytes=1 << 30)
    return ((n, line) for n, line in enumerate(source.text.splitlines(), 1) if line.strip())


def parse_job(line: str) -> dict:
    try:
        job = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadInputError(f"not a JSON object: {exc.msg} at column {exc.colno}") from None
    if not isinstance(job, dict):
        raise BadInputError("not a JSON object")
    if not isinstance(job.get("path"), str) or not job["path"]:
        raise BadInputError('a job needs "path": a file name')
    if ("at" in job) == ("range" in job):
        raise BadInputError('a job needs exactly one of "at": "L:C" or "range": "L1:C1-L2:C2"')
    for key in ("at", "range", "language"):
        if key in job and not isinstance(job[key], str):
            raise BadInputError(f'"{key}" must be a string')
    if "seed" in job and (not isinstance(job["seed"], int) or isinstance(job["seed"], bool)):
        raise BadInputError('"seed" must be an integer')
    return job


@dataclass(frozen=True)
class Job:
    """One line of a jobs file, checked: the file read, the hole resolved."""

    source: SourceText
    index: LineIndex
    hole: HoleSpec
    language: str | None
    seed: int | None


def prepare_job(line: str, args: argparse.Namespace) -> Job:
    job = parse_job(line)
    language = job.get("language") or args.language
    language = normalize_language(language) if language else None
    if job["path"] == STDIN:
        raise BadInputError("a job cannot read stdin")
    source = read_source(job["path"], args.max_bytes)
    index = LineIndex.of(source.text)
    hole = parse_holes(index, [job["at"]] if "at" in job else None, [job["range"]] if "range" in job else None)[0]
    return Job(source, index, hole, language, job.get("seed"))


def run_job(filler: Filler, job: Job, args: argparse.Namespace) -> dict:
    result = filler.fill(build_request(job.source, job.hole, args, job.language, seed=job.seed))
    return result_json(job.source.path, job.index, job.hole, result, match_newlines(result.text, job.source.newline),
                       filler.via)


def job_error(line: str, number: int, message: str) -> dict:
    out: dict = {}
    try:
        job = json.loads(line)
    except json.JSONDecodeError:
        job = None
    if isinstance(job, dict):
        out = {k: job[k] for k in ("path", "at", "range") if k in job}
    out.setdefault("path", None)
    return out | {"line": number, "error": one_line(message)}


# -- infill model ------------------------------------------------------------------------------------------
def add_model_command_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="model_command", metavar="ACTION", required=True, parser_class=_Parser)
    rnd = sub.add_parser("random", help="write a random-init checkpoint (tests, speed benchmarks)",
                         allow_abbrev=False)
    rnd.add_argument("dir", metavar="DIR", type=Path, help="output directory (new or empty)")
    rnd.add_argument("--preset", required=True,
                     help="model shape: tiny, small, diffusiongemma-26b-a4b (infill.models.presets.PRESETS)")
    rnd.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default 0)")
    rnd.add_argument("--force", action="store_true", help="write into a directory that is not empty")
    p.epilog = rnd.epilog = MODEL_EXITS


def run_model(args: argparse.Namespace) -> int:
    from .errors import lookup
    from .models.presets import PRESETS, bundled_tokenizer_dir, write_random_checkpoint

    lookup(PRESETS, "model preset", args.preset)  # an unknown name lists the presets
    out: Path = args.dir
    if out.exists() and not out.is_dir():
        raise BadInputError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise BadInputError(f"{out}: is not empty; pick a new directory or pass --force to write into it")
    if not (bundled_tokenizer_dir() / "tokenizer.json").exists():
        raise ModelLoadError(f"no tokenizer in {bundled_tokenizer_dir()}; train one first (infill.train.tokenizer)")
    quiet_transformers(args.verbose)
    write_random_checkpoint(out, args.preset, seed=args.seed)
    print(f"wrote a random {args.preset} checkpoint to {out}")
    return EXIT_OK


# -- infill train ------------------------------------------------------------------------------------------
def run_train(args: argparse.Namespace) -> int:
    try:
        from .train.cli import main as train_main
    except ModuleNotFoundError as exc:
        raise missing_extra(exc, "infill train") or InfillError(f"infill train is unavailable: {exc}") from exc
    return train_main(args.forwarded)


# -- infill daemon / infill lsp (in server/, imported when used) -------------------------------------------
def _lazy(module: str, attr: str) -> Callable:
    """A function of `module` imported on first call: the CLI starts fast whatever the subcommand."""

    def call(*args):
        import importlib

        return getattr(importlib.import_module(module), attr)(*args)

    return call


# -- the parser and main -----------------------------------------------------------------------------------
COMMANDS: dict[str, Command] = {
    "fill": Command("fill a hole (cursor or range) in a file", add_fill_arguments, run_fill),
    "daemon": Command("run the model daemon, or query it (`infill daemon status`)",
                      _lazy("server.daemon_cli", "add_arguments"), _lazy("server.daemon_cli", "run")),
    "lsp": Command("run the language server over stdio", _lazy("server.lsp_cli", "add_arguments"),
                   _lazy("server.lsp_cli", "run")),
    "model": Command("model utilities (random test checkpoints)", add_model_command_arguments, run_model),
    "train": Command("train the project's own model (arguments go to infill.train.cli)",
                     lambda p: None, run_train, forward=True),
}


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true",
                        help="show library warnings, progress bars and tracebacks")
    parser = _Parser(prog=PROG, description="Code infilling with text-diffusion language models.",
                     epilog=EXIT_HELP, allow_abbrev=False)
    from . import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.help, add_help=not cmd.forward,
                           parents=[] if cmd.forward else [common], allow_abbrev=False)  # epilog: its exits
        cmd.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    verbose = "-v" in argv or "--verbose" in argv
    try:
        args, extra = build_parser().parse_known_args(argv)
        command = COMMANDS[args.command]
        if command.forward:
            args.forwarded = argv[argv.index(args.command) + 1 :]
        elif extra:
            raise UsageError(f"unrecognized arguments: {' '.join(extra)}")
        verbose = getattr(args, "verbose", False)
        with warnings.catch_warnings():
            if not verbose:
                warnings.simplefilter("ignore")
            return command.run(args)
    except ModelLoadError as exc:
        return fail(exc, EXIT_MODEL, verbose)
    except InfillError as exc:
        return fail(exc, EXIT_BAD_INPUT, verbose)
    except ModuleNotFoundError as exc:  # an optional extra that the command needs is not installed
        if (extra := missing_extra(exc)) is None:
            return fail(f"internal error: {type(exc).__name__}: {exc} (run with --verbose for the traceback)",
                        EXIT_FAILED, verbose)
        return fail(extra, EXIT_BAD_INPUT, verbose)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `infill fill ... | head`: stop quietly, and keep Python's exit flush quiet too
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except Exception as exc:
        if verbose:
            raise
        return fail(f"internal error: {type(exc).__name__}: {exc} (run with --verbose for the traceback)",
                    EXIT_FAILED, verbose)


def fail(error: Exception | str, status: int, verbose: bool = False) -> int:
    if verbose and isinstance(error, Exception) and error.__cause__ is not None:
        import traceback

        traceback.print_exception(error.__cause__, file=sys.stderr)
    print(f"{PROG}: error: {one_line(str(error))}", file=sys.stderr)
    return status


def one_line(message: str, limit: int = 500) -> str:
    """Library messages can span lines; a CLI error is one line."""
    text = " ".join(message.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def device_name(value: str) -> str:
    """argparse type: the devices `--device` takes, checked before torch loads."""
    import re

    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a device; use auto, cpu, cuda, cuda:N or mps")
    return value


def positive_int(value: str) -> int:
    """argparse type: a whole number >= 1 (shared with the daemon's options)."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be at least 1")
    return n
