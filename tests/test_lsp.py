"""The language server: its pieces in process (documents, settings, scheduling, type-through, the request pipeline
over a scripted model service), then the real `infill lsp` over stdio with pytest-lsp, in `--embedded` mode and against
a real model daemon on loopback, with the tiny random checkpoint (structure is asserted, never content).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import pytest
import pytest_asyncio
from conftest import ROOT, cli_env
from lsprotocol import types as T
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from infill.document import LineIndex
from server.completions import Completer, CompletionEntry, as_completion
from server.documents import UTF8, UTF16, UTF32, Document, DocumentStore, line_index, to_offset, to_position
from server.notices import StateBoard
from server.postprocess import Edit
from server.protocol import ErrorCode, FillError, InfillMessage, ResultMessage, Unavailable
from server.scheduling import Scheduler
from server.settings import Settings
from server.typethrough import TypeThrough

on_module_loop = pytest.mark.asyncio(loop_scope="module")  # the tests that share one server per module

# Small, deterministic model settings: each request is a few denoising steps of the tiny model.
FAST = {"maxSteps": 2, "lengths": [8], "seed": 0, "debounce": 0, "quality": "fast", "deadline": 60000,
        "hideBroken": False}  # random weights write broken code: these tests check the plumbing, not the model
SLOW = {"maxSteps": 1024, "lengths": [64], "deadline": 60000}  # runs for many seconds unless cancelled
PY = "def add(a, b):\n    total = a + b\n    return total\n\n\ndef main():\n    print(add(1, 2))\n"
PYC = "def add(a, b):\n    total = a + b  # the sum\n    return total\n"


# == in process ==================================================================================================
def test_positions_in_every_encoding_and_clamped():
    text = 'a = "😀é"; b\r\nz'
    index = line_index(text)
    assert index == LineIndex.of(text)
    b = text.index("b")
    assert to_position(index, b, UTF16) == T.Position(0, 11)  # the emoji is two UTF-16 units
    assert to_position(index, b, UTF32) == T.Position(0, 10)
    assert to_position(index, b, UTF8) == T.Position(0, 14)  # 4 bytes + 2 bytes
    for enc in (UTF16, UTF32, UTF8):
        assert to_offset(index, to_position(index, b, enc), enc) == b
    assert to_offset(index, T.Position(0, 99)) == text.index("\r")  # past the end of the line
    assert to_offset(index, T.Position(7, 0)) == len(text)  # past the end of the document


def test_incremental_changes_with_mixed_line_endings_and_form_feeds():
    store = DocumentStore()
    store.open(T.TextDocumentItem(uri="u", language_id="python", version=1, text="a\r\nb\x0c\rc\nd"))
    change = T.TextDocumentContentChangePartial(range=T.Range(T.Position(2, 0), T.Position(3, 1)), text="X")
    doc = store.change(T.DidChangeTextDocumentParams(T.VersionedTextDocumentIdentifier(uri="u", version=2), [change]))
    assert doc is not None and doc.text == "a\r\nb\x0c\rX" and doc.version == 2  # \x0c is not a line break in LSP


def test_settings_merge_reports_bad_values_and_keeps_the_rest():
    s, problems = Settings().merged({"infill": {"debounce": 80, "quality": "best", "enable": {"markdown": False},
                                                "maxSteps": 4, "formattingOptions": {"tabSize": 2, "insertSpaces": True},
                                                "actionQuality": "thinking", "colour": 1}})
    assert s.debounce_ms == 80 and s.max_steps == 4
    assert s.quality == "fast" and s.action_quality == "thinking"  # typing: latency first; actions: as asked
    assert not s.enabled("markdown") and s.enabled("python")
    assert s.formatting is not None and s.formatting.tab_size == 2
    assert len(problems) == 2 and any("quality" in p for p in problems) and any("colour" in p for p in problems)


def test_typethrough_serves_the_rest_while_the_user_types_the_suggestion():
    tt = TypeThrough()
    text = "x = f(\n"
    tt.remember("u", text, 6, Edit("abc)", 6, 6))
    assert tt.lookup("u", "x = f(a\n", 7) == Edit("bc)", 7, 7)
    assert tt.lookup("u", "x = f(ab\n", 8) == Edit("c)", 8, 8)
    assert tt.lookup("u", text, 6) == Edit("abc)", 6, 6)  # asked again, nothing typed
    assert tt.lookup("u", "x = f(q\n", 7) is None  # typed something else
    assert tt.lookup("u", "y = f(a\n", 7) is None  # the prefix changed
    assert tt.lookup("u", "x = f(a\n\n", 7) is None  # the suffix changed
    assert (tt.hits, tt.misses) == (3, 3)


def test_typethrough_keeps_the_swallowed_closer():
    tt = TypeThrough()
    tt.remember("u", "f()", 2, Edit("ab)", 2, 3))
    assert tt.lookup("u", "f(a)", 3) == Edit("b)", 3, 4)
    assert tt.lookup("u", "f(ab)", 4) is None  # only the closer is left


async def test_scheduler_supersedes_and_cancels():
    cancelled: list[str] = []

    async def cancel(rid: str) -> None:
        cancelled.append(rid)

    s = Scheduler(cancel)
    first = s.ticket("u")
    second = s.ticket("u")
    assert not await s.debounce(first, 0) and await s.debounce(second, 0)
    s.start("u", "a", supersedable=False)
    s.start("u", "b", supersedable=True)
    s.start("u", "c", supersedable=True)  # a newer completion cancels the older completion only
    await asyncio.sleep(0)
    assert cancelled == ["b"] and s.running("u") == ["a", "c"]
    s.document_changed("u")  # an edit cancels everything
    await asyncio.sleep(0)
    assert sorted(cancelled) == ["a", "b", "c"] and s.running("u") == []


class ScriptedService:
    """Answers every request with `middle` after `delay` seconds, unless cancelled first."""

    description = "scripted"

    def __init__(self, middle: str = "b)", delay: float = 0.0, down: bool = False) -> None:
        self.middle, self.delay, self.down = middle, delay, down
        self.calls: list[InfillMessage] = []
        self.cancelled: list[str] = []
        self._events: dict[str, asyncio.Event] = {}
        self.board = StateBoard()

    async def fill(self, msg: InfillMessage) -> ResultMessage:
        self.calls.append(msg)
        if self.down:
            raise Unavailable("no daemon")
        ev = self._events[msg.id] = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ev.wait(), self.delay)
        if ev.is_set():
            raise FillError(ErrorCode.CANCELLED, "cancelled")
        at = msg.cursor if msg.cursor is not None else msg.range[0]
        end = msg.cursor if msg.cursor is not None else msg.range[1]
        return ResultMessage(id=msg.id, text=self.middle, start=at, end=end, syntax_ok=True)

    async def cancel(self, request_id: str) -> None:
        self.cancelled.append(request_id)
        if request_id in self._events:
            self._events[request_id].set()

    async def status(self) -> dict[str, Any]:
        return {}


def scripted(service: ScriptedService, text: str = "x = f(a)\n", **settings: Any) -> tuple[Completer, Document]:
    s, problems = Settings().merged(settings)
    assert not problems
    return Completer(service, lambda: s), Document("file:///t.py", "python", 1, text)


async def test_completer_debounce_makes_one_model_call_per_burst():
    service = ScriptedService()
    completer, doc = scripted(service, debounce=50)
    first = asyncio.ensure_future(completer.at_cursor(doc, 7))
    await asyncio.sleep(0.01)
    second = await completer.at_cursor(doc, 7)
    assert await first is None
    assert second == Edit("b)", 7, 8)  # swallows the auto-closed `)`
    assert len(service.calls) == 1 and completer.stats()["superseded"] == 1


async def test_completer_edit_cancels_the_running_request():
    service = ScriptedService(delay=5)
    completer, doc = scripted(service, debounce=0)
    task = asyncio.ensure_future(completer.at_cursor(doc, 7))
    await asyncio.sleep(0.05)
    doc.text, doc.version = "x = f(ab)\n", 2
    completer.changed(doc.uri)
    assert await asyncio.wait_for(task, 1) is None
    assert service.cancelled == [service.calls[0].id] and completer.stats()["cancelled"] == 1


async def test_a_suggestion_beside_the_editors_selected_completion_extends_it():
    """VS Code shows ghost text while its word suggestions are open only when the suggestion extends the selected
    one (LSP selectedCompletionInfo): the model is asked as if that word were inserted."""
    service = ScriptedService(middle=" + 1)")
    completer, doc = scripted(service, text="x = f(tot)\n", debounce=0)
    edit = await completer.at_cursor(doc, 9, selected=Edit("total", 6, 9))
    assert edit == Edit("total + 1)", 6, 10)  # swallows the auto-closed `)` as well
    assert (service.calls[0].text, service.calls[0].cursor) == ("x = f(total)\n", 11)


async def test_completer_type_through_makes_no_model_call():
    service = ScriptedService(middle="bcd)")
    completer, doc = scripted(service, debounce=0)
    assert await completer.at_cursor(doc, 7) == Edit("bcd)", 7, 8)
    doc.text, doc.version = "x = f(ab)\n", 2
    completer.changed(doc.uri)
    assert await completer.at_cursor(doc, 8) == Edit("cd)", 8, 9)
    assert len(service.calls) == 1 and completer.stats()["typethrough_hits"] == 1


async def test_completer_is_empty_when_the_model_is_away_or_the_language_is_off():
    completer, doc = scripted(ScriptedService(down=True), debounce=0)
    assert await completer.at_cursor(doc, 7) is None and completer.stats()["unavailable"] == 1
    service = ScriptedService()
    completer, doc = scripted(service, debounce=0, enable={"python": False})
    assert await completer.at_cursor(doc, 7) is None and not service.calls


def engine_completer(engine, **settings: Any) -> Completer:
    """A Completer over the real embedded service and `engine`, with the default settings unless given."""
    from server.services import EmbeddedService

    s, problems = Settings().merged({"debounce": 0, **settings})
    assert not problems
    return Completer(EmbeddedService(None, None, lambda level, message: None, loader=lambda m, o: engine), lambda: s)


async def test_a_middle_without_code_gives_no_item():
    """The engine over a scripted model that writes only a comment: no suggestion, so no item (a suggestion is
    never a deletion, nor a comment where code goes)."""
    import torch

    from infill.engine import Engine
    from tests.fakes import CharTokenizer, ScriptedBackend

    def model_writing(middle: str) -> Engine:
        ids = CharTokenizer().encode(middle) + [1]
        return Engine(ScriptedBackend(torch.tensor([ids + [0] * (1024 - len(ids))])))

    doc = Document("file:///t.py", "python", 1, "def f(x):\n    \n")
    completer = engine_completer(model_writing("# TODO"))
    assert await completer.at_cursor(doc, len("def f(x):\n    "), invoked=True) is None
    await completer.service.close()
    completer = engine_completer(model_writing("return x"))
    edit = await completer.at_cursor(doc, len("def f(x):\n    "), invoked=True)
    assert edit is not None and edit.text == "return x"
    await completer.service.close()
    completer = engine_completer(model_writing("return x +"))  # does not compile: no ghost text by default
    assert await completer.at_cursor(doc, len("def f(x):\n    "), invoked=True) is None
    assert completer.stats()["broken"] == 1
    await completer.service.close()
    completer = engine_completer(model_writing("return x +"), hideBroken=False)  # the user asked to see all
    edit = await completer.at_cursor(doc, len("def f(x):\n    "), invoked=True)
    assert edit is not None and edit.text == "return x +"
    await completer.service.close()


async def test_the_same_document_state_gives_the_same_suggestion(tiny_engine):
    """Default settings (no seed given): two documents with the same text, and the first one again after an edit
    and its undo, get the same suggestion from the real tiny model."""
    completer = engine_completer(tiny_engine, maxSteps=2, lengths=[8], quality="fast", hideBroken=False)
    text = "def f(a, b):\n    return \n"
    at = text.index("return ") + len("return ")
    first = await completer.at_cursor(Document("file:///a.py", "python", 1, text), at, invoked=True)
    second = await completer.at_cursor(Document("file:///b.py", "python", 1, text), at, invoked=True)
    await completer.at_cursor(Document("file:///a.py", "python", 2, text.replace("a, b", "a, c")), at, invoked=True)
    third = await completer.at_cursor(Document("file:///a.py", "python", 3, text), at, invoked=True)
    assert completer.stats()["model_calls"] == 4
    assert first is not None and first == second == third
    await completer.service.close()


async def test_completer_typing_uses_quality_and_actions_use_action_quality():
    service = ScriptedService(middle="x")
    completer, doc = scripted(service, debounce=0)
    await completer.at_cursor(doc, 7)
    await completer.over_range(doc, 4, 7)
    assert [m.quality for m in service.calls] == ["fast", "balanced"]  # the defaults


async def test_completer_sends_u_fffd_for_an_unpaired_surrogate_and_keeps_offsets():
    service = ScriptedService(middle="1")
    completer, doc = scripted(service, text='s = "\ud800"\nv = ', debounce=0)
    assert await completer.at_cursor(doc, 13) == Edit("1", 13, 13)
    assert service.calls[0].text == 's = "\ufffd"\nv = '  # same length: the cursor offset still holds


def test_range_edit_is_safe_compiles_python_and_parses_the_other_grammars():
    from server.completions import range_edit_is_safe

    py = "def f(a):\n    x = a + 1\n    return x\n"
    x = py.index("x = a")
    assert range_edit_is_safe(py, Edit("x = a * 2", x, x + 9), "python") is None
    assert "would not compile (line 2: " in range_edit_is_safe(py, Edit("x = (a", x, x + 9), "python")
    # compile() checks more than a parse does: tree-sitter takes a `return` at module level, Python does not
    assert "'return' outside function" in range_edit_is_safe("y = 1\n", Edit("return 1", 0, 5), "python")
    broken = "def f(a):\n    x = a +\n\n\ndef g():\n    return 1\n"  # does not compile: no new tree-sitter error
    x = broken.index("x = a")
    assert range_edit_is_safe(broken, Edit("x = a -", x, x + 7), "python") is None  # may stay broken
    r = broken.index("return 1")
    assert range_edit_is_safe(broken, Edit("return (1", r, r + 8), "python") == "would add 1 syntax error (line 6)"
    js = "function f(a) {\n  return a + 1;\n}\n"
    r = js.index("return")
    assert range_edit_is_safe(js, Edit("return a * 2;", r, r + 13), "javascript") is None
    assert range_edit_is_safe(js, Edit("return (a * 2;", r, r + 13), "javascript") == "would add 1 syntax error (line 2)"
    assert range_edit_is_safe("anything", Edit("((", 0, 3), None) is None  # no grammar: nothing to check


async def test_a_range_edit_that_breaks_the_syntax_is_refused_with_a_message():
    text = "def f():\n    x = 1\n"
    x = text.index("x = 1")
    completer, doc = scripted(ScriptedService(middle="x = (1"), text=text, debounce=0)
    fill = await completer.over_range(doc, x, x + 5)
    assert fill.edit is None and fill.refused and completer.stats()["refused"] == 1
    assert fill.error == "not applied: the model's code would not compile (line 2: '(' was never closed)"
    assert fill.summary()["refused"] is True and fill.summary()["applied"] is False
    completer, doc = scripted(ScriptedService(middle="x = 2\ny = 3"), text=text, debounce=0)
    fill = await completer.over_range(doc, x, x + 5)  # one line selected: one line back
    assert fill.edit == Edit("x = 2", x, x + 5) and not fill.refused


def test_a_suggestion_as_a_completion_item_replaces_the_word_before_the_cursor():
    entry = as_completion("x = abc\n", 7, Edit("def(1)", 7, 8))
    assert entry == CompletionEntry(Edit("abcdef(1)", 4, 8), "abcdef(1)", "abcdef(1)")
    assert as_completion("", 0, Edit("y" * 70, 0, 0)).label == "y" * 60 + "…"
    assert as_completion("", 0, Edit("if x:\n    y", 0, 0)).label == "if x:…"


async def test_code_action_targets_and_the_fill_range_summary():
    service = ScriptedService(middle="y = 2")
    completer, doc = scripted(service, text="def f():\n    x = 1\n", debounce=0)
    x = doc.text.index("x")
    assert completer.targets(doc, x, x) == {"fixBlock": (x, x + 5)}
    assert completer.targets(doc, x, x + 1) == {"fixBlock": (x, x + 5), "fillSelection": (x, x + 1)}
    fill = await completer.over_range(doc, x, x + 5)
    assert fill.summary() == {"applied": False, "model": "", "seconds": 0.0, "syntax_ok": True, "steps": 0,
                              "text": "y = 2"}
    completer, doc = scripted(service, text=doc.text, enable={"python": False})
    assert completer.targets(doc, x, x + 1) == {}


# == over stdio ==================================================================================================
async def start_server(args: list[str], env: dict[str, str], options: dict[str, Any],
                       caps: str = "visual-studio-code") -> LanguageClient:
    config = ClientServerConfig(server_command=[sys.executable, "-m", "infill", "lsp", *args], server_env=env)
    client = await config.start()
    client.applied_edits = []  # type: ignore[attr-defined]
    client.states = []  # type: ignore[attr-defined]  # the infill/state notifications, as dicts

    @client.feature("infill/state")
    def on_state(params: Any) -> None:
        client.states.append(params if isinstance(params, dict) else dict(params._asdict()))  # type: ignore[attr-defined]

    @client.feature(T.WORKSPACE_APPLY_EDIT)
    def apply_edit(params: T.ApplyWorkspaceEditParams) -> T.ApplyWorkspaceEditResult:
        client.applied_edits.append(params)  # type: ignore[attr-defined]
        return T.ApplyWorkspaceEditResult(applied=True)

    client.init_result = await client.initialize_session(  # type: ignore[attr-defined]
        T.InitializeParams(capabilities=client_capabilities(caps), initialization_options=options))
    return client


async def stop_server(client: LanguageClient) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.shutdown_session(), 15)
    await client.stop()


def open_doc(client: LanguageClient, name: str, text: str, language: str = "python") -> str:
    uri = f"file:///tmp/infill-lsp-test/{name}"
    client.text_document_did_open(T.DidOpenTextDocumentParams(T.TextDocumentItem(uri, language, 1, text)))
    return uri


async def inline(client: LanguageClient, uri: str, pos: T.Position, invoked: bool = True) -> T.InlineCompletionList:
    kind = T.InlineCompletionTriggerKind.Invoked if invoked else T.InlineCompletionTriggerKind.Automatic
    return await client.text_document_inline_completion_async(T.InlineCompletionParams(
        context=T.InlineCompletionContext(trigger_kind=kind), text_document=T.TextDocumentIdentifier(uri),
        position=pos))


async def status(client: LanguageClient) -> Any:
    return await client.protocol.send_request_async("infill/status", {})


async def untyped_request(client: LanguageClient, method: str, params: Any) -> Any:
    """A request whose answer is not run through lsprotocol's converter, which reads any code action that carries
    a `command` as a bare Command (mangling it) instead of looking at the type of that field."""
    future = client.protocol.send_request(method, params)
    msg_id = next(k for k, f in client.protocol._request_futures.items() if f is future)
    client.protocol._result_types.pop(msg_id, None)
    return await asyncio.wrap_future(future)


def configure(client: LanguageClient, settings: dict[str, Any]) -> None:
    client.workspace_did_change_configuration(T.DidChangeConfigurationParams(settings={"infill": settings}))


def end_of(text: str, needle: str) -> T.Position:
    """The LSP (UTF-16) position right after the first `needle` in `text`."""
    line, char = LineIndex.of(text).position_utf16(text.index(needle) + len(needle))
    return T.Position(line, char)


def assert_item_at(result: T.InlineCompletionList, pos: T.Position) -> T.InlineCompletionItem:
    assert len(result.items) == 1
    item = result.items[0]
    assert isinstance(item.insert_text, str) and item.insert_text.strip()
    assert item.range is not None and item.range.start == pos and item.range.end.line == pos.line
    return item


async def wait_running(client: LanguageClient, calls_before: int, timeout: float = 20) -> None:
    """Until the server has sent one more request to the model."""
    deadline = time.monotonic() + timeout
    while (await status(client)).model_calls <= calls_before:
        assert time.monotonic() < deadline, "the request never reached the model"
        await asyncio.sleep(0.05)


# -- embedded ------------------------------------------------------------------------------------------------
@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def embedded(tiny_model_dir):
    client = await start_server(["--embedded", "--device", "cpu", "--threads", "1"], cli_env(tiny_model_dir), FAST)
    yield client
    await stop_server(client)


@on_module_loop
async def test_capabilities_are_advertised(embedded):
    caps = embedded.init_result.capabilities
    assert caps.inline_completion_provider is not None
    assert caps.completion_provider is not None
    assert caps.code_action_provider.resolve_provider
    assert "infill.fillRange" in caps.execute_command_provider.commands
    assert caps.position_encoding == UTF16


@on_module_loop
async def test_inline_completion_fits_the_document(embedded):
    uri = open_doc(embedded, "inline.py", PY)
    pos = end_of(PY, "total = ")
    item = assert_item_at(await inline(embedded, uri, pos), pos)
    assert item.range.end.character - pos.character <= len(" a + b")  # swallows at most the rest of the line


@on_module_loop
async def test_utf16_positions_after_an_emoji_and_the_completion_item(embedded):
    text = 's = "😀😀"; abcdef = 1\n'
    uri = open_doc(embedded, "emoji.py", text)
    pos = end_of(text, "abc")
    assert pos.character == text.index("abc") + 2 + 3  # two emoji, two UTF-16 units each
    assert_item_at(await inline(embedded, uri, pos), pos)
    result = await embedded.text_document_completion_async(T.CompletionParams(
        T.TextDocumentIdentifier(uri), pos, T.CompletionContext(T.CompletionTriggerKind.Invoked)))
    assert result.is_incomplete and len(result.items) == 1
    edit = result.items[0].text_edit
    # the word before the cursor is exactly "abc": the UTF-16 column mapped to the right code point
    assert edit.new_text.startswith("abc") and not edit.new_text.startswith("abcd")
    assert edit.range.start == T.Position(0, pos.character - 3) and edit.range.start.line == edit.range.end.line
    assert result.items[0].filter_text.startswith("abc")


def apply_edit(text: str, edit: T.TextEdit) -> str:
    index = LineIndex.of(text)
    lo = index.offset_utf16(edit.range.start.line, edit.range.start.character)
    hi = index.offset_utf16(edit.range.end.line, edit.range.end.character)
    return text[:lo] + edit.new_text + text[hi:]


def compiles(source: str) -> bool:
    try:
        compile(source, "<test>", "exec")
    except SyntaxError:
        return False
    return True


@on_module_loop
async def test_code_actions_resolve_to_an_edit_that_compiles_or_say_why_not(embedded):
    """Fix this block: an edit over the block whose result compiles, or no edit and data.error (the random model
    rarely writes code that compiles). Fill selection inside a comment: any one line parses there, so the edit is
    applied, exactly over the selection, and data.newRange covers the new text."""
    from infill.spans import block_at

    uri = open_doc(embedded, "actions.py", PYC)
    index = LineIndex.of(PYC)
    word = T.Range(end_of(PYC, "    "), end_of(PYC, "    total"))  # the word `total` on line 2
    actions = await embedded.text_document_code_action_async(T.CodeActionParams(
        T.TextDocumentIdentifier(uri), word, T.CodeActionContext(diagnostics=[])))
    assert {a.kind for a in actions} == {T.CodeActionKind.QuickFix, T.CodeActionKind.RefactorRewrite}
    assert all(a.edit is None for a in actions)  # listing actions runs no model
    fix = next(a for a in actions if a.kind == T.CodeActionKind.QuickFix)
    lo, hi = block_at(PYC, "python", PYC.index("total"), PYC.index("total") + 5)
    resolved = await embedded.code_action_resolve_async(fix)
    if resolved.edit is not None:
        (edit,) = resolved.edit.document_changes[0].edits
        assert edit.range == T.Range(T.Position(*index.position_utf16(lo)), T.Position(*index.position_utf16(hi)))
        assert compiles(apply_edit(PYC, edit))
    else:
        assert resolved.data["error"].startswith("not applied: ") and resolved.data["refused"] is True

    comment = T.Range(end_of(PYC, "# "), end_of(PYC, "# the sum"))
    actions = await embedded.text_document_code_action_async(T.CodeActionParams(
        T.TextDocumentIdentifier(uri), comment, T.CodeActionContext(diagnostics=[], only=["refactor.rewrite"])))
    resolved = await embedded.code_action_resolve_async(actions[0])
    assert resolved.edit is not None, resolved.data
    (edit,) = resolved.edit.document_changes[0].edits
    assert edit.range == comment and "\n" not in edit.new_text and resolved.edit.document_changes[0].text_document.version == 1
    after = apply_edit(PYC, edit)
    assert compiles(after)
    new = resolved.data["newRange"]
    assert new["start"] == {"line": 1, "character": comment.start.character}
    assert new["end"] == {"line": 1, "character": comment.start.character + len(edit.new_text)}


@on_module_loop
async def test_code_actions_asked_on_a_cursor_move_only_for_a_broken_block(embedded):
    """VS Code asks for code actions on every cursor move (triggerKind Automatic): a lightbulb then on every line
    would be noise. Only a block that does not parse gets "Fix this block"; asked for (Invoked), both come."""
    broken = "def add(a, b):\n    total = a +\n    return total\n"
    uri = open_doc(embedded, "lightbulb.py", PY)
    uri_broken = open_doc(embedded, "lightbulb_broken.py", broken)
    pos = end_of(PY, "    tot")

    async def kinds(u: str, rng: T.Range, trigger: T.CodeActionTriggerKind) -> list[str]:
        actions = await embedded.text_document_code_action_async(T.CodeActionParams(
            T.TextDocumentIdentifier(u), rng, T.CodeActionContext(diagnostics=[], trigger_kind=trigger)))
        return sorted(a.kind for a in actions or [])

    auto, invoked = T.CodeActionTriggerKind.Automatic, T.CodeActionTriggerKind.Invoked
    assert await kinds(uri, T.Range(pos, pos), auto) == []
    assert await kinds(uri, T.Range(T.Position(1, 4), T.Position(1, 9)), auto) == []
    assert await kinds(uri, T.Range(pos, pos), invoked) == [T.CodeActionKind.QuickFix]
    assert await kinds(uri, T.Range(T.Position(1, 4), T.Position(1, 9)), invoked) == sorted(
        [T.CodeActionKind.QuickFix, T.CodeActionKind.RefactorRewrite])
    assert await kinds(uri_broken, T.Range(pos, pos), auto) == [T.CodeActionKind.QuickFix]


@on_module_loop
async def test_resolving_an_action_for_an_older_version_is_content_modified(embedded):
    from pygls.exceptions import JsonRpcException

    uri = open_doc(embedded, "stale.py", PY)
    sel = T.Range(T.Position(1, 4), T.Position(1, 9))
    actions = await embedded.text_document_code_action_async(T.CodeActionParams(
        T.TextDocumentIdentifier(uri), sel, T.CodeActionContext(diagnostics=[])))
    embedded.text_document_did_change(T.DidChangeTextDocumentParams(
        T.VersionedTextDocumentIdentifier(uri=uri, version=2),
        [T.TextDocumentContentChangePartial(range=T.Range(T.Position(0, 0), T.Position(0, 0)), text="# x\n")]))
    with pytest.raises(JsonRpcException) as err:
        await embedded.code_action_resolve_async(actions[0])
    assert err.value.code == T.LSPErrorCodes.ContentModified


@on_module_loop
async def test_fill_range_command_applies_the_edit(embedded):
    uri = open_doc(embedded, "command.py", PYC)
    col = PYC.splitlines()[1].index("the sum")
    rng = {"start": {"line": 1, "character": col}, "end": {"line": 1, "character": col + len("the sum")}}
    before = len(embedded.applied_edits)
    summary = await embedded.workspace_execute_command_async(T.ExecuteCommandParams(
        command="infill.fillRange", arguments=[uri, rng]))
    assert summary["applied"] is True and summary["range"] == rng
    edit = embedded.applied_edits[before].edit.document_changes[0].edits[0]
    assert (edit.range.start.line, edit.range.start.character, edit.range.end.character) == (1, col, col + 7)
    assert edit.new_text == summary["text"] and "\n" not in edit.new_text
    assert summary["newRange"] == {"start": rng["start"], "end": {"line": 1, "character": col + len(edit.new_text)}}


@on_module_loop
async def test_type_through_serves_the_rest_without_a_model_call(embedded):
    text = "def f(x):\n    y = \n"
    uri = open_doc(embedded, "typing.py", text)
    pos = end_of(text, "y = ")
    item = assert_item_at(await inline(embedded, uri, pos), pos)
    suggestion = item.insert_text
    if len(suggestion) < 2:
        pytest.skip(f"the random model suggested {suggestion!r}: too short to type through")
    calls = (await status(embedded)).model_calls
    typed = suggestion[0]
    embedded.text_document_did_change(T.DidChangeTextDocumentParams(
        T.VersionedTextDocumentIdentifier(uri=uri, version=2),
        [T.TextDocumentContentChangePartial(range=T.Range(pos, pos), text=typed)]))
    new_text = text[:text.index("y = ") + 4] + typed + text[text.index("y = ") + 4:]
    new_pos = end_of(new_text, "y = " + typed)
    again = await inline(embedded, uri, new_pos, invoked=False)
    assert assert_item_at(again, new_pos).insert_text == suggestion[1:]
    after = await status(embedded)
    assert after.model_calls == calls and after.typethrough_hits >= 1


@on_module_loop
async def test_settings_change_and_did_change_cancels_work_in_flight(embedded):
    uri = open_doc(embedded, "cancel.py", PY)
    configure(embedded, SLOW)
    try:
        before = await status(embedded)
        assert before.settings.maxSteps == 1024  # didChangeConfiguration applied
        pos = end_of(PY, "total = ")
        started = time.monotonic()
        task = asyncio.ensure_future(inline(embedded, uri, pos))
        await wait_running(embedded, before.model_calls)
        embedded.text_document_did_change(T.DidChangeTextDocumentParams(
            T.VersionedTextDocumentIdentifier(uri=uri, version=2),
            [T.TextDocumentContentChangePartial(range=T.Range(pos, pos), text="a")]))
        assert (await asyncio.wait_for(task, 20)).items == ()
        after = await status(embedded)
        assert after.cancelled_running == before.cancelled_running + 1 and after.cancelled >= 1
        assert time.monotonic() - started < 15

        # $/cancelRequest: pygls cancels the handler's task, which cancels the engine's work
        before = after
        pos2 = T.Position(pos.line, pos.character + 1)
        future = embedded.protocol.send_request(T.TEXT_DOCUMENT_INLINE_COMPLETION, T.InlineCompletionParams(
            context=T.InlineCompletionContext(trigger_kind=T.InlineCompletionTriggerKind.Invoked),
            text_document=T.TextDocumentIdentifier(uri), position=pos2))
        msg_id = next(k for k, f in embedded.protocol._request_futures.items() if f is future)
        await wait_running(embedded, before.model_calls)
        embedded.protocol.notify(T.CANCEL_REQUEST, T.CancelParams(id=msg_id))
        with pytest.raises(Exception, match="cancel"):
            await asyncio.wait_for(asyncio.wrap_future(future), 20)
        await asyncio.sleep(0.2)
        assert (await status(embedded)).cancelled > before.cancelled
    finally:
        configure(embedded, FAST)
    # the engine's one worker thread is free again: the 1024-step runs did stop
    started = time.monotonic()
    assert_item_at(await inline(embedded, uri, T.Position(0, 4)), T.Position(0, 4))
    assert time.monotonic() - started < 10


@on_module_loop
async def test_a_disabled_language_gets_no_model_call(embedded):
    configure(embedded, {"enable": {"markdown": False}})
    try:
        uri = open_doc(embedded, "notes.md", "# Notes\n\nSome ", language="markdown")
        calls = (await status(embedded)).model_calls
        assert (await inline(embedded, uri, T.Position(2, 5))).items == ()
        assert (await status(embedded)).model_calls == calls
    finally:
        configure(embedded, {"enable": {}})


# -- against a real daemon ------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_daemon(env: dict[str, str], port: int, model: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "infill", "daemon", "--port", str(port), "--model", model,
                             "--device", "cpu", "--threads", "1"], env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def wait_daemon(env: dict[str, str], address: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    from server.client import DaemonClient
    from server.protocol import Unavailable

    old = os.environ.get("XDG_RUNTIME_DIR")
    os.environ["XDG_RUNTIME_DIR"] = env["XDG_RUNTIME_DIR"]  # the token file the daemon wrote
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert proc.poll() is None, f"the daemon exited: {proc.stderr.read().decode()[-2000:]}"
            try:
                client = DaemonClient(address)
                await client.connect(timeout=2)
                await client.close()
                return
            except Unavailable:
                assert time.monotonic() < deadline, "the daemon did not come up"
                await asyncio.sleep(0.2)
    finally:
        if old is None:
            os.environ.pop("XDG_RUNTIME_DIR", None)
        else:
            os.environ["XDG_RUNTIME_DIR"] = old


def kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(10)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def daemon_setup(tiny_model_dir, tmp_path_factory):
    pytest.importorskip("server.daemon")
    env = cli_env(tiny_model_dir)
    env["XDG_RUNTIME_DIR"] = str(tmp_path_factory.mktemp("runtime"))
    port = free_port()
    address = f"ws://127.0.0.1:{port}"
    procs = [start_daemon(env, port, str(tiny_model_dir))]
    await wait_daemon(env, address, procs[0])
    # Emacs 29: prefers UTF-32 positions and cannot resolve code actions (it gets commands instead).
    client = await start_server(["--daemon", address], env, FAST, caps="emacs")
    deadline = time.monotonic() + 20
    while not (await status(client)).backend.connected:
        assert time.monotonic() < deadline, "the language server did not connect to the daemon"
        await asyncio.sleep(0.1)
    try:
        yield {"client": client, "env": env, "port": port, "address": address, "procs": procs,
               "model": str(tiny_model_dir)}
    finally:
        try:
            await stop_server(client)
        finally:
            for proc in procs:
                kill(proc)


@on_module_loop
async def test_daemon_mode_completes_and_offers_commands(daemon_setup):
    client = daemon_setup["client"]
    assert client.init_result.capabilities.position_encoding == UTF32
    text = 's = "😀"; total = \n'
    uri = open_doc(client, "daemon.py", text)
    pos = T.Position(0, text.index("total = ") + len("total = "))  # UTF-32: code points
    assert_item_at(await inline(client, uri, pos), pos)
    actions = await untyped_request(client, T.TEXT_DOCUMENT_CODE_ACTION, T.CodeActionParams(
        T.TextDocumentIdentifier(uri), T.Range(pos, pos), T.CodeActionContext(diagnostics=[])))
    assert actions and all(a["command"]["command"] == "infill.fillRange" and a["kind"] and "edit" not in a
                           for a in actions)
    stat = await status(client)
    assert stat.backend.connected and stat.backend.backend == "daemon"


async def daemon_counters(setup: dict[str, Any]) -> dict[str, Any]:
    """The daemon's own status (served, cancelled, ...), asked with the token it wrote."""
    from pathlib import Path

    from server.client import DaemonClient

    token = (Path(setup["env"]["XDG_RUNTIME_DIR"]) / "infill" / "token").read_text().strip()
    async with DaemonClient(setup["address"], token=token) as c:
        s = await c.status()
    return {"served": s.served, "failed": s.failed, "running": s.running, **s.extra}


