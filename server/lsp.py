"""The language server (pygls, stdio): thin handlers over `server.completions.Completer`.

    textDocument/inlineCompletion   the suggestion at the cursor (LSP 3.18), one item or none
    textDocument/completion         the same suggestion as one completion item, for clients without inline
    textDocument/codeAction         "Fix this block" (quickfix) and "Fill selection" (refactor.rewrite); the
                                    model runs on codeAction/resolve, never while the editor lists actions.
                                    Clients that cannot resolve an action's edit get the infill.fillRange
                                    command in the action instead. Asked automatically (a cursor move),
                                    only a block with a syntax error gets "Fix this block": no lightbulb on
                                    every line. A resolved action without an edit says why in data.error;
                                    one with an edit gives the new text's range in data.newRange.
    workspace/executeCommand        infill.fillRange(uri, range): regenerate the range, apply it with
                                    workspace/applyEdit, return a summary (applied, error, range, newRange)
    infill/status                   counters, type-through reuse, the model service's state ("backend") and cache hits
    infill/state (notification)     the server's state for people (server.notices), sent when it changes

Documents are kept by `server.documents` (LSP line breaks, clamped positions, the negotiated position
encoding). Completions are never errors: anything that goes wrong is an empty list and a log line
(window/logMessage and stderr).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.language_server import lsp_method

from . import notices
from .completions import FILL_SELECTION, FIX_BLOCK, Completer, as_completion
from .contract import FILL_RANGE, SECTION, STATE, STATUS
from .documents import DocumentStore, line_index, range_offsets, to_range
from .notices import Notice
from .postprocess import Edit
from .services import ModelService
from .settings import Settings

log = logging.getLogger("infill.lsp")

ACTIONS = {  # what -> (title, kind)
    FIX_BLOCK: ("Fix this block (infill)", types.CodeActionKind.QuickFix),
    FILL_SELECTION: ("Fill selection (infill)", types.CodeActionKind.RefactorRewrite),
}
_LOG_TYPES = {logging.ERROR: types.MessageType.Error, logging.WARNING: types.MessageType.Warning,
              logging.INFO: types.MessageType.Info}


class InfillProtocol(LanguageServerProtocol):
    """Document sync goes to the server's own store (pygls' workspace splits lines at form feeds)."""

    def structure_message(self, data: dict[str, Any]):
        # JSON-RPC lets a request omit `params`; pygls then fails to build it and never answers.
        if isinstance(data, dict) and "method" in data and "id" in data and "params" not in data:
            data = {**data, "params": None}
        return super().structure_message(data)

    def _user(self, method: str, params: Any):
        if (handler := self.fm.features.get(method)) is not None:
            yield handler, (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params: types.DidOpenTextDocumentParams):
        self._server.documents.open(params.text_document)
        yield from self._user(types.TEXT_DOCUMENT_DID_OPEN, params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams):
        self._server.documents.change(params, self._server.encoding)
        self._server.completer.changed(params.text_document.uri)
        yield from self._user(types.TEXT_DOCUMENT_DID_CHANGE, params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params: types.DidCloseTextDocumentParams):
        self._server.documents.close(params.text_document.uri)
        self._server.completer.closed(params.text_document.uri)
        yield from self._user(types.TEXT_DOCUMENT_DID_CLOSE, params)


class InfillServer(LanguageServer):
    def __init__(self, service: ModelService, settings: Settings) -> None:
        from infill import __version__

        super().__init__("infill", __version__, protocol_cls=InfillProtocol,
                         text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.settings = settings
        self.documents = DocumentStore()
        self.completer = Completer(service, lambda: self.settings)
        self._notify_loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._initialized = False  # notifications other than log messages wait for `initialized`
        service.board.publish = self.publish_state

    @property
    def service(self) -> ModelService:
        return self.completer.service

    @property
    def encoding(self) -> str:
        try:
            return self.workspace.position_encoding or types.PositionEncodingKind.Utf16
        except RuntimeError:  # before initialize
            return types.PositionEncodingKind.Utf16

    # -- logging: stderr always, the client's log once it listens ------------------------------------------
    def notify(self, level: int, message: str) -> None:
        """Log a message and show it in the client's log (safe to call from any thread). Once the client listens,
        the record is marked `in_client_log` and stderr leaves it out: editors show a server's stderr in the same
        log, and every warning would appear twice."""
        loop = self._notify_loop
        listening = loop is not None and not loop.is_closed()
        log.log(level, message, extra={"in_client_log": listening})
        if not listening:
            return
        params = types.LogMessageParams(type=_LOG_TYPES.get(level, types.MessageType.Log), message=message)
        if threading.get_ident() == self._loop_thread:
            self.window_log_message(params)
        else:
            loop.call_soon_threadsafe(self.window_log_message, params)

    def publish_state(self, notice: Notice) -> None:
        """Send the server's state to the client (server.contract.STATE) once the session is initialized; one that
        needs the user also goes to the log, for editors that do not render the notification."""
        if self._initialized:
            self.protocol.notify(STATE, notice.to_json())
            if notice.state in notices.WARN:
                self.notify(logging.WARNING, f"infill: {notice.message}")

    def report_server_error(self, error: Exception, source: Any) -> None:
        """Errors outside a request go to the log, never to an error popup."""
        self.notify(logging.ERROR, f"infill: internal error ({getattr(source, '__name__', source)}): {error}")

    def apply_settings(self, raw: Any, source: str) -> None:
        new, problems = self.settings.merged(raw)
        for problem in problems:
            self.notify(logging.WARNING, f"infill: {source}: {problem}")
        old, self.settings = self.settings, new
        if (new.resolved_model, new.daemon, new.daemon_idle_exit) != (old.resolved_model, old.daemon,
                                                                      old.daemon_idle_exit):
            self.service.configure(new)

    # -- LSP shapes --------------------------------------------------------------------------------------------
    def lsp_range(self, uri: str, start: int, end: int) -> types.Range:
        return to_range(self.documents.get(uri).index, start, end, self.encoding)

    def workspace_edit(self, uri: str, version: int, edit: Edit) -> types.WorkspaceEdit:
        text_edit = types.TextEdit(range=self.lsp_range(uri, edit.start, edit.end), new_text=edit.text)
        caps = self.client_capabilities.workspace
        if caps and caps.workspace_edit and caps.workspace_edit.document_changes:
            doc = types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=version)
            return types.WorkspaceEdit(document_changes=[types.TextDocumentEdit(text_document=doc, edits=[text_edit])])
        return types.WorkspaceEdit(changes={uri: [text_edit]})

    def resolves_edits(self) -> bool:
        """Whether the client resolves a code action's `edit` lazily (codeAction/resolve)."""
        ca = self.client_capabilities.text_document and self.client_capabilities.text_document.code_action
        props = ca and ca.resolve_support and ca.resolve_support.properties
        return bool(props and "edit" in props and ca.data_support)


