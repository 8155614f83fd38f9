"""The `infill` command end to end, with the tiny random model.

A random model writes noise, so these tests check structure, ranges and file safety, never content.
Most run `infill.cli.main` in-process against one loaded engine (a subprocess spends seconds importing
torch); the `run_cli` ones go through a real `python -m infill` subprocess.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import types
from dataclasses import replace

import pytest
from conftest import ROOT

from infill import cli as cli_module
from infill.cli import Command, plain_output, unified_diff
from infill.document import LineIndex, parse_range
from infill.engine import Engine
from infill.files import apply_edits
from infill.models.base import LoadOptions
from infill.request import DEFAULT_SEED, InfillResult

SOURCE = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n"
FAST = ("--max-steps", "1", "--seed", "0")  # one denoising step: these tests check plumbing, not quality
RANGE_RE = re.compile(r"^\d+:\d+-\d+:\d+$")


def snapshot(path) -> tuple[bytes, int]:
    return path.read_bytes(), os.stat(path).st_mtime_ns


def leftovers(directory) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".infill-tmp")]


def offsets(text: str, spec: str) -> tuple[int, int]:
    return parse_range(spec, LineIndex.of(text))


def check_hole_json(obj: dict, path: str) -> None:
    """The documented --json fields, with their types."""
    assert obj["path"] == path
    assert RANGE_RE.match(obj["range"])
    types_ = {"text": str, "syntax_ok": bool, "steps": int, "forward_passes": int, "tokens": int,
              "seconds": (int, float), "model": str, "kind": str, "sizing": str, "start": int, "end": int,
              "candidates": list, "repaired": bool}
    for key, kind in types_.items():
        assert isinstance(obj[key], kind), (key, obj[key])
    assert obj["language"] is None or isinstance(obj["language"], str)
    assert obj["steps"] >= 1 and obj["forward_passes"] >= 2 and obj["seconds"] >= 0
    assert obj["candidates"] and {"length", "syntax_ok", "confidence", "finished"} <= set(obj["candidates"][0])


class FakeEngine:
    """Fills every hole with a fixed text (exact outputs to compare); records the requests."""

    model_id = "fake"

    def __init__(self, text: str = "X", before_return=None) -> None:
        self.text, self.before_return, self.requests = text, before_return, []

    def fill(self, req, on_draft=None, cancelled=None) -> InfillResult:
        self.requests.append(req)
        start, end = req.span if req.span is not None else (req.cursor, req.cursor)
        if self.before_return:
            self.before_return()
        return InfillResult(text=self.text, start=start, end=end, kind="range" if req.span else "line",
                            syntax_ok=True, steps=1, forward_passes=2, tokens=1, seconds=0.0, model="fake",
                            language=req.language, sizing="tree-sitter")


def without_repair(engine: Engine) -> Engine:
    """The same model without repair rounds: a one-step fill costs two forward passes, not fourteen."""
    constraints = replace(engine.config.constraints, repair_rounds=0)
    return Engine(engine.backend, replace(engine.config, constraints=constraints))


@pytest.fixture(scope="module")
def tiny(tiny_engine):
    return without_repair(tiny_engine)


@pytest.fixture
def cli(monkeypatch, capsys, tiny):
    """`infill ARGS...` in-process: returns (status, stdout, stderr). The model is the tiny one unless
    `engine=` gives another; `stdin=` feeds standard input."""

    def run(*args, stdin: str | None = None, engine=None):
        monkeypatch.setattr(cli_module, "load_engine", lambda model, options, verbose=False: engine or tiny)
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
        status = cli_module.main([str(a) for a in args])
        out, err = capsys.readouterr()
        return status, out, err

    return run


@pytest.fixture
def src(tmp_path):
    p = tmp_path / "m.py"
    p.write_text(SOURCE)
    return p


# -- real subprocesses -------------------------------------------------------------------------------
def test_subprocess_ranges_json_write(run_cli, tmp_path, src):
    """Two holes filled against the original text, reported, and written at once; the rest byte-identical."""
    before = src.read_bytes()
    proc = run_cli("fill", src.name, "--range", "2:12-2:17", "--range", "5:9-5:13", "--json", "--write", *FAST,
                   "--threads", "1")  # two busy threads on a shared 2-core machine spin more than they compute
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no progress bars, no library warnings
    holes = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [h["range"] for h in holes] == ["2:12-2:17", "5:9-5:13"]
    for h in holes:
        check_hole_json(h, src.name)
        assert h["kind"] == "range" and h["language"] == "python" and h["model"]
    (s1, e1), (s2, e2) = offsets(SOURCE, "2:12-2:17"), offsets(SOURCE, "5:9-5:13")
    after = src.read_text()
    assert after == SOURCE[:s1] + holes[0]["text"] + SOURCE[e1:s2] + holes[1]["text"] + SOURCE[e2:]
    assert src.read_bytes() != before or holes[0]["text"] == "a + b"
    assert leftovers(tmp_path) == []


def test_jobs_with_a_bad_job_in_the_middle(cli, monkeypatch, tmp_path, src):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join([
        json.dumps({"path": src.name, "range": "2:12-2:17"}),
        json.dumps({"path": "missing.py", "range": "1:1-1:2"}),
        "",
        json.dumps({"path": src.name, "at": "6:17", "seed": 3}),
    ]) + "\n")
    before = snapshot(src)
    monkeypatch.chdir(tmp_path)
    status, out, err = cli("fill", "--jobs", jobs.name, "--max-steps", "1")
    assert status == 1 and err == ""
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 3
    check_hole_json(lines[0], src.name)
    assert lines[0]["range"] == "2:12-2:17"
    assert lines[1]["path"] == "missing.py" and "no such file" in lines[1]["error"] and "text" not in lines[1]
    check_hole_json(lines[2], src.name)
    assert lines[2]["at"] == "6:17"
    assert snapshot(src) == before


BAD_INPUT = {
    "missing file": ["fill", "nope.py", "--at", "1:1"],
    "directory": ["fill", "sub", "--at", "1:1"],
    "binary": ["fill", "blob.py", "--at", "1:1"],
    "not utf-8": ["fill", "latin1.py", "--at", "1:1"],
    "too big": ["fill", "m.py", "--at", "1:1", "--max-bytes", "10"],
    "line outside": ["fill", "m.py", "--at", "99:1"],
    "column outside": ["fill", "m.py", "--at", "1:99"],
    "range outside": ["fill", "m.py", "--range", "1:1-99:1"],
    "zero line": ["fill", "m.py", "--at", "0:1"],
    "malformed at": ["fill", "m.py", "--at", "1,1"],
    "malformed range": ["fill", "m.py", "--range", "1:1"],
    "reversed range": ["fill", "m.py", "--range", "2:5-1:1"],
    "overlapping ranges": ["fill", "m.py", "--range", "1:1-2:3", "--range", "2:1-2:5"],
    "at and range": ["fill", "m.py", "--at", "1:1", "--range", "1:1-1:2"],
    "neither at nor range": ["fill", "m.py"],
    "two --at": ["fill", "m.py", "--at", "1:1", "--at", "2:1"],
    "unknown language": ["fill", "m.py", "--at", "1:1", "--language", "cobol"],
    "json and diff": ["fill", "m.py", "--at", "1:1", "--json", "--diff"],
    "unknown option": ["fill", "m.py", "--at", "1:1", "--frobnicate"],
    "bad max-steps": ["fill", "m.py", "--at", "1:1", "--max-steps", "0"],
    "stdin and write": ["fill", "-", "--language", "python", "--at", "1:1"],
    "stdin without language": ["fill", "-", "--at", "1:1"],
    "unknown dtype": ["fill", "m.py", "--at", "1:1", "--dtype", "float8"],
    "unknown device": ["fill", "m.py", "--at", "1:1", "--device", "tpu"],
    "jobs and file": ["fill", "m.py", "--jobs", "jobs.jsonl"],
    "no command": [],
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_exits_2_with_one_line_and_touches_nothing(run_cli, tmp_path, src, case):
    (tmp_path / "sub").mkdir()
    (tmp_path / "blob.py").write_bytes(b"\x7fELF\x02\x01\x01\0\0\0\0")
    (tmp_path / "latin1.py").write_bytes("s = 'café'\n".encode("latin-1"))
    (tmp_path / "jobs.jsonl").write_text("{}\n")
    files = sorted(p for p in tmp_path.iterdir() if p.is_file())
    before = [snapshot(p) for p in files]
    args = BAD_INPUT[case] + (["--write"] if case not in ("no command", "stdin without language") else [])
    proc = run_cli(*args, stdin=SOURCE)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stdout == ""
    assert proc.stderr.startswith("infill: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert [snapshot(p) for p in files] == before
    assert sorted(p for p in tmp_path.iterdir() if p.is_file()) == files  # nothing new (no temp files)


# -- in-process, with the tiny model ------------------------------------------------------------------
def test_at_cursor_json(cli, src):
    status, out, err = cli("fill", src, "--at", "6:17", "--json", *FAST)
    assert status == 0, err
    (hole,) = [json.loads(line) for line in out.splitlines()]
    check_hole_json(hole, str(src))
    assert hole["at"] == "6:17" and hole["kind"] != "range"
    assert hole["start"] <= offsets(SOURCE, "6:17-6:17")[0] <= hole["end"]
    assert src.read_text() == SOURCE


def test_plain_output_is_the_json_text_and_a_line_break(cli, src):
    _, out_json, _ = cli("fill", src, "--range", "2:12-2:17", "--json", *FAST)
    status, out, err = cli("fill", src, "--range", "2:12-2:17", *FAST)
    hole = json.loads(out_json)
    assert status == 0 and err == ("" if not hole["empty"] else err)
    assert out == ("" if hole["empty"] else hole["text"] + "\n")  # seeded: the same fill twice


def test_stdin_with_language(cli):
    status, out, err = cli("fill", "-", "--language", "py", "--range", "2:12-2:17", "--json", *FAST, stdin=SOURCE)
    assert status == 0, err
    hole = json.loads(out)
    check_hole_json(hole, "-")
    assert hole["language"] == "python" and hole["range"] == "2:12-2:17"


def test_text_file_gets_line_based_sizing(cli, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("shopping list\n- apples\n- \n- pears\n")
    status, out, err = cli("fill", notes, "--at", "3:3", "--json", *FAST)
    assert status == 0, err
    hole = json.loads(out)
    assert hole["sizing"] == "lines" and hole["language"] is None


def test_diff_leaves_the_file_alone(cli, src):
    before = snapshot(src)
    status, out, err = cli("fill", src, "--range", "2:12-2:17", "--diff", *FAST)
    assert status == 0, err
    assert out == "" or out.startswith(f"--- a/{str(src).lstrip('/')}\n+++ b/")
    assert snapshot(src) == before


def test_write_refuses_a_file_changed_during_the_fill(cli, src, tiny):
    """The user saves the file while the model runs: the result is not written over their edit."""
    edited = SOURCE.replace("a * b", "a * b  # typed while infill ran")

    class EditsMidway:
        model_id = tiny.model_id

        def fill(self, req, **kwargs):
            result = tiny.fill(req, **kwargs)
            src.write_text(edited)
            return result

    status, out, err = cli("fill", src, "--range", "2:12-2:17", "--write", *FAST, engine=EditsMidway())
    assert status == 2 and out == ""
    assert "changed on disk" in err and err.count("\n") == 1
    assert src.read_text() == edited and leftovers(src.parent) == []


def test_model_random_then_load(cli, monkeypatch, capsys, tmp_path, src):
    """`infill model random` writes a checkpoint that the real loader loads and `fill --model` is given."""
    out_dir = tmp_path / "rnd"
    assert cli_module.main(["model", "random", str(out_dir), "--preset", "tiny", "--seed", "1"]) == 0
    assert (out_dir / "config.json").exists() and str(out_dir) in capsys.readouterr().out
    assert cli_module.main(["model", "random", str(out_dir), "--preset", "tiny"]) == 2  # not empty: refused
    assert "--force" in capsys.readouterr().err

    engine = cli_module.load_engine(str(out_dir), LoadOptions(device="cpu"))
    assert engine.model_id == str(out_dir) and engine.backend.describe()["parameters"] > 0
    asked, quick = [], without_repair(engine)
    status, out, err = cli("fill", src, "--range", "2:12-2:17", "--json", "--model", out_dir, *FAST,
                           engine=types.SimpleNamespace(fill=lambda req: asked.append(req) or quick.fill(req)))
    assert status == 0, err
    assert json.loads(out)["model"] == str(out_dir) and len(asked) == 1


def test_model_that_cannot_load_exits_3(capsys, src, tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    for model in (tmp_path / "absent", tmp_path / "broken"):
        status = cli_module.main(["fill", str(src), "--at", "1:1", "--model", str(model)])
        err = capsys.readouterr().err
        assert status == 3 and err.startswith("infill: error: ") and err.count("\n") == 1, err


def test_unknown_quality_is_bad_input(cli, src):
    status, _, err = cli("fill", src, "--at", "1:1", "--quality", "sloppy")
    assert status == 2 and "fast" in err and err.count("\n") == 1


# -- in-process, with a fake engine: exact outputs -----------------------------------------------------
def test_write_crlf_file_gets_crlf_lines_and_exact_bytes(cli, tmp_path):
    p = tmp_path / "w.py"
    p.write_bytes(b"def f():\r\n    pass\r\n\r\nx = 1\r\n")
    engine = FakeEngine("return 1\nreturn 2")
    status, out, err = cli("fill", p, "--range", "2:5-2:9", "--write", "--json", engine=engine)
    assert status == 0, err
    assert p.read_bytes() == b"def f():\r\n    return 1\r\nreturn 2\r\n\r\nx = 1\r\n"
    assert json.loads(out)["text"] == "return 1\r\nreturn 2"


def test_several_holes_plain_and_diff(cli, src):
    status, out, _ = cli("fill", src, "--range", "5:9-5:13", "--range", "2:12-2:17", engine=FakeEngine("Z"))
    assert status == 0
    assert out == "==> 5:9-5:13 <==\nZ\n==> 2:12-2:17 <==\nZ\n"
    status, out, _ = cli("fill", src, "--range", "2:12-2:17", "--diff", engine=FakeEngine("Z"))
    name = str(src).lstrip("/")
    assert out == (f"--- a/{name}\n+++ b/{name}\n@@ -1,5 +1,5 @@\n def add(a, b):\n-    return a + b\n"
                   "+    return Z\n \n \n def mul(a, b):\n")


def test_jobs_report_each_bad_job_and_go_on(cli, monkeypatch, tmp_path, src):
    jobs = [
        {"path": src.name, "range": "1:1-1:4", "seed": 7, "language": "python"},
        "not json",
        {"range": "1:1-1:2"},
        {"path": src.name, "at": "1:1", "range": "1:1-1:2"},
        {"path": src.name, "at": "77:1"},
        {"path": src.name, "at": "1:1", "language": "cobol"},
        {"path": src.name, "at": "1:1", "seed": "7"},
        {"path": str(src), "at": "2:5"},
    ]
    jobs_file = tmp_path / "jobs.jsonl"
    jobs_file.write_text("\n".join(j if isinstance(j, str) else json.dumps(j) for j in jobs) + "\n")
    engine = FakeEngine("Q")
    monkeypatch.chdir(tmp_path)
    status, out, err = cli("fill", "--jobs", jobs_file, "--seed", "1", engine=engine)
    lines = [json.loads(line) for line in out.splitlines()]
    assert status == 1 and err == "" and len(lines) == len(jobs)
    assert [("error" in line) for line in lines] == [False, True, True, True, True, True, True, False]
    assert [line["line"] for line in lines if "error" in line] == [2, 3, 4, 5, 6, 7]
    assert lines[4]["path"] == src.name and "outside" in lines[4]["error"]
    assert [r.seed for r in engine.requests] == [7, 1]
    assert lines[0]["range"] == "1:1-1:4" and lines[7]["range"] == "2:5-2:5" and lines[7]["text"] == "Q"


def test_jobs_from_stdin_all_good_exit_0(cli, src):
    status, out, _ = cli("fill", "--jobs", "-", stdin=json.dumps({"path": str(src), "at": "1:1"}) + "\n",
                         engine=FakeEngine())
    assert status == 0 and json.loads(out)["path"] == str(src)


def test_filled_ranges_that_overlap_are_not_written(cli, src):
    """Holes are checked twice: as given, and as the engine widened them."""

    class Widening(FakeEngine):
        def fill(self, req, **kwargs):
            r = super().fill(req)
            r.start, r.end = 0, len(SOURCE)
            return r

    before = snapshot(src)
    status, _, err = cli("fill", src, "--range", "1:1-1:2", "--range", "2:1-2:2", "--write", engine=Widening())
    assert status == 2 and "overlap" in err
    assert snapshot(src) == before


# -- pieces --------------------------------------------------------------------------------------------
def test_unified_diff_marks_missing_final_newline():
    diff = unified_diff("a\nb", "a\nc", "x.py")
    assert diff == ("--- a/x.py\n+++ b/x.py\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n"
                    "+c\n\\ No newline at end of file\n")
    assert unified_diff("same\n", "same\n", "x.py") == ""


def test_plain_output_single_hole_is_exact():
    r = InfillResult(text="x", start=0, end=0, kind="line", syntax_ok=True, steps=1, forward_passes=2, tokens=1,
                     seconds=0.0, model="m", language=None, sizing="lines")
    assert plain_output(LineIndex.of("abc"), [r], ["x"]) == "x\n"  # the shell prompt starts on its own line
    assert plain_output(LineIndex.of("abc"), [r], ["x\n"]) == "x\n"
    assert plain_output(LineIndex.of("abc"), [r], [""]) == ""


def test_train_forwards_its_arguments(monkeypatch):
    seen = []
    fake = types.ModuleType("infill.train.cli")
    fake.main = lambda argv: seen.append(argv) or 0
    monkeypatch.setitem(sys.modules, "infill.train.cli", fake)
    assert cli_module.main(["train", "--config", "smoke", "extra", "--", "--help"]) == 0
    assert seen == [["--config", "smoke", "extra", "--", "--help"]]


def test_train_help_imports_no_torch(tmp_path):
    """The training command's own parser prints its help; torch (2 s of imports) is not loaded for it."""
    import subprocess

    probe = ("import sys, atexit; from infill.cli import main; "
             "atexit.register(lambda: print('torch' in sys.modules, file=sys.stderr)); main(['train', '--help'])")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0 and "--objective" in proc.stdout and "--init-from" in proc.stdout
    assert proc.stderr.strip().splitlines()[-1] == "False", proc.stderr