@on_module_loop
async def test_cancel_before_edit_reaches_the_daemon(daemon_setup):
    """VS Code's pattern: `$/cancelRequest` for the running suggestion, then the edit. The daemon must hear of it
    (issue 17: the request ran to its end, and was batched with the next one)."""
    client = daemon_setup["client"]
    uri = open_doc(client, "cancel_first.py", PY)
    pos = T.Position(1, len("    total = "))
    configure(client, SLOW)
    try:
        for version in (2, 3):
            before, daemon_before = await status(client), await daemon_counters(daemon_setup)
            future = client.protocol.send_request(T.TEXT_DOCUMENT_INLINE_COMPLETION, T.InlineCompletionParams(
                context=T.InlineCompletionContext(trigger_kind=T.InlineCompletionTriggerKind.Automatic),
                text_document=T.TextDocumentIdentifier(uri), position=pos))
            msg_id = next(k for k, f in client.protocol._request_futures.items() if f is future)
            await wait_running(client, before.model_calls)
            while (await daemon_counters(daemon_setup))["running"] == 0:  # the daemon is denoising it
                await asyncio.sleep(0.05)
            client.protocol.notify(T.CANCEL_REQUEST, T.CancelParams(id=msg_id))
            client.text_document_did_change(T.DidChangeTextDocumentParams(
                T.VersionedTextDocumentIdentifier(uri=uri, version=version),
                [T.TextDocumentContentChangePartial(range=T.Range(pos, pos), text="a")]))
            pos = T.Position(pos.line, pos.character + 1)
            with pytest.raises(Exception, match="cancel"):
                await asyncio.wait_for(asyncio.wrap_future(future), 20)
            deadline = time.monotonic() + 10
            while (after := await daemon_counters(daemon_setup))["cancelled"] == daemon_before["cancelled"]:
                assert time.monotonic() < deadline, f"the daemon never heard of the cancellation: {after}"
                await asyncio.sleep(0.05)
            assert after["cancelled"] == daemon_before["cancelled"] + 1 and after["served"] == daemon_before["served"]
            while (await daemon_counters(daemon_setup))["running"]:  # its batch stops at the next step
                assert time.monotonic() < deadline, "the cancelled request kept denoising"
                await asyncio.sleep(0.05)
    finally:
        configure(client, FAST)