def never_fails(empty: Callable[[], Any]):
    """A completion handler that answers `empty()` instead of an error when something unexpected goes wrong."""

    def wrap(handler):
        @functools.wraps(handler)
        async def safe(ls: InfillServer, params: Any) -> Any:
            try:
                return await handler(ls, params)
            except Exception:
                log.exception("%s failed", handler.__name__)
                ls.notify(logging.ERROR, f"infill: {handler.__name__} failed; see the server log")
                return empty()

        return safe

    return wrap


# -- handlers: each finds the document, asks the Completer, and answers in LSP types ---------------------------
def initialize(ls: InfillServer, params: types.InitializeParams) -> None:
    ls._notify_loop, ls._loop_thread = asyncio.get_running_loop(), threading.get_ident()
    ls.apply_settings(params.initialization_options, "initializationOptions")


async def initialized(ls: InfillServer, params: types.InitializedParams) -> None:
    ls.notify(logging.INFO, f"infill lsp: {ls.service.description}")  # with the settings the client sent
    ls._initialized = True
    ls.publish_state(ls.service.board.notice)
    await ls.service.start()
    ws = ls.client_capabilities.workspace
    if ws and ws.configuration:
        await pull_configuration(ls)


async def shutdown(ls: InfillServer, params: None) -> None:
    await ls.service.close()


