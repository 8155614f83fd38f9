"""Read/write safety of infill.files: refuse what cannot be handled, never corrupt or half-write a file."""

from __future__ import annotations

import io
import os
import stat
import sys

import pytest

from infill import files
from infill.errors import BadInputError, FileChangedError
from infill.files import apply_edits, match_newlines, newline_style, read_source, write_atomic


def snapshot(path) -> tuple[bytes, int, int]:
    st = os.stat(path)
    return path.read_bytes(), st.st_mtime_ns, stat.S_IMODE(st.st_mode)


def leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".infill-tmp"))


# -- reading -----------------------------------------------------------------------------------------
def test_read_keeps_text_exactly(tmp_path):
    p = tmp_path / "a.py"
    p.write_bytes(b"def f():\r\n    return 'h\xc3\xa9'\r\n")
    src = read_source(p)
    assert src.text == "def f():\r\n    return 'hé'\r\n"
    assert src.newline == "\r\n" and not src.bom and src.size == p.stat().st_size
    assert src.real_path == p.resolve() and src.path == str(p)


def test_read_strips_and_remembers_bom(tmp_path):
    p = tmp_path / "b.py"
    p.write_bytes(files.UTF8_BOM + b"x = 1\n")
    src = read_source(p)
    assert src.text == "x = 1\n" and src.bom


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "binary"),
        (bytes(range(1, 9)) * 100, "binary"),
        (b"caf\xe9 = 1\n", "UTF-8"),
        (b"\xff\xfeh\0i\0", "binary"),  # UTF-16 has NUL bytes
    ],
)
def test_read_refuses_non_text(tmp_path, content, message):
    p = tmp_path / "x.py"
    p.write_bytes(content)
    with pytest.raises(BadInputError, match=message) as err:
        read_source(p)
    assert "\n" not in str(err.value) and str(p) in str(err.value)


def test_read_refuses_missing_directory_and_oversize(tmp_path):
    with pytest.raises(BadInputError, match="no such file"):
        read_source(tmp_path / "nope.py")
    with pytest.raises(BadInputError, match="directory"):
        read_source(tmp_path)
    big = tmp_path / "big.py"
    big.write_text("x = 1\n" * 100)
    with pytest.raises(BadInputError, match="--max-bytes"):
        read_source(big, max_bytes=599)
    assert read_source(big, max_bytes=600).size == 600


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs mkfifo")
def test_read_refuses_special_files(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(BadInputError, match="not a regular file"):
        read_source(fifo)


def test_read_stdin(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"a\r\nb\r\n")))
    src = read_source("-")
    assert src.text == "a\r\nb\r\n" and src.real_path is None and not src.writable
    with pytest.raises(BadInputError, match="stdin"):
        write_atomic(src, "x")


def test_newline_style():
    assert newline_style("a\nb\n") == "\n"
    assert newline_style("a\r\nb") == "\r\n"
    assert newline_style("a\rb\r") == "\r"
    assert newline_style("a\r\nb\n") == "mixed"
    assert newline_style("abc") is None


def test_match_newlines_only_for_crlf_files():
    assert match_newlines("x\ny\r\nz\n", "\r\n") == "x\r\ny\r\nz\r\n"
    assert match_newlines("x\ny\n", "\n") == "x\ny\n"
    assert match_newlines("x\ny\n", "mixed") == "x\ny\n"


# -- editing -----------------------------------------------------------------------------------------
def test_apply_edits_last_to_first_any_order():
    text = "0123456789"
    assert apply_edits(text, [(0, 1, "A"), (5, 7, ""), (9, 9, "!")]) == "A123478!9"
    assert apply_edits(text, [(9, 9, "!"), (0, 1, "A"), (5, 7, "")]) == "A123478!9"
    assert apply_edits(text, [(3, 5, "x"), (5, 5, "y")]) == "012xy56789"  # touching is fine
    assert apply_edits(text, []) == text


@pytest.mark.parametrize("edits", [[(0, 5, "a"), (4, 6, "b")], [(3, 3, "a"), (3, 3, "b")], [(2, 2, "a"), (2, 4, "b")],
                                   [(0, 11, "x")], [(5, 4, "x")]])
def test_apply_edits_refuses_overlap_and_out_of_range(edits):
    with pytest.raises(BadInputError):
        apply_edits("0123456789", edits)


# -- writing -----------------------------------------------------------------------------------------
def test_write_replaces_and_keeps_permissions(tmp_path):
    p = tmp_path / "m.sh"
    p.write_text("echo hi\n")
    p.chmod(0o751)
    src = read_source(p)
    write_atomic(src, "echo bye\n")
    assert p.read_text() == "echo bye\n"
    assert stat.S_IMODE(p.stat().st_mode) == 0o751
    assert leftovers(tmp_path) == []


def test_write_crlf_file_gets_crlf_middle_and_keeps_bom(tmp_path):
    p = tmp_path / "w.py"
    p.write_bytes(files.UTF8_BOM + b"a = 1\r\n\r\nb = 2\r\n")
    src = read_source(p)
    middle = "def f():\n    pass\n"
    start = src.text.index("\r\n\r\n") + 2
    write_atomic(src, apply_edits(src.text, [(start, start, middle)]))
    assert p.read_bytes() == files.UTF8_BOM + b"a = 1\r\ndef f():\r\n    pass\r\n\r\nb = 2\r\n"


