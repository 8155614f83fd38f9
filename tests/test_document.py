import pytest

from infill.document import LineIndex, format_range, parse_position, parse_range
from infill.errors import BadInputError


def test_offsets_round_trip_across_line_endings():
    text = "ab\r\ncd\ne\rf"
    idx = LineIndex.of(text)
    assert idx.line_count == 4
    assert [idx.line_text(i) for i in range(4)] == ["ab", "cd", "e", "f"]
    for off in range(len(text) + 1):
        line, col = idx.position(off)
        if col <= idx.line_end(line) - idx.starts[line]:
            assert idx.offset(line, col) == off


def test_cli_positions_are_one_based_characters():
    text = "héllo\nwörld\n"
    idx = LineIndex.of(text)
    assert parse_position("2:3", idx) == text.index("rld")
    assert parse_range("1:2-2:1", idx) == (1, text.index("w"))
    assert format_range(idx, 1, text.index("w")) == "1:2-2:1"
    assert parse_position("3:1", idx) == len(text)  # the empty last line


@pytest.mark.parametrize("spec", ["0:1", "1:0", "9:1", "1:99", "x", "1:1-", "2:1-1:1"])
def test_bad_positions_are_refused(spec):
    idx = LineIndex.of("abc\ndef\n")
    with pytest.raises(BadInputError):
        parse_range(spec, idx) if "-" in spec else parse_position(spec, idx)


def test_utf16_columns_count_surrogate_pairs_twice():
    text = "a😀b = 1\n"
    idx = LineIndex.of(text)
    assert idx.offset_utf16(0, 3) == text.index("b")  # 'a' 1 unit, the emoji 2 units
    assert idx.position_utf16(text.index("b")) == (0, 3)
    assert idx.offset_utf16(5, 0) == len(text)  # past the end clamps
