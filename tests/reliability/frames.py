"""Hypothesis strategies for daemon frames, and the verdict `server.protocol.parse` gives each one.

Each strategy draws a `Frame`: the data to send (text or bytes, and which websocket frame type carries it),
the category it belongs to (for the counts), and, where the category defines it, the error the frame must get:

    wrong_type     one field of a valid message replaced by a JSON value of a type that field does not take
    out_of_range   one field with the right type and a value outside what it allows, or a field missing
    unknown        an unknown message type, or an extra field
    literal        a number over any limit, NaN, Infinity, -Infinity, 1e400 in place of one field's value
    surrogate      an unpaired UTF-16 surrogate escape (\\ud800) in one string, or in a field name
    nested         JSON nested deeper than protocol.MAX_DEPTH, up to 200,000 levels, as the whole frame or as one
                   field's value
    garbage        arbitrary text, arbitrary bytes, and valid frames cut or spliced at random points
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from infill.quality import NAMES
from server.protocol import (
    MAX_DEPTH,
    MAX_ID_CHARS,
    CancelMessage,
    ErrorCode,
    Message,
    ProtocolError,
    parse,
)

# The JSON types each field of each message takes ("null": the field may be null or left out).
FIELDS: dict[str, dict[str, set[str]]] = {
    "infill": {"type": {"str"}, "id": {"str"}, "text": {"str"}, "cursor": {"int", "null"}, "range": {"list", "null"},
               "path": {"str", "null"}, "language": {"str", "null"}, "quality": {"str"},
               "max_steps": {"int", "null"}, "seed": {"int", "null"}, "deadline_ms": {"int", "null"},
               "stream": {"bool"}, "lengths": {"list", "null"}},
    "cancel": {"type": {"str"}, "id": {"str"}},
    "status": {"type": {"str"}},
}
DOC = "def f(a):\n    return \n"


@dataclass(frozen=True)
class Frame:
    category: str
    data: str | bytes
    binary: bool = False  # sent as a binary frame (else text; bytes in a text frame may be invalid UTF-8)
    code: str | None = None  # the error code the category requires (None: whatever parse says)
    request_id: str | None = None  # the id that error must carry


@dataclass(frozen=True)
class Verdict:
    """What the daemon must answer: `type` "error" (with code and id), "status", "cancel" (nothing), or
    "infill" (a result or an engine error for that id, later)."""

    type: str
    code: str | None = None
    request_id: str | None = None
    message: Message | None = None


def kind(value: Any) -> str:
    return {type(None): "null", bool: "bool", int: "int", float: "float", str: "str", list: "list",
            dict: "dict"}[type(value)]


# -- valid messages ---------------------------------------------------------------------------------------------
ids = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12)


@st.composite
def valid_messages(draw) -> dict[str, Any]:
    """A valid client message as a dict: small infill requests (1 step, one 4-token canvas, a deadline),
    cancels of ids nobody uses, status requests."""
    which = draw(st.sampled_from(["infill", "infill", "cancel", "status"]))
    if which == "status":
        return {"type": "status"}
    if which == "cancel":
        return {"type": "cancel", "id": "nobody-" + draw(ids)}
    msg: dict[str, Any] = {"type": "infill", "id": draw(ids), "text": DOC, "max_steps": 1, "lengths": [4],
                           "deadline_ms": 10_000, "quality": "fast", "language": "python"}
    if draw(st.booleans()):
        msg["cursor"] = draw(st.integers(0, len(DOC)))
    else:
        a, b = sorted(draw(st.lists(st.integers(0, len(DOC)), min_size=2, max_size=2)))
        msg["range"] = [a, b]
    return msg


def expected_id(msg: dict[str, Any], field: str) -> str | None:
    """The id an error about `field` carries: the message's id, unless the id itself is what is wrong."""
    return msg.get("id") if field not in ("type", "id") else None


# -- JSON values ------------------------------------------------------------------------------------------------
scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats()
           | st.text(st.characters(codec="utf-8"), max_size=20))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)


def dumps(msg: dict[str, Any]) -> str:
    return json.dumps(msg)  # ensure_ascii: surrogates become \\udXXX escapes, NaN and inf become literals