def test_write_lf_and_mixed_files_untouched_elsewhere(tmp_path):
    p = tmp_path / "mixed.txt"
    p.write_bytes(b"a\r\nb\nc")
    src = read_source(p)
    write_atomic(src, src.text + "\nd\n")
    assert p.read_bytes() == b"a\r\nb\nc\nd\n"


def test_write_follows_symlinks(tmp_path):
    real = tmp_path / "real.py"
    real.write_text("x = 1\n")
    link = tmp_path / "link.py"
    link.symlink_to(real)
    write_atomic(read_source(link), "x = 2\n")
    assert link.is_symlink() and real.read_text() == "x = 2\n"


@pytest.mark.parametrize("change", ["content_same_size", "append", "delete", "touch"])
def test_write_refuses_changed_file(tmp_path, change):
    p = tmp_path / "c.py"
    p.write_text("x = 1\n")
    src = read_source(p)
    if change == "content_same_size":
        p.write_text("x = 9\n")
        os.utime(p, ns=(src.mtime_ns, src.mtime_ns))  # same size and mtime: only the hash tells
    elif change == "append":
        p.write_text("x = 1\ny = 2\n")
    elif change == "delete":
        p.unlink()
    else:
        os.utime(p, ns=(src.mtime_ns + 10**9, src.mtime_ns + 10**9))
    before = p.read_bytes() if p.exists() else None
    with pytest.raises(FileChangedError, match="changed on disk"):
        write_atomic(src, "x = 3\n")
    assert (p.read_bytes() if p.exists() else None) == before
    assert leftovers(tmp_path) == []


def test_write_refuses_change_during_write(tmp_path, monkeypatch):
    """The check right before the rename catches an edit made while the temporary file was written."""
    p = tmp_path / "race.py"
    p.write_text("x = 1\n")
    src = read_source(p)
    real_fsync = os.fsync

    def fsync_then_edit(fd):
        real_fsync(fd)
        if p.read_text() == "x = 1\n":
            p.write_text("x = 1  # the user typed\n")

    monkeypatch.setattr(files.os, "fsync", fsync_then_edit)
    with pytest.raises(FileChangedError):
        write_atomic(src, "x = 2\n")
    assert p.read_text() == "x = 1  # the user typed\n"
    assert leftovers(tmp_path) == []


def test_write_error_leaves_no_temp_file(tmp_path, monkeypatch):
    p = tmp_path / "e.py"
    p.write_text("x = 1\n")
    src = read_source(p)

    def broken_replace(a, b):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", broken_replace)
    with pytest.raises(BadInputError, match="No space left"):
        write_atomic(src, "x = 2\n")
    assert p.read_text() == "x = 1\n" and leftovers(tmp_path) == []


def dead_pid() -> int:
    import subprocess

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX pids")
def test_write_sweeps_temp_files_of_killed_writers_only(tmp_path):
    p = tmp_path / "f.py"
    p.write_text("x = 1\n")
    stale = tmp_path / f".f.py.{dead_pid()}.ab12cd.infill-tmp"  # a writer SIGKILLed mid-write left it
    live = tmp_path / f".f.py.{os.getpid()}.zz99.infill-tmp"  # a writer still running: ours
    other = tmp_path / f".g.py.{dead_pid()}.ab12cd.infill-tmp"  # another file's
    unknown = tmp_path / ".f.py.notapid.infill-tmp"  # not our naming scheme
    for q in (stale, live, other, unknown):
        q.write_text("half a file")
    write_atomic(read_source(p), "x = 2\n")
    assert p.read_text() == "x = 2\n"
    assert leftovers(tmp_path) == sorted(q.name for q in (live, other, unknown))


def test_write_refuses_unencodable_text(tmp_path):
    p = tmp_path / "s.py"
    p.write_text("x = 1\n")
    before = snapshot(p)
    with pytest.raises(BadInputError, match="UTF-8"):
        write_atomic(read_source(p), "x = '\ud800'\n")
    assert snapshot(p) == before and leftovers(tmp_path) == []


def test_write_refuses_read_only_file(tmp_path):
    p = tmp_path / "ro.py"
    p.write_text("x = 1\n")
    p.chmod(0o444)
    before = snapshot(p)
    with pytest.raises(BadInputError, match="read-only"):
        write_atomic(read_source(p), "x = 2\n")
    assert snapshot(p) == before


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="zombies are told apart through /proc")
def test_a_zombie_is_not_alive_and_its_temp_file_is_swept(tmp_path):
    import subprocess
    import time
    from pathlib import Path

    proc = subprocess.Popen([sys.executable, "-c", "pass"])  # exits at once; a zombie until we wait for it
    try:
        deadline = time.monotonic() + 30
        while Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline, "the child did not exit"
            time.sleep(0.01)
        assert files.pid_alive(os.getpid()) and not files.pid_alive(proc.pid)
        p = tmp_path / "f.py"
        p.write_text("x = 1\n")
        (tmp_path / f".f.py.{proc.pid}.ab12cd.infill-tmp").write_text("half a file")
        write_atomic(read_source(p), "x = 2\n")
        assert leftovers(tmp_path) == []
    finally:
        proc.wait()
    assert not any(files.pid_alive(v) for v in (0, -1, True, "1", None, 2**80))
