"""Reading and writing users' source files without ever corrupting them.

    src = read_source("app.py")                    # refuses missing, binary, non-UTF-8 and oversized files
    new = apply_edits(src.text, [(10, 14, "x + 1")])
    write_atomic(src, new)                         # refuses if app.py changed since it was read

The text is kept exactly as it is on disk (CRLF stays CRLF); only a UTF-8 byte-order mark is taken off
the text and put back on write, so that columns count from the first real character. A write goes to
a temporary file in the same directory, is flushed to disk, takes the original's permission bits (and
owner when allowed), and replaces the original with one `os.replace`: a reader sees the old file or the
new one, never half of each. A writer killed between creating and renaming its temporary file leaves
it behind (`.NAME.PID.XXXX.infill-tmp`); the next write to the same file removes those whose writer is
no longer running.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import BadInputError, FileChangedError

DEFAULT_MAX_BYTES = 2 * 1024 * 1024  # larger files are refused (CLI: --max-bytes)
BINARY_SNIFF_BYTES = 8192  # bytes looked at to decide whether a file is text
TEMP_SUFFIX = ".infill-tmp"  # temporary files of atomic writes: .NAME.PID.XXXX.infill-tmp
BINARY_CONTROL_SHARE = 0.10  # a file whose sniffed bytes are more than this share of control bytes is binary
UTF8_BOM = b"\xef\xbb\xbf"
STDIN = "-"

# C0 control bytes that text files do not contain (tab, LF, VT, FF, CR and ESC are allowed).
_CONTROL = frozenset(range(32)) - {9, 10, 11, 12, 13, 27}
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class SourceText:
    """A source file as read, with what is needed to write it back safely."""

    path: str  # as the user gave it ("-" for stdin), for messages
    text: str  # the decoded text, line endings untouched, without a byte-order mark
    real_path: Path | None  # the file to replace on write (symlinks resolved); None for stdin
    sha256: str  # of the bytes read
    size: int  # bytes on disk
    mtime_ns: int
    mode: int  # st_mode of the file (permission bits are copied to the new file)
    uid: int
    gid: int
    newline: str | None  # "\n", "\r\n", "\r", "mixed", or None when the text has no line break
    bom: bool  # the file starts with a UTF-8 byte-order mark
    encoding: str = "utf-8"

    @property
    def writable(self) -> bool:
        return self.real_path is not None


def read_source(path: str | os.PathLike, max_bytes: int = DEFAULT_MAX_BYTES) -> SourceText:
    """Read a UTF-8 text file, or stdin for "-". Raises BadInputError with a one-line, actionable message."""
    name = os.fspath(path)
    if name == STDIN:
        return _read_stdin(max_bytes)
    try:
        real = Path(os.path.realpath(name))
        st = os.stat(real)
    except FileNotFoundError:
        raise BadInputError(f"{name}: no such file") from None
    except OSError as exc:
        raise BadInputError(f"{name}: cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise BadInputError(f"{name}: is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise BadInputError(f"{name}: is not a regular file")
    _check_size(name, st.st_size, max_bytes)
    try:
        with open(real, "rb") as f:
            data = f.read(max_bytes + 1)
            st = os.fstat(f.fileno())  # the metadata of the bytes we hold
    except OSError as exc:
        raise BadInputError(f"{name}: cannot read: {exc.strerror or exc}") from None
    _check_size(name, len(data), max_bytes)
    text, bom = decode_text(name, data)
    return SourceText(path=name, text=text, real_path=real, sha256=_digest(data), size=len(data),
                      mtime_ns=st.st_mtime_ns, mode=st.st_mode, uid=st.st_uid, gid=st.st_gid,
                      newline=newline_style(text), bom=bom)


def _read_stdin(max_bytes: int) -> SourceText:
    data = sys.stdin.buffer.read(max_bytes + 1)
    _check_size("<stdin>", len(data), max_bytes)
    text, bom = decode_text("<stdin>", data)
    return SourceText(path=STDIN, text=text, real_path=None, sha256=_digest(data), size=len(data), mtime_ns=0,
                      mode=0, uid=-1, gid=-1, newline=newline_style(text), bom=bom)


def _check_size(name: str, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise BadInputError(f"{name}: larger than the limit of {max_bytes} bytes; raise it with --max-bytes")


def decode_text(name: str, data: bytes) -> tuple[str, bool]:
    """Bytes -> (text, had a byte-order mark), refusing binary and non-UTF-8 data."""
    bom = data.startswith(UTF8_BOM)
    if bom:
        data = data[len(UTF8_BOM) :]
    if looks_binary(data):
        raise BadInputError(f"{name}: looks like a binary file, not source text")
    try:
        return data.decode("utf-8"), bom
    except UnicodeDecodeError as exc:
        raise BadInputError(
            f"{name}: is not valid UTF-8 (byte {exc.start}); convert it to UTF-8 first, e.g. with iconv"
        ) from None


def looks_binary(data: bytes) -> bool:
    """NUL bytes, or many control bytes, in the first few kilobytes."""
    head = data[:BINARY_SNIFF_BYTES]
    if b"\0" in head:
        return True
    if not head:
        return False
    controls = sum(1 for b in head if b in _CONTROL)
    return controls > BINARY_CONTROL_SHARE * len(head)


def newline_style(text: str) -> str | None:
    """The line ending a text uses: "\\n", "\\r\\n", "\\r", "mixed", or None when it has none."""
    crlf = text.count("\r\n")
    lf = text.count("\n") - crlf
    cr = text.count("\r") - crlf
    kinds = [nl for nl, n in (("\n", lf), ("\r\n", crlf), ("\r", cr)) if n]
    if not kinds:
        return None
    return kinds[0] if len(kinds) == 1 else "mixed"


def match_newlines(text: str, newline: str | None) -> str:
    """New text for a file: when the file uses one kind of line ending, every line break of the text becomes
    that kind (so an LF, CRLF or CR file keeps one kind); for a mixed file, or one without a line break, the text
    is unchanged."""
    if newline in ("\n", "\r\n", "\r"):
        return _LINE_BREAK.sub(newline, text)
    return text


def apply_edits(text: str, edits: Sequence[tuple[int, int, str]]) -> str:
    """Apply non-overlapping (start, end, new) edits, offsets into the original `text`, end exclusive.

    Edits may come in any order. Two edits overlap when their ranges share a character, or when both
    start at the same offset (two insertions at one point have no defined order): those are refused.
    """
    ordered = sorted(edits, key=lambda e: (e[0], e[1]))
    for start, end, _ in ordered:
        if not 0 <= start <= end <= len(text):
            raise BadInputError(f"edit {start}-{end} is outside the text ({len(text)} characters)")
    for (s1, e1, _), (s2, e2, _) in zip(ordered, ordered[1:], strict=False):
        if e1 > s2 or s1 == s2:
            raise BadInputError(f"edits overlap: characters {s1}-{e1} and {s2}-{e2}")
    for start, end, new in reversed(ordered):  # last to first, so earlier offsets stay valid
        text = text[:start] + new + text[end:]
    return text


def write_atomic(source: SourceText, new_text: str) -> None:
    """Replace the file `source` was read from with `new_text`, atomically.

    Refuses with FileChangedError if the file changed since it was read (size, mtime and content are
    compared just before the rename). No temporary file is left behind, whatever happens.
    """
    if source.real_path is None:
        raise BadInputError("cannot write to stdin; give a file path to use --write")
    target = source.real_path
    _check_unchanged(source)
    check_writable(source)
    text = match_newlines(new_text, source.newline)
    try:
        data = (UTF8_BOM if source.bom else b"") + text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadInputError(f"{source.path}: the new text cannot be encoded as UTF-8: {exc.reason}") from None
    sweep_stale_temps(target)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.{os.getpid()}.", suffix=TEMP_SUFFIX)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            _copy_owner(f.fileno(), source)  # before chmod: chown may clear set-id bits
            os.fchmod(f.fileno(), stat.S_IMODE(source.mode))
        _check_unchanged(source)  # as late as possible: the rename is next
        os.replace(tmp, target)
        tmp = None
        _fsync_dir(target.parent)
    except OSError as exc:
        raise BadInputError(f"{source.path}: could not write: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def check_writable(source: SourceText) -> None:
    """Refuse, before any work, a file that `write_atomic` could not replace: stdin, a read-only file (root too:
    no write bit means hands off), or a directory where the temporary file cannot be made."""
    if source.real_path is None:
        raise BadInputError("cannot write to stdin; give a file path to use --write")
    if not os.access(source.real_path, os.W_OK) or not source.mode & 0o222:
        raise BadInputError(f"{source.path}: is read-only; not writing (make it writable, or drop --write)")
    if not os.access(source.real_path.parent, os.W_OK | os.X_OK):
        raise BadInputError(f"{source.path}: its directory is read-only, so it cannot be replaced atomically")


def sweep_stale_temps(target: Path) -> list[Path]:
    """Remove the temporary files that killed writers left next to `target`; returns what was removed.

    Only files of our own naming scheme, owned by us, whose writer's pid is not running. A pid that is
    running again (reused) keeps its file: leaving one is harmless, removing a live writer's file is not.
    """
    pattern = re.compile(re.escape(f".{target.name}.") + r"(\d+)\.[^/]+" + re.escape(TEMP_SUFFIX))
    removed: list[Path] = []
    if not hasattr(os, "geteuid"):  # not POSIX: no pid test we trust
        return removed
    with contextlib.suppress(OSError):
        for entry in os.scandir(target.parent):
            match = pattern.fullmatch(entry.name)
            if not match or not entry.is_file(follow_symlinks=False) or pid_alive(int(match.group(1))):
                continue
            with contextlib.suppress(OSError):
                if entry.stat(follow_symlinks=False).st_uid == os.geteuid():
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def pid_alive(pid: object) -> bool:
    """Whether a process with this pid is running: it exists and is not a zombie (exited, not yet reaped by its
    parent). For the temporary files of killed writers here, and the daemon's state file (server.auth)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # OverflowError: larger than any pid
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc (macOS): it exists, as far as we can tell
        return True


def _check_unchanged(source: SourceText) -> None:
    assert source.real_path is not None
    changed = FileChangedError(f"{source.path}: changed on disk after it was read; not overwriting it, run again")
    try:
        st = os.stat(source.real_path)
        if st.st_size != source.size or st.st_mtime_ns != source.mtime_ns:
            raise changed
        with open(source.real_path, "rb") as f:
            if _digest(f.read()) != source.sha256:
                raise changed
    except OSError:
        raise changed from None


def _copy_owner(fd: int, source: SourceText) -> None:
    """Give the new file the original's owner and group, when allowed (root, or a group we belong to)."""
    st = os.fstat(fd)
    if (st.st_uid, st.st_gid) == (source.uid, source.gid) or not hasattr(os, "fchown"):
        return
    with contextlib.suppress(OSError):
        os.fchown(fd, source.uid, source.gid)
    with contextlib.suppress(OSError):
        os.fchown(fd, -1, source.gid)


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable (POSIX); harmless where directories cannot be opened."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