def test_a_new_subcommand_is_one_registry_entry(monkeypatch, capsys):
    def add(p):
        p.add_argument("--port", type=int, default=1)

    monkeypatch.setitem(cli_module.COMMANDS, "daemon", Command("run the daemon", add,
                                                                lambda a: print(f"port {a.port}") or 0))
    assert cli_module.main(["daemon", "--port", "7"]) == 0
    assert capsys.readouterr().out == "port 7\n"


def test_apply_edits_matches_json_offsets():
    """What --write does with the --json fields, spelled out."""
    start, end = offsets(SOURCE, "2:12-2:17")
    assert apply_edits(SOURCE, [(start, end, "a - b")]) == SOURCE.replace("a + b", "a - b")


def test_public_api():
    """What `import infill` promises (the CLI builds on the same names)."""
    import infill

    for name in infill.__all__:
        assert getattr(infill, name) is not None, name
    assert infill.Engine is Engine and infill.LoadOptions is LoadOptions
    assert issubclass(infill.FileChangedError, infill.BadInputError)


# -- issue 15: results a user can trust ---------------------------------------------------------------
def loader_that_must_not_run(monkeypatch) -> list:
    """Replaces the model loader with one that records being called: input errors must come before it."""
    calls: list = []
    monkeypatch.setattr(cli_module, "load_engine", lambda *a, **k: calls.append(a) or pytest.fail("model loaded"))
    return calls


