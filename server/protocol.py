"""The daemon's wire protocol, defined once for the daemon, the language server, the CLI and the tests.

Every message is one JSON object (a websocket text frame) with a `type` field:

    client -> daemon
      {"type": "infill", "id": "7", "text": "...", "cursor": 120}          complete at a cursor (code points)
      {"type": "infill", "id": "8", "text": "...", "range": [100, 140]}     regenerate a range (end exclusive)
          optional: path, language, quality, max_steps, seed, deadline_ms, stream (send drafts), lengths,
                    invoked (false: an as-you-type request, one canvas row)
      {"type": "cancel", "id": "7"}
      {"type": "status"}
    daemon -> client
      {"type": "progress", "id": "7", "step": 3, "draft": "..."}           only when the request set stream
      {"type": "result", "id": "7", "text": "...", "start": 120, "end": 120, "syntax_ok": true, ...}
      {"type": "error", "id": "7" | null, "code": "bad_input", "message": "..."}
      {"type": "status", "model": "...", "queue": 0, ...}

Messages are validated on arrival (`parse`): unknown types, wrong field types and oversized messages become
`ProtocolError`s with a code and a message a person can act on. A request that gets no result is a
`FillError` wherever it is seen (the client, the language server's model services):

    FillError        the daemon or the embedded engine answered with an error: `code` is an ErrorCode
    └── Unavailable  no model to talk to: nobody answers, the connection dropped, the model did not load
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from infill.quality import DEFAULTS, NAMES

from .contract import LIMITS

PROTOCOL_VERSION = 2  # the daemon's status says it (extra["protocol"]); a client of another version warns
MAX_MESSAGE_BYTES = 8 * 1024 * 1024  # one request carries a whole document
MAX_TEXT_CHARS = 2_000_000  # documents larger than this are refused
MAX_ID_CHARS = 128
MAX_DEPTH = 16  # JSON nesting levels; a client message has 2 (the lists of 'range' and 'lengths')
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # json.loads turns an unpaired "\\ud800" escape into one


class ErrorCode:
    BAD_REQUEST = "bad_request"  # malformed JSON, unknown type, wrong field types
    TOO_LARGE = "too_large"  # the message or its text is over the limits
    BAD_INPUT = "bad_input"  # a valid message the engine cannot use (cursor outside the text, unknown language)
    UNAUTHORIZED = "unauthorized"
    CANCELLED = "cancelled"
    DEADLINE = "deadline"
    OVERLOADED = "overloaded"  # the queue is full
    MODEL = "model_error"  # the model failed (out of memory, ...); the daemon keeps serving
    INTERNAL = "internal"


UNAVAILABLE = "unavailable"  # Unavailable.code: not an ErrorCode, the daemon never sends it


class FillError(Exception):
    """A request got no result; `code` is one of ErrorCode (or UNAVAILABLE) and `message` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class Unavailable(FillError):
    """No model to talk to right now: nobody answers at the address, the connection dropped, the model did not
    load. The language server answers empty and tries again later."""

    def __init__(self, message: str) -> None:
        super().__init__(UNAVAILABLE, message)


class NoDaemon(Unavailable):
    """Nothing listens at the address: the connection was refused."""


class NotADaemon(Unavailable):
    """Something listens at the address but does not answer as the infill daemon."""


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.request_id = code, message, request_id

    def to_message(self) -> ErrorMessage:
        return ErrorMessage(id=self.request_id, code=self.code, message=self.message)


@dataclass(frozen=True)
class Message:
    TYPE: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.TYPE, **{k: v for k, v in asdict(self).items() if v is not None}}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)


@dataclass(frozen=True)
class InfillMessage(Message):
    TYPE: ClassVar[str] = "infill"
    id: str
    text: str
    cursor: int | None = None
    range: tuple[int, int] | None = None
    path: str | None = None
    language: str | None = None
    quality: str = DEFAULTS.request
    max_steps: int | None = None
    seed: int | None = None
    deadline_ms: int | None = None  # give up after this many milliseconds in the daemon
    stream: bool = False  # send progress drafts
    lengths: tuple[int, ...] | None = None  # candidate canvas lengths (tests, benchmarks)
    invoked: bool = True  # asked for (CLI, code action, explicit trigger); false: as you type


@dataclass(frozen=True)
class CancelMessage(Message):
    TYPE: ClassVar[str] = "cancel"
    id: str


