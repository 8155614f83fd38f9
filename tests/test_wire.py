"""The one conversion between the daemon's wire messages and the engine's types (server/wire.py)."""

from __future__ import annotations

import dataclasses

import pytest

from infill.errors import (
    BadInputError,
    CancelledError,
    DeadlineExceededError,
    FileChangedError,
    ModelLoadError,
)
from infill.request import Candidate, InfillRequest, InfillResult
from server import wire
from server.protocol import ErrorCode, FillError, InfillMessage, ResultMessage, Unavailable


def test_a_message_becomes_the_engine_request_with_its_deadline_counted_from_arrival():
    msg = InfillMessage(id="7", text="x = \n", cursor=4, path="a.py", language="python", quality="fast",
                        max_steps=0, seed=3, deadline_ms=1500, lengths=(8, 16))
    req = wire.request(msg, received=100.0)
    assert req == InfillRequest(text="x = \n", cursor=4, path="a.py", language="python", quality="fast",
                                max_steps=None, seed=3, deadline=101.5, lengths=(8, 16))
    assert wire.request(InfillMessage(id="8", text="ab", range=(0, 1)), received=5.0).span == (0, 1)
    assert wire.request(InfillMessage(id="9", text="ab", cursor=0), received=5.0).deadline is None


RESULT = InfillResult(text="1", start=4, end=4, kind="line", syntax_ok=True, steps=3, forward_passes=4,
                      tokens=2, seconds=0.1234567891, model="m", language="python", sizing="tree-sitter",
                      candidates=[Candidate(8, "1", True, -0.5, True), Candidate(16, "1 +", False, -1.0, False)],
                      repaired=True, prompt_tokens=30, reused_prompt_tokens=20)


def test_every_result_field_the_wire_carries_comes_from_the_engine_result():
    msg = wire.result("7", RESULT, queued_seconds=0.5, batch_size=3)
    shared = {f.name for f in dataclasses.fields(ResultMessage)} & {f.name for f in dataclasses.fields(InfillResult)}
    assert shared == {f.name for f in dataclasses.fields(ResultMessage)} - {"id", "queued_seconds", "batch_size"}
    assert all(getattr(msg, name) == getattr(RESULT, name) for name in shared - {"seconds", "candidates"})
    assert msg.candidates == tuple(dataclasses.asdict(c) for c in RESULT.candidates)
    assert (msg.id, msg.seconds, msg.queued_seconds, msg.batch_size) == ("7", 0.123457, 0.5, 3)


def test_the_cli_round_trip_through_a_daemon_gives_the_engine_types_back():
    from server.protocol import parse, parse_server

    req = InfillRequest(text="x = \n", cursor=4, path="a.py", language="python", quality="fast", max_steps=5,
                        seed=3, lengths=(8,), invoked=False)
    msg = parse(wire.message("cli-1", req).to_json())  # what the daemon receives
    assert wire.request(msg, received=0.0) == req
    back = wire.result_of(parse_server(wire.result("cli-1", RESULT).to_json()))
    assert back == dataclasses.replace(RESULT, seconds=0.123457)
    assert isinstance(wire.engine_error(FillError(ErrorCode.BAD_INPUT, "cursor outside")), BadInputError)
    assert type(wire.engine_error(FillError(ErrorCode.MODEL, "boom"))).__name__ == "InfillError"


@pytest.mark.parametrize(("exc", "code", "message"), [
    (CancelledError("request cancelled"), ErrorCode.CANCELLED, "request cancelled"),
    (DeadlineExceededError("too slow"), ErrorCode.DEADLINE, "too slow"),
    (BadInputError("cursor outside"), ErrorCode.BAD_INPUT, "cursor outside"),
    (FileChangedError("changed"), ErrorCode.BAD_INPUT, "changed"),
    (ModelLoadError("gone"), ErrorCode.MODEL, "ModelLoadError: gone"),
    (RuntimeError("CUDA out of memory"), ErrorCode.MODEL, "RuntimeError: CUDA out of memory"),
])
def test_exceptions_map_to_one_error_family(exc, code, message):
    err = wire.error(exc)
    assert isinstance(err, FillError) and (err.code, err.message) == (code, message)


def test_unavailable_is_a_fill_error_with_its_own_code():
    err = Unavailable("no daemon")
    assert isinstance(err, FillError) and err.code == "unavailable" and str(err) == "unavailable: no daemon"


def test_the_cli_uses_a_daemon_only_for_its_model_and_its_protocol(tmp_path):
    from server.protocol import PROTOCOL_VERSION, StatusMessage
    from server.remote import serves

    here = StatusMessage(model=str(tmp_path), extra={"protocol": PROTOCOL_VERSION})
    assert serves(here, str(tmp_path)) and serves(here, str(tmp_path / "." / ""))
    assert not serves(here, "google/other")
    assert not serves(dataclasses.replace(here, extra={"protocol": PROTOCOL_VERSION - 1}), str(tmp_path))
    assert not serves(dataclasses.replace(here, extra={}), str(tmp_path))  # a daemon from before the field