@on_module_loop
async def test_daemon_killed_mid_request_then_back(daemon_setup):
    client, env, procs = daemon_setup["client"], daemon_setup["env"], daemon_setup["procs"]
    uri = open_doc(client, "restart.py", PY)
    pos = T.Position(1, len("    total = "))
    configure(client, SLOW)
    # an edit cancels the request in the daemon: it answers `cancelled` long before its 1024 steps
    before = await status(client)
    started = time.monotonic()
    task = asyncio.ensure_future(inline(client, uri, pos))
    await wait_running(client, before.model_calls)
    client.text_document_did_change(T.DidChangeTextDocumentParams(
        T.VersionedTextDocumentIdentifier(uri=uri, version=2),
        [T.TextDocumentContentChangePartial(range=T.Range(T.Position(6, 0), T.Position(6, 0)), text="#")]))
    assert (await asyncio.wait_for(task, 20)).items == ()
    assert (await status(client)).cancelled == before.cancelled + 1 and time.monotonic() - started < 10

    before = await status(client)
    task = asyncio.ensure_future(inline(client, uri, pos))
    await wait_running(client, before.model_calls)
    await asyncio.sleep(0.3)
    kill(procs[-1])
    result = await asyncio.wait_for(task, 20)  # an empty list, not an error
    assert result.items == ()
    configure(client, FAST)
    assert (await inline(client, uri, pos)).items == ()  # still down: empty at once

    procs.append(start_daemon(env, daemon_setup["port"], daemon_setup["model"]))
    await wait_daemon(env, daemon_setup["address"], procs[-1])
    deadline = time.monotonic() + 30
    while not (result := await inline(client, uri, pos)).items:
        assert time.monotonic() < deadline, "the language server did not reconnect"
        await asyncio.sleep(0.3)
    assert_item_at(result, pos)
    stat = await status(client)
    assert stat.backend.connected and stat.backend.reconnects >= 1
    assert any("lost the model daemon" in m.message for m in client.log_messages)


def test_a_request_without_params_is_understood():
    """JSON-RPC lets a request leave out `params`; pygls alone fails to read it and never answers."""
    from pygls.protocol.json_rpc import JsonRPCProtocol

    from server.lsp import build_server
    from server.services import EmbeddedService

    protocol = build_server(EmbeddedService(None, None, lambda *a: None), Settings()).protocol
    raw = {"jsonrpc": "2.0", "id": 1, "method": "infill/status"}
    assert protocol.structure_message(raw).params is None
    with pytest.raises(Exception):  # noqa: B017 - what the fix is for
        JsonRPCProtocol.structure_message(protocol, raw)
