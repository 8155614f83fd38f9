"""`server.protocol.parse` under fuzzing: thousands of frames, pure and fast (the daemon's copy of this is in
test_daemon_fuzz.py). Every frame either parses to a client message that serializes back to itself, or raises
a ProtocolError whose reply can be sent; categories with a defined answer get exactly that answer.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.protocol import MAX_MESSAGE_BYTES, MAX_TEXT_CHARS, ErrorCode, InfillMessage, ProtocolError, parse

from .conftest import examples
from .frames import CATEGORIES, any_frame, valid_messages, verdict


@examples(1500)
@given(frame=any_frame)
def test_parse_answers_every_frame_with_a_message_or_a_protocol_error(frame, figures):
    verdict(frame)
    figures.count("parse_fuzz", frame.category)
    figures.count("parse_fuzz", "inputs")


@examples(210)
@given(data=st.data(), category=st.sampled_from(sorted(CATEGORIES)))
def test_parse_every_category_gets_its_answer(data, category, figures):
    """Each category drawn on purpose (the mix above may favour some)."""
    frame = data.draw(CATEGORIES[category]())
    verdict(frame)
    figures.count("parse_fuzz", "inputs")


@examples(200)
@given(msg=valid_messages())
def test_valid_messages_round_trip(msg, figures):
    parsed = parse(json.dumps(msg))
    assert parse(parsed.to_json()) == parsed and parse(parsed.to_json().encode()) == parsed
    figures.count("parse_fuzz", "inputs")


def test_oversized_frames_are_too_large_before_any_decoding(figures):
    big = '{"type": "status", "pad": "' + "x" * MAX_MESSAGE_BYTES + '"}'
    for frame in (big, big.encode()):
        with pytest.raises(ProtocolError) as err:
            parse(frame)
        assert err.value.code == ErrorCode.TOO_LARGE and err.value.request_id is None
    text = "é" * (MAX_TEXT_CHARS + 1)  # over the document limit, under the byte limit
    with pytest.raises(ProtocolError) as err:
        parse(InfillMessage(id="big", text=text, cursor=0).to_json())
    assert (err.value.code, err.value.request_id) == (ErrorCode.TOO_LARGE, "big")
    figures.count("parse_fuzz", "inputs", 3)
    figures.count("parse_fuzz", "oversized", 3)