@st.composite
def wrong_type(draw) -> Frame:
    msg = draw(valid_messages())
    field = draw(st.sampled_from(sorted(FIELDS[msg["type"]])))
    allowed = FIELDS[msg["type"]][field]
    value = draw(json_values.filter(lambda v: kind(v) not in allowed))
    return Frame("wrong_type", dumps({**msg, field: value}), code=ErrorCode.BAD_REQUEST,
                 request_id=expected_id(msg, field))


OUT_OF_RANGE = {
    "id": ["", "x" * (MAX_ID_CHARS + 1)],
    "cursor": [-1, -(2**40)],
    "range": [[5, 2], [-1, 0], [0], [0, 1, 2], [0, "1"], [0, 1.0], [True, 1], []],
    "quality": ["best", "", "FAST"],
    "max_steps": [-1, 1025, 2**64],
    "seed": [-1, 2**63],
    "deadline_ms": [-1, 3_600_001],
    "lengths": [[], [0], [1025], [1] * 9, [1, "2"], [1.5]],
}


@st.composite
def out_of_range(draw) -> Frame:
    msg = draw(valid_messages().filter(lambda m: m["type"] != "status"))
    if draw(st.booleans()) or msg["type"] == "cancel":  # a required field missing
        field = draw(st.sampled_from(["id", "text", "where"] if msg["type"] == "infill" else ["id"]))
        bad = {k: v for k, v in msg.items() if k != field and not (field == "where" and k in ("cursor", "range"))}
        if msg["type"] == "cancel" and field == "id" and draw(st.booleans()):
            bad["id"] = draw(st.sampled_from(OUT_OF_RANGE["id"]))
        return Frame("out_of_range", dumps(bad), code=ErrorCode.BAD_REQUEST, request_id=expected_id(msg, field))
    field = draw(st.sampled_from(sorted(OUT_OF_RANGE)))
    value = draw(st.sampled_from(OUT_OF_RANGE[field]))
    bad = {**msg, field: value}
    if field == "range":  # a cursor and a range together is wrong too; keep the range alone
        bad.pop("cursor", None)
    if field == "cursor":
        bad.pop("range", None)
    return Frame("out_of_range", dumps(bad), code=ErrorCode.BAD_REQUEST, request_id=expected_id(msg, field))


@st.composite
def unknown(draw) -> Frame:
    msg = draw(valid_messages())
    if draw(st.booleans()):
        kind_ = draw(st.text(max_size=12).filter(lambda t: t not in FIELDS))
        bad = {**msg, "type": kind_}
        if draw(st.booleans()):  # an id of any shape: only a well-formed one comes back in the error
            bad["id"] = draw(st.sampled_from(OUT_OF_RANGE["id"]) | json_values)
        rid = bad.get("id") if isinstance(bad.get("id"), str) and 0 < len(bad["id"]) <= MAX_ID_CHARS else None
        return Frame("unknown", dumps(bad), code=ErrorCode.BAD_REQUEST, request_id=rid)
    key = draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in FIELDS[msg["type"]]))
    return Frame("unknown", dumps({**msg, key: draw(json_values)}), code=ErrorCode.BAD_REQUEST,
                 request_id=msg.get("id"))


LITERALS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400", "-0.0", "1" * 4300, "9" * 4301,
            "1" * 20_000, "-" + "7" * 5000, "123456789012345678901234567890.5", "1E+2", "0.1e1"]


@st.composite
def literal(draw) -> Frame:
    """A JSON number literal Python may parse to inf, nan, a huge int, or refuse (over 4300 digits)."""
    msg = draw(valid_messages())
    field = draw(st.sampled_from(sorted(FIELDS[msg["type"]])))
    marker = "\u2603placeholder\u2603"
    text = json.dumps({**msg, field: marker}, ensure_ascii=False)
    return Frame("literal", text.replace(json.dumps(marker, ensure_ascii=False), draw(st.sampled_from(LITERALS))))


lone_surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)


