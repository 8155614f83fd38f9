"""`infill fill --write` never corrupts a file.

- Killed at random points: a writer process runs the real CLI (`infill.cli.main([... "--write"])`, the model
  replaced by a fake that writes the next numbered version of a 256 KB block) in a loop, and is SIGKILLed after a
  random delay, or the moment its temporary file appears (in the middle of a write). After every kill the file
  is exactly one complete version, newer or equal to the last one seen, with its permission bits and CRLF line
  endings; never a mix. Writers are forked from one process that imported the CLI (and torch) once, so a kill
  costs milliseconds, not a Python start.
- Random files (LF, CRLF, CR, mixed endings, BOM, non-ASCII, odd modes), random ranges, random middles: the bytes
  outside the range are untouched, inserted lines take the file's line ending when it has one kind, the mode and
  the BOM stay.
- Random non-UTF-8 and binary content, and files over a random --max-bytes: exit 2, one line, file untouched.

Already elsewhere: a file changed while the model ran is refused (tests/test_cli.py::
test_write_refuses_a_file_changed_during_the_fill, tests/test_files.py::test_write_refuses_changed_file and
test_write_refuses_change_during_write); read-only files, symlinks, unencodable text (tests/test_files.py).
"""

from __future__ import annotations

import os
import random
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from conftest import ROOT, cli_env
from hypothesis import given
from hypothesis import strategies as st
from test_cli import FakeEngine

from infill import cli as cli_module
from infill.document import LineIndex
from infill.files import UTF8_BOM, newline_style, read_source, write_atomic

from .conftest import budget, examples

# -- killed while writing ---------------------------------------------------------------------------------------
HEADER = "import os\r\n\r\n\r\ndef payload():\r\n"
FOOTER = "\r\n\r\nprint(payload())\r\n"
BODY_LINES = 256
MODE = 0o640


def render(version: int) -> bytes:
    """The whole file at `version` (CRLF, 256 long lines between two version markers)."""
    body = "".join(f"    x{i} = '{version:08d}{'.' * 1000}'\r\n" for i in range(BODY_LINES))
    return (HEADER + f"    # version {version}\r\n" + body + f"    # end {version}\r\n" + FOOTER).encode()


FIRST = HEADER.count("\n") + 1  # 1-based line of the version marker
SPEC = f"{FIRST}:1-{FIRST + BODY_LINES + 2}:1"  # the block, markers included, end exclusive

# The writer server: imports the CLI once, then forks one writer per line read from stdin and reports its pid
# and how it ended. A writer fills SPEC with the next version, over and over, through `infill.cli.main`.
SERVER = textwrap.dedent(f"""
    import os, re, sys
    from infill import cli
    from infill.request import InfillResult

    body = lambda v: "".join(f"    x{{i}} = '{{v:08d}}{{'.' * 1000}}'\\n" for i in range({BODY_LINES}))

    class NextVersion:
        model_id = "next-version"

        def fill(self, req, on_draft=None, cancelled=None):
            v = int(re.search(r"# version (\\d+)", req.text).group(1)) + 1
            text = f"    # version {{v}}\\n" + body(v) + f"    # end {{v}}\\n"  # LF: the CLI makes it CRLF
            return InfillResult(text=text, start=req.span[0], end=req.span[1], kind="range", syntax_ok=True,
                                steps=1, forward_passes=2, tokens=1, seconds=0.0, model=self.model_id,
                                language="python", sizing="test")

    cli.load_engine = lambda *args, **kwargs: NextVersion()
    path = sys.argv[1]
    for _ in sys.stdin:
        pid = os.fork()
        if pid == 0:
            while True:
                status = cli.main(["fill", path, "--range", "{SPEC}", "--write"])
                if status:
                    os._exit(10 + status)
        print(pid, flush=True)
        _, code = os.waitpid(pid, 0)
        print(code, flush=True)
""")


def version_of(data: bytes, known: int) -> int:
    """The version a file holds; fails unless it is exactly one whole version >= `known`."""
    marker = b"# version "
    at = data.find(marker)
    assert at > 0, data[:200]
    version = int(data[at + len(marker) : data.index(b"\r", at)])
    assert version >= known and data == render(version), f"not a whole version: {len(data)} bytes"
    return version


