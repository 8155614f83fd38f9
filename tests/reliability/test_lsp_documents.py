"""Documents the editor may send the language server: mixed line endings in one document, UTF-16 columns on
lines with BMP and astral characters, positions and ranges past the end, incremental edits that add and remove
CRLFs, empty documents and documents of newlines only.

In process, hypothesis checks the document store against a reference written differently (UTF-16 by encoding,
lines by a regex): every random sequence of incremental edits leaves the same text, and positions round-trip in
the three encodings. Over stdio, the real `infill lsp --embedded` (tiny model): completion, code actions and
infill.fillRange on such documents put their ranges where they belong, clamp what is past the end, and never
answer with an error. Code-action ranges run no model, so they pin the server's copy of the document exactly.

tests/test_lsp.py already has: an emoji before the cursor (inline completion and completion, UTF-16), UTF-32
positions against the daemon, and the store's incremental change over a form feed.
"""

from __future__ import annotations

import re

import pytest
import pytest_asyncio
from conftest import cli_env
from hypothesis import given
from hypothesis import strategies as st
from lsprotocol import types as T
from test_lsp import FAST, inline, open_doc, start_server, status, stop_server

from infill.spans import block_at
from server.documents import UTF8, UTF16, UTF32, DocumentStore, line_index, to_offset, to_position

from .conftest import examples

on_module_loop = pytest.mark.asyncio(loop_scope="module")
EOL = re.compile(r"\r\n|\r|\n")


# -- the reference --------------------------------------------------------------------------------------------------
def lines_of(text: str) -> list[tuple[int, int]]:
    """(start, end before the line break) of each LSP line."""
    starts = [0, *(m.end() for m in EOL.finditer(text))]
    ends = [m.start() for m in EOL.finditer(text)] + [len(text)]
    return list(zip(starts, ends, strict=True))


def ref_offset(text: str, line: int, character: int) -> int:
    """LSP UTF-16 position -> code-point offset: past the last line is the end of the text, past the end of a
    line is the end of that line, inside a surrogate pair is after the pair."""
    lines = lines_of(text)
    if line >= len(lines):
        return len(text)
    start, end = lines[line]
    units = text[start:end].encode("utf-16-le", "surrogatepass")[: 2 * character]
    return start + len(units.decode("utf-16-le", "surrogatepass"))