@dataclass(frozen=True)
class StatusRequest(Message):
    TYPE: ClassVar[str] = "status"


@dataclass(frozen=True)
class ProgressMessage(Message):
    TYPE: ClassVar[str] = "progress"
    id: str
    step: int
    draft: str


@dataclass(frozen=True)
class ResultMessage(Message):
    TYPE: ClassVar[str] = "result"
    id: str
    text: str
    start: int
    end: int
    syntax_ok: bool
    kind: str = ""
    steps: int = 0
    forward_passes: int = 0
    tokens: int = 0
    seconds: float = 0.0
    queued_seconds: float = 0.0  # time waiting for a batch
    batch_size: int = 1  # requests that shared the forward passes
    model: str = ""
    language: str | None = None
    sizing: str = ""
    prompt_tokens: int = 0
    reused_prompt_tokens: int = 0
    repaired: bool = False
    candidates: tuple[dict[str, Any], ...] = ()  # each candidate tried: length, text, syntax_ok, confidence, finished


@dataclass(frozen=True)
class ErrorMessage(Message):
    TYPE: ClassVar[str] = "error"
    id: str | None
    code: str
    message: str

    def to_dict(self) -> dict[str, Any]:  # id stays even when null: the client matches errors to requests
        return {"type": self.TYPE, "id": self.id, "code": self.code, "message": self.message}


@dataclass(frozen=True)
class StatusMessage(Message):
    TYPE: ClassVar[str] = "status"
    address: str = ""
    pid: int = 0
    model: str = ""
    device: str = ""
    dtype: str = ""
    queue: int = 0
    running: int = 0
    served: int = 0
    failed: int = 0
    cache_hit_rate: float = 0.0
    uptime_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


CLIENT_MESSAGES: dict[str, type[Message]] = {m.TYPE: m for m in (InfillMessage, CancelMessage, StatusRequest)}
SERVER_MESSAGES: dict[str, type[Message]] = {
    m.TYPE: m for m in (ProgressMessage, ResultMessage, ErrorMessage, StatusMessage)
}


def _check(cond: bool, message: str, request_id: str | None = None) -> None:
    if not cond:
        raise ProtocolError(ErrorCode.BAD_REQUEST, message, request_id)


def _decode(raw: str | bytes) -> dict[str, Any]:
    if isinstance(raw, bytes):
        if len(raw) > MAX_MESSAGE_BYTES:
            raise ProtocolError(ErrorCode.TOO_LARGE, f"message of {len(raw)} bytes; the limit is {MAX_MESSAGE_BYTES}")
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "binary frame: send JSON text frames") from None
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"message of {len(raw)} characters; the limit is {MAX_MESSAGE_BYTES}")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"not JSON: {exc}") from None
    except ValueError:  # an integer literal over Python's limit of 4300 digits
        raise ProtocolError(ErrorCode.BAD_REQUEST, "a number in the message has too many digits") from None
    problem = _structure_problem(data)
    _check(problem is None, problem or "")
    _check(isinstance(data, dict), "a message must be a JSON object with a 'type' field")
    _check(isinstance(data.get("type"), str), "a message needs a string 'type' field")
    return data


def replace_lone_surrogates(text: str) -> str:
    """`text` with each unpaired surrogate as U+FFFD: one code point and one UTF-16 unit, so offsets stay put."""
    return _LONE_SURROGATE.sub("\ufffd", text) if not text.isascii() else text