def test_diff_predicts_write_without_a_seed(cli, src):
    """No --seed given: the default seed makes the preview and the write the same middle."""
    steps = ("--max-steps", "2")
    _, first, _ = cli("fill", src, "--range", "2:12-2:17", "--json", *steps)
    _, diff, _ = cli("fill", src, "--range", "2:12-2:17", "--diff", *steps)
    status, _, err = cli("fill", src, "--range", "2:12-2:17", "--write", *steps)
    assert status == 0, err
    text = json.loads(first)["text"]
    s, e = offsets(SOURCE, "2:12-2:17")
    assert src.read_text() == SOURCE[:s] + text + SOURCE[e:]
    assert diff == unified_diff(SOURCE, src.read_text(), str(src))
    assert cli_module.build_parser().parse_args(["fill", "x.py"]).seed == DEFAULT_SEED


def test_no_code_is_no_suggestion_and_never_written(cli, src):
    """The real engine over a scripted model that writes only a comment: exit 0, "text": "", "empty": true, a note on
    stderr, and --write leaves the file as it was."""
    import torch

    from tests.fakes import CharTokenizer, ScriptedBackend

    ids = CharTokenizer().encode("# later") + [1]
    engine = Engine(ScriptedBackend(torch.tensor([ids + [0] * (1024 - len(ids))])))  # as long as any canvas
    before = snapshot(src)
    status, out, err = cli("fill", src, "--range", "2:5-2:17", "--json", "--write", engine=engine)
    hole = json.loads(out)
    assert status == 0 and hole["text"] == "" and hole["empty"] is True and hole["syntax_ok"] is False
    assert err.startswith("infill: no suggestion at 2:5-2:17") and err.count("\n") == 1
    assert snapshot(src) == before
    status, out, err = cli("fill", src, "--at", "3:1", engine=engine)
    assert status == 0 and out == "" and "no suggestion" in err