async def did_change_configuration(ls: InfillServer, params: types.DidChangeConfigurationParams) -> None:
    raw = params.settings
    if isinstance(raw, dict) and raw:
        ls.apply_settings(raw, "workspace/didChangeConfiguration")
    elif ls.client_capabilities.workspace and ls.client_capabilities.workspace.configuration:
        await pull_configuration(ls)  # "settings changed, come and get them"


@never_fails(lambda: types.InlineCompletionList(items=[]))
async def inline_completion(ls: InfillServer, params: types.InlineCompletionParams) -> types.InlineCompletionList:
    doc = ls.documents.get(params.text_document.uri)
    if doc is None:
        return types.InlineCompletionList(items=[])
    invoked = params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
    selected = None
    if (info := params.context.selected_completion_info) is not None:  # the editor's completion list is open
        lo, hi = range_offsets(doc.index, info.range, ls.encoding)
        selected = Edit(info.text, lo, hi)
    edit = await ls.completer.at_cursor(doc, doc.offset(params.position, ls.encoding), invoked, selected)
    if edit is None:
        return types.InlineCompletionList(items=[])
    item = types.InlineCompletionItem(insert_text=edit.text, range=ls.lsp_range(doc.uri, edit.start, edit.end))
    return types.InlineCompletionList(items=[item])


@never_fails(lambda: types.CompletionList(is_incomplete=True, items=[]))
async def completion(ls: InfillServer, params: types.CompletionParams) -> types.CompletionList:
    empty = types.CompletionList(is_incomplete=True, items=[])
    doc = ls.documents.get(params.text_document.uri)
    if doc is None:
        return empty
    invoked = params.context is None or params.context.trigger_kind == types.CompletionTriggerKind.Invoked
    cursor = doc.offset(params.position, ls.encoding)
    edit = await ls.completer.at_cursor(doc, cursor, invoked)
    if edit is None:
        return empty
    entry = as_completion(doc.text, cursor, edit)
    item = types.CompletionItem(
        label=entry.label, kind=types.CompletionItemKind.Snippet, detail="infill", filter_text=entry.filter_text,
        sort_text="0", insert_text_format=types.InsertTextFormat.PlainText,
        text_edit=types.TextEdit(range=ls.lsp_range(doc.uri, entry.edit.start, entry.edit.end),
                                 new_text=entry.edit.text))
    return types.CompletionList(is_incomplete=True, items=[item])


def code_action(ls: InfillServer, params: types.CodeActionParams) -> list[types.CodeAction]:
    doc = ls.documents.get(params.text_document.uri)
    if doc is None:
        return []
    start, end = range_offsets(doc.index, params.range, ls.encoding)
    only = params.context.only
    automatic = params.context.trigger_kind == types.CodeActionTriggerKind.Automatic
    actions = []
    for what, (lo, hi) in ls.completer.targets(doc, start, end).items():
        title, kind = ACTIONS[what]
        if only and not any(kind == k or kind.startswith(f"{k}.") for k in only):
            continue
        if automatic and not (what == FIX_BLOCK and ls.completer.is_broken(doc, lo, hi)):
            continue  # a cursor move: no lightbulb on every line, only on a block that does not parse
        rng = _range_json(ls.lsp_range(doc.uri, lo, hi))
        if ls.resolves_edits():  # the model runs when the client resolves the action, not while it lists them
            data = {"uri": doc.uri, "version": doc.version, "range": rng, "action": what}
            actions.append(types.CodeAction(title=title, kind=kind, data=data))
        else:
            cmd = types.Command(title=title, command=FILL_RANGE, arguments=[doc.uri, rng])
            actions.append(types.CodeAction(title=title, kind=kind, command=cmd))
    return actions


async def code_action_resolve(ls: InfillServer, action: types.CodeAction) -> types.CodeAction:
    data = action.data if isinstance(action.data, dict) else {}
    doc = ls.documents.get(data.get("uri", ""))
    if doc is None or "range" not in data:
        return action
    if data.get("version") != doc.version:  # ContentModified: the client drops the action quietly
        raise JsonRpcException("the document changed since the action was offered; ask again",
                               code=types.LSPErrorCodes.ContentModified)
    start, end = range_offsets(doc.index, _range(data["range"]), ls.encoding)
    text = doc.text
    fill = await ls.completer.over_range(doc, start, end)
    if fill.edit is not None:
        action.edit = ls.workspace_edit(doc.uri, doc.version, fill.edit)
        action.data = {**data, "newRange": _range_json(new_range(text, fill.edit, ls.encoding))}
    else:
        ls.notify(logging.WARNING, f"infill: {action.title}: {fill.error}")
        action.data = {**data, "error": fill.error, "refused": fill.refused}
    return action