@st.composite
def surrogate(draw) -> Frame:
    """An unpaired surrogate (a `\\udXXX` escape on the wire) inside one string value or field name."""
    msg = draw(valid_messages())
    s = draw(lone_surrogates)
    where = draw(st.sampled_from([k for k, v in msg.items() if isinstance(v, str)] + ["<key>"]))
    if where == "<key>":
        bad = {**msg, "x" + s: 1}
    else:
        value = msg[where]
        at = draw(st.integers(0, len(value)))
        bad = {**msg, where: value[:at] + s + value[at:]}
    return Frame("surrogate", dumps(bad), code=ErrorCode.BAD_REQUEST, request_id=None)


@st.composite
def nested(draw) -> Frame:
    depth = draw(st.sampled_from([MAX_DEPTH, 64, 900, 1000, 5000, 50_000, 200_000]))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    closed = draw(st.booleans())
    value = opener * depth + ("1" + closer * depth if closed else "")
    if draw(st.booleans()):
        return Frame("nested", value, code=ErrorCode.BAD_REQUEST)
    msg = draw(valid_messages())
    field = draw(st.sampled_from(sorted(FIELDS[msg["type"]])))
    marker = "\u2603placeholder\u2603"
    text = json.dumps({**msg, field: marker}, ensure_ascii=False)
    # refused as a whole whatever the field (and wherever the recursion limit of the process falls): no id
    return Frame("nested", text.replace(json.dumps(marker, ensure_ascii=False), value), code=ErrorCode.BAD_REQUEST)


@st.composite
def garbage(draw) -> Frame:
    how = draw(st.sampled_from(["text", "bytes", "bytes_as_text", "cut", "splice", "json"]))
    if how == "text":
        return Frame("garbage", draw(st.text(st.characters(codec="utf-8"), max_size=200)))
    if how in ("bytes", "bytes_as_text"):
        return Frame("garbage", draw(st.binary(max_size=200)), binary=how == "bytes")
    if how == "json":  # any JSON value at all, object or not
        return Frame("garbage", json.dumps(draw(json_values)))
    text = dumps(draw(valid_messages()))
    at = draw(st.integers(0, len(text)))
    if how == "cut":
        return Frame("garbage", text[:at])
    junk = draw(st.text(st.sampled_from('{}[]",:\\0123456789.eE+-truefalsenul \t\n'), min_size=1, max_size=5))
    return Frame("garbage", text[:at] + junk + text[at + draw(st.integers(0, 3)):])


CATEGORIES = {"wrong_type": wrong_type, "out_of_range": out_of_range, "unknown": unknown, "literal": literal,
              "surrogate": surrogate, "nested": nested, "garbage": garbage}
any_frame = st.one_of([strategy() for strategy in CATEGORIES.values()])


# -- the verdict ------------------------------------------------------------------------------------------------
def verdict(frame: Frame) -> Verdict:
    """What `parse` makes of the frame, checked against what the protocol promises:

    - parse raises nothing but ProtocolError, with a code the protocol defines for bad frames;
    - the error can be sent back (valid JSON, encodable as UTF-8) and carries the frame's id only when that id
      is a well-formed request id;
    - a frame it accepts is a client message that serializes back to itself;
    - the frame's category, when it says which error is due, gets exactly that error.
    """
    data = frame.data
    try:
        msg = parse(data)
    except ProtocolError as exc:
        assert exc.code in (ErrorCode.BAD_REQUEST, ErrorCode.TOO_LARGE), exc.code
        wire = exc.to_message().to_json()
        assert json.loads(wire.encode("utf-8")) == {"type": "error", "id": exc.request_id, "code": exc.code,
                                                    "message": exc.message}
        if exc.request_id is not None:
            assert 0 < len(exc.request_id) <= MAX_ID_CHARS and json.loads(data)["id"] == exc.request_id
        if frame.code is not None:
            assert (exc.code, exc.request_id) == (frame.code, frame.request_id), (exc.code, exc.message)
        return Verdict("error", exc.code, exc.request_id)
    assert frame.code is None, f"{frame.category} frame accepted: {msg!r}"[:500]
    wire = msg.to_json()
    wire.encode("utf-8")
    assert parse(wire) == msg
    if msg.TYPE == "infill":
        assert msg.quality in NAMES and (msg.cursor is None) != (msg.range is None)
    return Verdict(msg.TYPE, request_id=getattr(msg, "id", None) if not isinstance(msg, CancelMessage) else None,
                   message=msg)