def test_inputs_are_checked_before_the_model_loads(cli, monkeypatch, tmp_path, src):
    calls = loader_that_must_not_run(monkeypatch)
    src.chmod(0o444)
    try:
        status = cli_module.main(["fill", str(src), "--at", "2:5", "--write"])
    finally:
        src.chmod(0o644)
    assert status == 2
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(SOURCE.encode())))
    assert cli_module.main(["fill", "-", "--at", "2:5"]) == 2
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"path": "missing.py", "at": "1:1"}) + "\n" + json.dumps({"path": str(src), "at": "99:1"}))
    assert cli_module.main(["fill", "--jobs", str(jobs)]) == 1  # every job bad: reported, and no model loaded
    assert cli_module.main(["fill", str(src), "--at", "2:5", "--quantize", "4bit"]) == 2  # [gpu] not installed here
    assert calls == []


def test_read_only_file_is_refused_in_a_second(run_cli, tmp_path, src):
    src.chmod(0o444)
    try:
        proc = run_cli("fill", src.name, "--at", "2:5", "--write", timeout=60)
    finally:
        src.chmod(0o644)
    assert proc.returncode == 2 and "read-only" in proc.stderr and src.read_text() == SOURCE


def test_stdin_needs_language_and_says_how(run_cli):
    proc = run_cli("fill", "-", "--at", "1:1", stdin=SOURCE)
    assert proc.returncode == 2 and "--language" in proc.stderr and proc.stdout == ""