def _structure_problem(value: Any) -> str | None:
    """Why decoded JSON cannot be a message whatever its fields: nested deeper than MAX_DEPTH (refused the same
    way at any depth, not by where the interpreter's recursion limit falls), or a string holding an unpaired
    surrogate (it cannot be encoded as UTF-8: echoed in a reply it would break the connection's writer, and in a
    document it fails the tokenizer and the whole batch it shares)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, str):
            if not v.isascii() and _LONE_SURROGATE.search(v):
                return "a string in the message holds an unpaired UTF-16 surrogate (\\ud800-\\udfff escape): " \
                       "send well-formed Unicode"
        elif isinstance(v, dict | list):
            if depth > MAX_DEPTH:
                return f"JSON nested deeper than {MAX_DEPTH} levels"
            stack += [(x, depth + 1) for x in ([*v.keys(), *v.values()] if isinstance(v, dict) else v)]
    return None


def _request_id(data: dict[str, Any]) -> str | None:
    """The id an error about this message carries: its 'id', when that is a well-formed request id."""
    rid = data.get("id")
    return rid if isinstance(rid, str) and 0 < len(rid) <= MAX_ID_CHARS else None


def _build(cls: type[Message], data: dict[str, Any], **converted: Any) -> Message:
    """Type-check the fields of `data` against the dataclass and build it; `converted` replaces the values of
    fields that `data` holds in JSON form (lists for tuples)."""
    request_id = _request_id(data)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known - {"type"})
    _check(not unknown, f"unknown field(s) for {cls.TYPE!r}: {', '.join(unknown)}", request_id)
    kwargs = {name: converted.get(name, data[name]) for name in known if name in data}
    try:
        msg = cls(**kwargs)
    except TypeError as exc:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"{cls.TYPE}: {exc}", request_id) from None
    return msg


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _validate_infill(data: dict[str, Any]) -> InfillMessage:
    rid = data.get("id")
    _check(isinstance(rid, str) and 0 < len(rid) <= MAX_ID_CHARS, f"'id' must be a string of 1-{MAX_ID_CHARS} characters")
    text = data.get("text")
    _check(isinstance(text, str), "'text' must be a string (the whole document)", rid)
    if len(text) > MAX_TEXT_CHARS:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"document of {len(text)} characters; the limit is {MAX_TEXT_CHARS}", rid)
    cursor, rng = data.get("cursor"), data.get("range")
    _check((cursor is None) != (rng is None), "give exactly one of 'cursor' and 'range'", rid)
    if cursor is not None:
        _check(_is_int(cursor) and cursor >= 0, "'cursor' must be a non-negative integer (code points)", rid)
    if rng is not None:
        _check(isinstance(rng, list) and len(rng) == 2 and all(_is_int(x) and x >= 0 for x in rng)
               and rng[0] <= rng[1], "'range' must be [start, end] with 0 <= start <= end (code points)", rid)
    for name in ("path", "language"):
        _check(data.get(name) is None or isinstance(data[name], str), f"'{name}' must be a string", rid)
    _check(data.get("quality", DEFAULTS.request) in NAMES, f"'quality' must be one of {', '.join(NAMES)}", rid)
    for name, hi in (("max_steps", LIMITS.max_steps), ("seed", LIMITS.seed), ("deadline_ms", LIMITS.deadline_ms)):
        v = data.get(name)
        _check(v is None or (_is_int(v) and 0 <= v <= hi), f"'{name}' must be an integer in 0..{hi}", rid)
    for flag in ("stream", "invoked"):
        _check(isinstance(data.get(flag, False), bool), f"'{flag}' must be true or false", rid)
    lengths = data.get("lengths")
    if lengths is not None:
        _check(isinstance(lengths, list) and 0 < len(lengths) <= LIMITS.lengths
               and all(_is_int(n) and 1 <= n <= LIMITS.length for n in lengths),
               f"'lengths' must be 1-{LIMITS.lengths} integers in 1..{LIMITS.length}", rid)
    return _build(InfillMessage, data, range=rng and tuple(rng), lengths=lengths and tuple(lengths))  # type: ignore[return-value]


def parse(raw: str | bytes) -> Message:
    """A client message from a websocket frame; raises ProtocolError."""
    data = _decode(raw)
    kind = data["type"]
    if kind == InfillMessage.TYPE:
        return _validate_infill(data)
    if kind == CancelMessage.TYPE:
        _check(isinstance(data.get("id"), str) and 0 < len(data["id"]) <= MAX_ID_CHARS, "'cancel' needs a string 'id'")
        return _build(CancelMessage, data)
    if kind == StatusRequest.TYPE:
        return _build(StatusRequest, data)
    raise ProtocolError(ErrorCode.BAD_REQUEST,
                        f"unknown message type {kind!r}; expected one of: {', '.join(sorted(CLIENT_MESSAGES))}",
                        _request_id(data))


def parse_server(raw: str | bytes) -> Message:
    """A daemon message, for clients (the language server, the CLI, tests)."""
    data = _decode(raw)
    cls = SERVER_MESSAGES.get(data["type"])
    if cls is None:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"unknown message type {data['type']!r} from the daemon")
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})