def temp_files(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.endswith(".infill-tmp")]


def test_killed_writers_never_leave_a_partial_file(tmp_path, figures):
    path = tmp_path / "payload.py"
    path.write_bytes(render(0))
    path.chmod(MODE)
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=cli_env(None), cwd=ROOT)
    rng = random.Random(7)
    version, trials = 0, budget(40)
    counts = {"killed_mid_write": 0, "killed_elsewhere": 0}
    try:
        for trial in range(trials):
            before = set(temp_files(tmp_path))  # earlier kills' leftovers: this writer sweeps them
            server.stdin.write("go\n")
            server.stdin.flush()
            pid = int(server.stdout.readline())
            if trial % 2:  # the moment the temporary file appears: in the middle of a write
                deadline = time.monotonic() + 20
                while not set(temp_files(tmp_path)) - before:
                    assert time.monotonic() < deadline, "the writer never wrote"
                time.sleep(rng.uniform(0, 0.001))
            else:  # anywhere: reading, filling, writing, renaming (longer on a loaded machine, so some writes land)
                time.sleep(rng.uniform(0, 0.4 if version or trial < trials // 2 else 2.0))
            os.kill(pid, signal.SIGKILL)
            code = int(server.stdout.readline())
            assert os.WIFSIGNALED(code) and os.WTERMSIG(code) == signal.SIGKILL, f"the writer ended by itself: {code}"
            version = version_of(path.read_bytes(), version)
            assert stat.S_IMODE(path.stat().st_mode) == MODE
            left = set(temp_files(tmp_path)) - before  # a kill between creating and renaming the temporary file
            counts["killed_mid_write" if left else "killed_elsewhere"] += 1
    finally:
        server.kill()
        server.wait(10)
    assert version > 0 and counts["killed_mid_write"] >= trials // 8
    stale = len(temp_files(tmp_path))
    write_atomic(read_source(path), render(version + 1).decode())  # one writer that lives: it sweeps them all
    assert temp_files(tmp_path) == [] and version_of(path.read_bytes(), version + 1) == version + 1
    figures.count("files", "stale_temp_files_swept", stale)
    figures.count("files", "kills", trials)
    figures.count("files", "kills_mid_write", counts["killed_mid_write"])
    figures.count("files", "versions_written_by_killed_writers", version)
    figures.count("files", "partial_files", 0)


# -- random files, random ranges ----------------------------------------------------------------------------------
line_text = st.text(st.characters(codec="utf-8", exclude_characters="\r\n\x00", exclude_categories=["Cc"]),
                    max_size=12)


@st.composite
def source_files(draw) -> tuple[bytes, str]:
    """(bytes on disk, the line-ending scheme): LF, CRLF, CR, or mixed, maybe a BOM, maybe no final newline."""
    scheme = draw(st.sampled_from(["\n", "\r\n", "\r", "mixed"]))
    lines = draw(st.lists(line_text, min_size=1, max_size=8))
    ends = [draw(st.sampled_from(["\n", "\r\n", "\r"])) if scheme == "mixed" else scheme for _ in lines]
    if not draw(st.booleans()):
        ends[-1] = ""
    text = "".join(line + end for line, end in zip(lines, ends, strict=True))
    return (UTF8_BOM if draw(st.booleans()) else b"") + text.encode(), scheme


@st.composite
def middles(draw) -> str:
    """What a model writes: lines joined by \\n, maybe a \\r\\n, maybe a trailing newline."""
    lines = draw(st.lists(line_text, min_size=1, max_size=4))
    return draw(st.sampled_from(["\n", "\n", "\r\n"])).join(lines) + draw(st.sampled_from(["", "\n"]))


def spec(index: LineIndex, offset: int) -> str:
    line, col = index.position(offset)
    return f"{line + 1}:{col + 1}"


@pytest.fixture
def fake_cli(monkeypatch, capsys):
    """`infill ARGS` in-process with a fake model that writes `middle`: (status, stdout, stderr)."""

    def run(*args: str, middle: str = "X") -> tuple[int, str, str]:
        monkeypatch.setattr(cli_module, "load_engine", lambda model, options, verbose=False: FakeEngine(middle))
        status = cli_module.main(list(args))
        out, err = capsys.readouterr()
        return status, out, err

    return run


@examples(150)
@given(source=source_files(), middle=middles(), data=st.data(),
       mode=st.sampled_from([0o644, 0o600, 0o755, 0o664, 0o640, 0o700]))
def test_write_keeps_everything_outside_the_range(fake_cli, source, middle, data, mode, figures):
    raw, scheme = source
    bom = raw.startswith(UTF8_BOM)
    text = raw[len(UTF8_BOM) if bom else 0 :].decode()
    index = LineIndex.of(text)
    # a range from one position to another (never between the two characters of a CRLF)
    positions = sorted({index.starts[line] + col for line in range(index.line_count)
                        for col in range(index.line_end(line) - index.starts[line] + 1)})
    a, b = sorted(data.draw(st.lists(st.sampled_from(positions), min_size=2, max_size=2)))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.py"
        path.write_bytes(raw)
        path.chmod(mode)
        status, out, err = fake_cli("fill", str(path), "--range", f"{spec(index, a)}-{spec(index, b)}", "--write",
                                    middle=middle)
        assert (status, out, err) == (0, "", "")
        new = path.read_bytes()
        assert stat.S_IMODE(path.stat().st_mode) == mode
        assert os.listdir(tmp) == ["f.py"]
    head, tail = (UTF8_BOM if bom else b"") + text[:a].encode(), text[b:].encode()
    assert new.startswith(head) and new.endswith(tail) and len(new) >= len(head) + len(tail)
    inserted = new[len(head) : len(new) - len(tail)].decode()
    assert inserted.replace("\r\n", "\n").replace("\r", "\n") == middle.replace("\r\n", "\n")
    style = newline_style(text)
    if style in ("\n", "\r\n", "\r"):  # a file with one kind of line ending keeps one kind
        assert newline_style(new.decode()) in (style, None), (style, new)
    figures.count("files", "random_files_written_without_loss")


refused_bytes = st.one_of(
    st.binary(min_size=1, max_size=300).filter(lambda b: b"\0" in b or not _utf8(b)),
    st.builds(lambda head, tail: head + b"\0" + tail, st.binary(max_size=50), st.binary(max_size=50)),
    st.builds(lambda t, bad: t.encode() + bad, st.text(max_size=40), st.sampled_from(
        [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xe9 = 1\n", b"\xf8\x88\x80\x80\x80", b"\xc0\xaf"])),
)


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@examples(100)
@given(content=refused_bytes)
def test_binary_and_non_utf8_files_are_refused_untouched(fake_cli, content, figures):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "blob.py"
        path.write_bytes(content)
        before = path.read_bytes(), path.stat().st_mtime_ns
        status, out, err = fake_cli("fill", str(path), "--at", "1:1", "--write")
        assert status == 2 and out == "" and err.count("\n") == 1, err
        assert ("binary" in err) or ("UTF-8" in err), err
        assert (path.read_bytes(), path.stat().st_mtime_ns) == before and os.listdir(tmp) == ["blob.py"]
    figures.count("files", "binary_or_non_utf8_refused_untouched")


@examples(60)
@given(limit=st.integers(1, 5000), delta=st.integers(-40, 40))
def test_files_over_the_size_limit_are_refused_untouched(fake_cli, limit, delta, figures):
    size = max(1, limit + delta)  # around the limit, on both sides
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.py"
        path.write_bytes((b"x = 1\n" * (size // 6 + 1))[:size])
        before = path.read_bytes(), path.stat().st_mtime_ns
        status, _, err = fake_cli("fill", str(path), "--at", "1:1", "--write", "--max-bytes", str(limit))
        if size > limit:
            assert status == 2 and "--max-bytes" in err and err.count("\n") == 1, err
            assert (path.read_bytes(), path.stat().st_mtime_ns) == before
            figures.count("files", "oversized_refused_untouched")
        else:
            assert status == 0, err
        assert sorted(os.listdir(tmp)) == ["big.py"]