async def fill_range(ls: InfillServer, *args: Any) -> dict[str, Any]:
    if len(args) != 2 or not isinstance(args[0], str) or not isinstance(args[1], dict):
        return {"applied": False, "error": f"{FILL_RANGE} takes [uri, range]"}
    doc = ls.documents.get(args[0])
    if doc is None:
        return {"applied": False, "error": f"{args[0]} is not open"}
    start, end = range_offsets(doc.index, _range(args[1]), ls.encoding)
    version, text = doc.version, doc.text
    fill = await ls.completer.over_range(doc, start, end)
    summary = fill.summary()
    if fill.edit is None:
        ls.notify(logging.WARNING, f"infill: fill range: {fill.error}")
        return summary
    summary["range"] = _range_json(ls.lsp_range(doc.uri, fill.edit.start, fill.edit.end))
    summary["newRange"] = _range_json(new_range(text, fill.edit, ls.encoding))
    try:
        reply = await ls.workspace_apply_edit_async(types.ApplyWorkspaceEditParams(
            edit=ls.workspace_edit(doc.uri, version, fill.edit), label="infill: fill range"))
    except Exception as exc:  # the client does not do applyEdit, or refused the request
        return {**summary, "error": f"workspace/applyEdit failed: {exc}"}
    summary["applied"] = bool(reply.applied)
    if not reply.applied:
        summary["error"] = reply.failure_reason or "the client did not apply the edit"
    return summary


async def status(ls: InfillServer, params: Any) -> dict[str, Any]:
    return {**ls.completer.stats(), "backend": await ls.service.status(), "settings": ls.settings.to_json(),
            "state": ls.service.board.notice.to_json()}


FEATURES: list[tuple[str, Any, Callable]] = [  # (method, options advertised in initialize, handler)
    (types.INITIALIZE, None, initialize),
    (types.INITIALIZED, None, initialized),
    (types.SHUTDOWN, None, shutdown),
    (types.WORKSPACE_DID_CHANGE_CONFIGURATION, None, did_change_configuration),
    (types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions(), inline_completion),
    (types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(), completion),
    (types.TEXT_DOCUMENT_CODE_ACTION, types.CodeActionOptions(
        code_action_kinds=[kind for _, kind in ACTIONS.values()], resolve_provider=True), code_action),
    (types.CODE_ACTION_RESOLVE, None, code_action_resolve),
    (STATUS, None, status),
]


def build_server(service: ModelService, settings: Settings) -> InfillServer:
    server = InfillServer(service, settings)
    for method, options, handler in FEATURES:
        server.feature(method, options)(handler)
    server.command(FILL_RANGE)(fill_range)
    return server


async def pull_configuration(ls: InfillServer) -> None:
    try:
        values = await ls.workspace_configuration_async(
            types.ConfigurationParams(items=[types.ConfigurationItem(section=SECTION)]))
    except Exception as exc:
        log.debug("workspace/configuration: %s", exc)
        return
    if values and isinstance(values[0], dict) and values[0]:
        ls.apply_settings(values[0], "workspace/configuration")


def new_range(text: str, edit: Edit, encoding: str) -> types.Range:
    """Where the edit's text lies in the document once it is applied (for the selection afterwards)."""
    after = text[: edit.start] + edit.text + text[edit.end:]
    return to_range(line_index(after), edit.start, edit.start + len(edit.text), encoding)


def _range_json(rng: types.Range) -> dict[str, Any]:
    return {"start": {"line": rng.start.line, "character": rng.start.character},
            "end": {"line": rng.end.line, "character": rng.end.character}}


def _range(raw: dict[str, Any]) -> types.Range:
    def pos(p: Any) -> types.Position:
        return types.Position(line=int(p["line"]), character=int(p["character"]))

    return types.Range(start=pos(raw["start"]), end=pos(raw["end"]))