def ref_position(text: str, offset: int) -> T.Position:
    lines = lines_of(text)
    line = max(i for i, (start, _) in enumerate(lines) if start <= offset)
    start, _ = lines[line]
    return T.Position(line, len(text[start:offset].encode("utf-16-le", "surrogatepass")) // 2)


def ref_range(text: str, lo: int, hi: int) -> T.Range:
    return T.Range(ref_position(text, lo), ref_position(text, hi))


# -- in process ---------------------------------------------------------------------------------------------------
chars = st.sampled_from(list("ab_ (=)\t") + ["é", "中", "ÿ", "😀", "𝔘", "\u200b"])
pieces = st.lists(st.one_of(chars, st.sampled_from(["\n", "\r\n", "\r"])), max_size=30).map("".join)


@st.composite
def edits(draw, text: str) -> tuple[T.Range, str]:
    """A range given by lines and UTF-16 characters that may run past a line, past the document, or into a
    surrogate pair, and the text to put there."""
    n = len(lines_of(text))
    pos = st.builds(T.Position, st.integers(0, n + 1), st.integers(0, 12))
    a, b = draw(pos), draw(pos)
    if (b.line, b.character) < (a.line, a.character):
        a, b = b, a
    return T.Range(a, b), draw(pieces)


@examples(300)
@given(initial=pieces, data=st.data())
def test_incremental_edits_match_the_reference(initial, data, figures):
    store = DocumentStore()
    store.open(T.TextDocumentItem(uri="u", language_id="python", version=1, text=initial))
    text = initial
    for version in range(2, 2 + data.draw(st.integers(1, 6))):
        rng, new = data.draw(edits(text))
        lo = ref_offset(text, rng.start.line, rng.start.character)
        hi = ref_offset(text, rng.end.line, rng.end.character)
        text = text[:lo] + new + text[max(lo, hi):]
        doc = store.change(T.DidChangeTextDocumentParams(
            T.VersionedTextDocumentIdentifier(uri="u", version=version),
            [T.TextDocumentContentChangePartial(range=rng, text=new)]), UTF16)
        assert doc.text == text and doc.version == version
        figures.count("lsp_documents", "incremental_edits")


@examples(200)
@given(text=pieces)
def test_positions_round_trip_in_every_encoding(text, figures):
    index = line_index(text)
    inside_crlf = {m.start() + 1 for m in re.finditer("\r\n", text)}
    for offset in range(len(text) + 1):
        assert to_position(index, offset, UTF16) == ref_position(text, offset)
        if offset in inside_crlf:
            continue
        for encoding in (UTF16, UTF32, UTF8):
            assert to_offset(index, to_position(index, offset, encoding), encoding) == offset
    for line in range(len(lines_of(text)) + 2):
        for character in range(0, 14):
            assert to_offset(index, T.Position(line, character), UTF16) == ref_offset(text, line, character)
    figures.count("lsp_documents", "documents_position_checked")


# -- over stdio -----------------------------------------------------------------------------------------------------
@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lsp(tiny_model_dir):
    client = await start_server(["--embedded", "--device", "cpu", "--threads", "1"], cli_env(tiny_model_dir), FAST)
    yield client
    await stop_server(client)


async def actions(lsp, uri: str, rng: T.Range) -> dict[str, T.Range]:
    """Kind -> range of each code action offered for `rng` (the range travels in the action's data)."""
    found = await lsp.text_document_code_action_async(T.CodeActionParams(
        T.TextDocumentIdentifier(uri), rng, T.CodeActionContext(diagnostics=[])))
    out = {}
    for action in found:
        r = action.data["range"]
        out[action.kind] = T.Range(T.Position(**r["start"]), T.Position(**r["end"]))
    return out


def expected_actions(text: str, lo: int, hi: int) -> dict[str, T.Range]:
    out = {}
    b_lo, b_hi = block_at(text, "python", lo, hi if hi > lo else None) if text.strip() else (lo, lo)
    if b_hi > b_lo and text[b_lo:b_hi].strip():
        out[T.CodeActionKind.QuickFix] = ref_range(text, b_lo, b_hi)
    if hi > lo:
        out[T.CodeActionKind.RefactorRewrite] = ref_range(text, lo, hi)
    return out


async def fill_range(lsp, uri: str, rng: dict) -> dict:
    return await lsp.workspace_execute_command_async(T.ExecuteCommandParams(command="infill.fillRange",
                                                                            arguments=[uri, rng]))


def as_json(rng: T.Range) -> dict:
    return {"start": {"line": rng.start.line, "character": rng.start.character},
            "end": {"line": rng.end.line, "character": rng.end.character}}


def check_item(result: T.InlineCompletionList, text: str, pos: T.Position) -> int:
    """0 or 1 items; an item starts at the cursor and stays on its line, and its new lines end the way the
    document's lines do (its first line break). Returns the number of items."""
    assert len(result.items) <= 1
    first = EOL.search(text)
    for item in result.items:
        assert item.range.start == pos and item.range.end.line == pos.line
        assert set(EOL.findall(item.insert_text)) <= {first.group() if first else "\n"}, item.insert_text
    return len(result.items)


MIXED = 'a = 1\r\nb = "é中"\rdef f(x):\n    y = x\r\n    return \r\n\r\nz = "😀𝔘"; value = f(1)\n'


@on_module_loop
async def test_mixed_line_endings_and_wide_characters(lsp, figures):
    uri = open_doc(lsp, "mixed.py", MIXED)
    checks = 0
    # completion at the ends of lines of every kind and after astral characters
    for needle in ("a = ", "    return ", "value = ", 'b = "é中'):
        at = MIXED.index(needle) + len(needle)
        pos = ref_position(MIXED, at)
        checks += check_item(await inline(lsp, uri, pos), MIXED, pos)
        result = await lsp.text_document_completion_async(T.CompletionParams(
            T.TextDocumentIdentifier(uri), pos, T.CompletionContext(T.CompletionTriggerKind.Invoked)))
        for item in result.items:
            word = re.search(r"[\w]*$", MIXED[:at]).group()
            assert item.text_edit.new_text.startswith(word) and item.text_edit.range.end.line == pos.line
            assert item.text_edit.range.start == ref_position(MIXED, at - len(word))
    assert checks >= 1  # the tiny model suggests something for most of these
    # code actions over a word after astral characters, a block, and a selection across line-ending kinds
    for lo, hi in ((MIXED.index("value"), MIXED.index("value") + 5), (MIXED.index("y = x"),) * 2,
                   (MIXED.index('"é中'), MIXED.index("    y")), (MIXED.index("😀"), MIXED.index("𝔘") + 1)):
        assert await actions(lsp, uri, ref_range(MIXED, lo, hi)) == expected_actions(MIXED, lo, hi), (lo, hi)
    # infill.fillRange over the astral characters: the edit lands where it was asked
    rng = ref_range(MIXED, MIXED.index("😀"), MIXED.index("; value"))
    before = len(lsp.applied_edits)
    summary = await fill_range(lsp, uri, as_json(rng))
    if summary["applied"]:
        assert summary["range"] == as_json(rng)
        edit = lsp.applied_edits[before].edit.document_changes[0].edits[0]
        assert edit.range == rng
    else:  # nothing, or code that would break the syntax (refused)
        assert summary["error"] == "the model proposed no change" or summary.get("refused"), summary
    figures.count("lsp_documents", "requests", 4 * 2 + 4 + 1)


@on_module_loop
async def test_incremental_edits_with_crlf_over_stdio(lsp, figures):
    text = "def f(x):\r\n    return x\r\n\r\nvalue = 1\n"
    uri = open_doc(lsp, "edits.py", text)
    script = [  # (start line, start char, end line, end char, new text): LSP UTF-16 positions of the moment
        (1, 12, 1, 12, "\r\n    y = '😀'"),  # a new CRLF line with an astral character
        (2, 13, 2, 13, " + 'é'"),  # after the astral character: UTF-16 column 13
        (0, 9, 1, 0, "\n"),  # the first line's CRLF becomes LF
        (3, 0, 5, 0, "\r"),  # two lines become one CR
        (9, 0, 9, 0, "\r\nlast = 2"),  # past the end: appended
        (4, 99, 4, 99, "  # tail"),  # past the end of a line: at its end
    ]
    for version, (l1, c1, l2, c2, new) in enumerate(script, start=2):
        lo, hi = ref_offset(text, l1, c1), ref_offset(text, l2, c2)
        text = text[:lo] + new + text[hi:]
        lsp.text_document_did_change(T.DidChangeTextDocumentParams(
            T.VersionedTextDocumentIdentifier(uri=uri, version=version),
            [T.TextDocumentContentChangePartial(range=T.Range(T.Position(l1, c1), T.Position(l2, c2)), text=new)]))
    # the server's copy is exactly `text`: every line's block and a selection of it, as the server computes them
    for start, end in lines_of(text):
        if text[start:end].strip():
            assert await actions(lsp, uri, ref_range(text, start, end)) == expected_actions(text, start, end)
    whole = T.Range(T.Position(0, 0), T.Position(99, 0))
    assert (await actions(lsp, uri, whole))[T.CodeActionKind.RefactorRewrite] == ref_range(text, 0, len(text))
    figures.count("lsp_documents", "requests", len(script) + len(lines_of(text)) + 1)


@on_module_loop
async def test_positions_and_ranges_past_the_end_are_clamped(lsp, figures):
    text = "x = [1, 2]\nprint(x)"
    uri = open_doc(lsp, "clamp.py", text)
    end = ref_position(text, len(text))
    for pos, expected in ((T.Position(0, 99), T.Position(0, 10)), (T.Position(50, 3), end), (end, end)):
        result = await inline(lsp, uri, pos)
        assert all(item.range.start == expected for item in result.items)
    got = await actions(lsp, uri, T.Range(T.Position(1, 0), T.Position(40, 40)))
    assert got[T.CodeActionKind.RefactorRewrite] == T.Range(T.Position(1, 0), end)
    summary = await fill_range(lsp, uri, {"start": {"line": 1, "character": 0}, "end": {"line": 99, "character": 0}})
    assert summary.get("error") in (None, "the model proposed no change") or summary.get("refused"), summary
    if summary["applied"]:
        assert summary["range"] == as_json(T.Range(T.Position(1, 0), end))
    summary = await fill_range(lsp, uri, {"start": {"line": 70, "character": 0}, "end": {"line": 99, "character": 9}})
    assert summary["applied"] is False or summary["range"]["start"] == as_json(T.Range(end, end))["start"]
    figures.count("lsp_documents", "requests", 6)


@on_module_loop
@pytest.mark.parametrize("text", ["", "\n", "\n\n\n", "\r\n\r\n", "\r\r", "   ", "\t\n \r\n"])
async def test_empty_and_newline_only_documents(lsp, text, figures):
    uri = open_doc(lsp, f"blank-{len(text)}-{abs(hash(text))}.py", text)
    last = len(lines_of(text)) - 1
    for pos in (T.Position(0, 0), T.Position(last, 0), T.Position(last + 5, 7)):
        result = await inline(lsp, uri, pos)
        assert all(item.range.start == ref_position(text, ref_offset(text, pos.line, pos.character))
                   for item in result.items)
        completion = await lsp.text_document_completion_async(T.CompletionParams(
            T.TextDocumentIdentifier(uri), pos, T.CompletionContext(T.CompletionTriggerKind.Invoked)))
        assert len(completion.items) <= 1
    everything = T.Range(T.Position(0, 0), T.Position(last + 3, 0))
    assert await actions(lsp, uri, everything) == expected_actions(text, 0, len(text))
    summary = await fill_range(lsp, uri, as_json(everything))
    assert isinstance(summary, dict) and "applied" in summary
    assert (await status(lsp)).errors == 0
    figures.count("lsp_documents", "requests", 8)


@on_module_loop
async def test_an_unpaired_surrogate_is_no_obstacle(lsp, figures):
    """An unpaired surrogate (an editor's JS string can hold one; JSON carries it as \\ud800) cannot go to the
    model as UTF-8: the model sees U+FFFD in its place, the user still gets a suggestion, and no error."""
    text = 's = "\ud800"\nvalue = '
    uri = open_doc(lsp, "surrogate.py", text)
    assert check_item(await inline(lsp, uri, T.Position(1, 8)), text, T.Position(1, 8)) == 1
    good = open_doc(lsp, "after.py", "def f(x):\n    return \n")
    check_item(await inline(lsp, good, T.Position(1, 11)), "def f(x):\n    return \n", T.Position(1, 11))
    assert (await status(lsp)).errors == 0
    figures.count("lsp_documents", "requests", 2)