def test_line_counts_as_an_editor_shows_them(cli, src):
    status, _, err = cli("fill", src, "--at", "90:1")
    assert status == 2 and "which has 6 lines" in err  # SOURCE: six lines, each ending with a line break
    assert LineIndex.of("a\nb").lines_shown == 2 and LineIndex.of("a\r\nb\r\n").lines_shown == 2
    assert LineIndex.of("").lines_shown == 1


def test_missing_extra_is_exit_2_naming_it(monkeypatch, capsys):
    """A command that needs an optional extra says which one and how to install it."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if `pip install -e .` without [train]

    def needs_plots(argv):
        import matplotlib  # noqa: F401

    fake = types.ModuleType("infill.train.cli")
    fake.main = needs_plots
    monkeypatch.setitem(sys.modules, "infill.train.cli", fake)
    assert cli_module.main(["train", "--config", "smoke"]) == 2
    err = capsys.readouterr().err
    assert "[train]" in err and "pip install 'infill[train]'" in err and "internal error" not in err
    assert cli_module.main(["fill", "x.py", "--at", "1:1", "--quantize", "8bit"]) == 2
    assert "pip install 'infill[gpu]'" in capsys.readouterr().err


def help_of(*command: str) -> str:
    out = io.StringIO()
    parser = cli_module.build_parser()
    sub = parser._subparsers._group_actions[0].choices[command[0]] if command else parser
    sub.print_help(out)
    return " ".join(out.getvalue().split())


def test_every_help_lists_its_choices_and_its_own_exit_statuses():
    parser = cli_module.build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name, sub in commands.items():
        if cli_module.COMMANDS[name].forward:
            continue
        text = help_of(name)
        assert "exit status:" in text, name
        assert ("--jobs" in text.split("exit status:")[1]) == (name == "fill"), name
        for action in sub._actions:
            if action.choices and not isinstance(action.choices, dict):
                assert "{" + ",".join(action.choices) + "}" in text, (name, action.dest)
    assert "no daemon on the address" in help_of("daemon") and "model failed to load" not in help_of("lsp")


def test_fill_goes_through_a_running_daemon_that_serves_the_model(tmp_path, tiny_model_dir, src):
    """A daemon on the address: its model, no torch in the command; another model asked for, or --no-daemon:
    loaded in process. --json says which."""
    import subprocess

    from daemon_helpers import DaemonProcess

    daemon = DaemonProcess(tiny_model_dir, tmp_path / "run").start()
    try:
        daemon.wait_ready()

        def fill(*extra: str) -> tuple[dict, str]:
            proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "infill", "fill", str(src), "--at", "2:12",
                                   "--json", "--daemon", daemon.address, *FAST, *extra], capture_output=True,
                                  text=True, env=daemon.env, cwd=tmp_path, timeout=120)
            assert proc.returncode == 0, proc.stderr[-2000:]
            return json.loads(proc.stdout), proc.stderr

        out, imports = fill()
        check_hole_json(out, str(src))
        assert out["backend"] == "daemon" and not re.search(r"\| torch$", imports, re.M)
        assert fill("--no-daemon")[0]["backend"] == "in-process"
        other = tmp_path / "copy"
        other.mkdir()
        for f in tiny_model_dir.iterdir():
            (other / f.name).write_bytes(f.read_bytes())
        assert fill("--model", str(other))[0]["backend"] == "in-process"  # the daemon serves another model
        assert fill("--quantize", "none")[0]["backend"] == "in-process"  # a load the daemon did not make
    finally:
        daemon.stop()
