"""Editor-facing post-processing (server/postprocess.py): one test group per filter, `║` marks the cursor."""

from __future__ import annotations

import pytest

from infill.textfix import drop_duplicate_suffix_lines
from server.postprocess import (
    Edit,
    Formatting,
    Surroundings,
    convert_indentation,
    detect_formatting,
    indent_continuations,
    inline_edit,
    is_blank,
    keep_one_line,
    line_ending,
    match_line_endings,
    range_edit,
    strip_first_line_indent,
    swallowed_closers,
    trim_added_trailing_newlines,
    trim_line_suffix_overlap,
    trim_trailing_whitespace,
    unmatched_closers,
)

CURSOR = "║"


def at(marked: str) -> tuple[str, int]:
    """Document text and cursor offset from a `║`-marked string."""
    assert marked.count(CURSOR) == 1
    return marked.replace(CURSOR, ""), marked.index(CURSOR)


def apply(text: str, edit: Edit | None) -> str:
    assert edit is not None, "expected an item"
    return text[: edit.start] + edit.text + text[edit.end :]


def complete(marked: str, middle: str, fmt: Formatting = Formatting()) -> str:
    """The document after accepting the item for `middle` at the cursor."""
    text, cursor = at(marked)
    return apply(text, inline_edit(middle, text, cursor, fmt))


# -- surroundings --------------------------------------------------------------------------------------------
def test_surroundings_split_the_cursor_line_and_look_ahead_over_any_line_break():
    text, cursor = at("a\r\nb = f(║x)\rnext\r\nlast")
    s = Surroundings.at(text, cursor)
    assert (s.line_prefix, s.line_suffix, s.next_lines, s.eol) == ("b = f(", "x)", ("next", "last"), "\r\n")


def test_surroundings_at_the_end_of_the_document():
    text, cursor = at("x = ║")
    assert Surroundings.at(text, cursor) == Surroundings("x = ", "", (), "\n")


# -- blank items -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("middle", ["", " ", "\n", "\t\n  \n"])
def test_blank_middles_give_no_item(middle):
    assert is_blank(middle)
    text, cursor = at("x = ║\n")
    assert inline_edit(middle, text, cursor) is None


def test_an_item_that_only_rewrites_the_swallowed_closer_is_dropped():
    text, cursor = at("f(║)")
    assert inline_edit(")", text, cursor) is None


# -- first line indentation -----------------------------------------------------------------------------------
def test_cursor_at_indentation_does_not_indent_the_first_line_again():
    assert strip_first_line_indent("    return x\n    y", "    ") == "return x\n    y"
    assert complete("def f():\n    ║", "    return 1") == "def f():\n    return 1"


def test_first_line_keeps_its_indent_at_column_zero_or_after_code():
    assert strip_first_line_indent("    return x", "") == "    return x"
    assert strip_first_line_indent("  + 1", "x =") == "  + 1"


# -- continuation lines ----------------------------------------------------------------------------------------
def test_lines_that_continue_the_cursor_line_are_indented_under_it():
    assert indent_continuations("a,\nb)", "    foo(") == "a,\n    b)"
    assert complete("    foo(║", "a,\nb)") == "    foo(a,\n    b)"


def test_continuation_lines_already_deeper_stay_as_they_are():
    assert indent_continuations("a,\n        b)", "    foo(") == "a,\n        b)"


def test_tab_indented_lines_continue_with_tabs():
    assert indent_continuations("a,\nb)", "\tfoo(") == "a,\n\tb)"


def test_a_middle_that_starts_new_lines_may_dedent():
    middle = "\n\ndef g():\n    pass"
    assert indent_continuations(middle, "    return x") == middle


def test_blank_continuation_lines_are_not_padded():
    assert indent_continuations("a,\n\nb)", "  f(") == "a,\n\n  b)"


# -- tabs vs spaces ----------------------------------------------------------------------------------------------
def test_client_wants_spaces():
    fmt = Formatting(tab_size=2, insert_spaces=True)
    assert convert_indentation("if x:\n\ty\n\t\tz", fmt) == "if x:\n  y\n    z"


def test_client_wants_tabs():
    fmt = Formatting(tab_size=4, insert_spaces=False)
    assert convert_indentation("{\n    a;\n      b;\n}", fmt) == "{\n\ta;\n\t  b;\n}"


def test_first_line_converted_only_at_the_start_of_a_line():
    fmt = Formatting(tab_size=4, insert_spaces=True)
    assert convert_indentation("\tx", fmt) == "\tx"
    assert convert_indentation("\tx", fmt, first_line_at_start=True) == "    x"


def test_unknown_style_is_left_alone():
    assert convert_indentation("a\n\tb", Formatting()) == "a\n\tb"


def test_client_formatting_applies_end_to_end():
    fmt = Formatting(tab_size=4, insert_spaces=False)
    assert complete("void f() {║\n}", "\n    return;", fmt) == "void f() {\n\treturn;\n}"


def test_style_is_detected_from_indented_lines_only():
    assert detect_formatting("def f():\n\treturn 1\n") == Formatting(4, False)
    assert detect_formatting("def f():\n  return 1\n") == Formatting(4, True)
    assert detect_formatting("x = 1\ny = 2\n") is None


# -- lines the document already has below the cursor ------------------------------------------------------------
def test_trailing_lines_repeating_the_next_lines_are_dropped():
    assert drop_duplicate_suffix_lines("\n    y = 2\n    return y", ("    return y", ""), True) == "\n    y = 2"
    text = "def f():\n    x = 1║\n    return y\n"
    assert complete(text, "\n    y = 2\n    return y\n") == "def f():\n    x = 1\n    y = 2\n    return y\n"


def test_a_whole_item_repeating_the_next_line_gives_nothing():
    text, cursor = at("def f():\n    ║\n    return y\n")
    assert inline_edit("return y", text, cursor) is None


# -- auto-closed brackets: the range swallows them ---------------------------------------------------------------
@pytest.mark.parametrize(("middle", "closers"), [
    ("a, b)", ")"), ("x]", "]"), ("1, 2])", "])"), ("hi\")", "\")"), ("a, \"b\")", ")"),
    ("f(a)", ""), ("a", ""), ("'", "'"),
])
def test_unmatched_closers(middle, closers):
    assert unmatched_closers(middle) == closers


def test_the_item_range_covers_the_closer_the_middle_writes_itself():
    text, cursor = at("print(║)")
    edit = inline_edit("x)", text, cursor)
    assert edit == Edit("x)", cursor, cursor + 1)
    assert apply(text, edit) == "print(x)"


def test_a_middle_that_leaves_the_closer_to_the_editor_inserts_at_the_cursor():
    text, cursor = at("print(║)")
    assert inline_edit("x", text, cursor) == Edit("x", cursor, cursor)


def test_code_after_the_closer_is_kept():
    assert complete("s = name(║)", "x).strip()") == "s = name(x).strip()"


def test_nested_and_quoted_closers():
    assert swallowed_closers("1, 2])", "])") == 2
    assert swallowed_closers("2]", "])") == 1
    assert complete('print("║")', 'hi")') == 'print("hi")'


def test_closers_that_do_not_match_are_not_swallowed():
    assert swallowed_closers("a)", "]") == 0


def test_multi_line_middle_closing_the_auto_closed_bracket():
    assert complete("call(║)", "\n    a,\n    b,\n)") == "call(\n    a,\n    b,\n)"


# -- the rest of the cursor line ------------------------------------------------------------------------------
def test_a_middle_ending_with_the_rest_of_the_line_is_cut_before_it():
    assert trim_line_suffix_overlap("y + foo()", "foo()") == "y + "
    assert complete("x = ║foo()", "y + foo()") == "x = y + foo()"


def test_rest_of_line_overlap_after_a_swallowed_closer():
    assert complete("if ok(║):", "x):") == "if ok(x):"


def test_a_middle_that_is_only_the_rest_of_the_line_gives_nothing():
    text, cursor = at("x = ║foo()\n")
    assert inline_edit("foo()\n", text, cursor) is None


def test_partial_overlap_is_not_cut():
    assert trim_line_suffix_overlap("y + fo", "foo()") == "y + fo"


def test_no_trailing_whitespace_is_left_at_the_end_of_a_line():
    assert complete("def f():\n    ║\n", "return ") == "def f():\n    return\n"  # issue 17: `return ` accepted
    assert complete("x = ║\n", "f(a, \n  b)") == "x = f(a,\n  b)\n"
    assert complete("x = ║y\n", "a + ") == "x = a + y\n"  # code follows on the line: the space stays
    assert trim_trailing_whitespace("a \t\nb ", "") == "a\nb"


# -- line endings -------------------------------------------------------------------------------------------
def test_new_lines_take_the_document_line_ending():
    assert line_ending("a\r\nb\n") == "\r\n"
    assert match_line_endings("a\nb\r\nc", "\r\n") == "a\r\nb\r\nc"
    assert complete("def f():\r\n    x = 1║\r\n", "\n    y = 2") == "def f():\r\n    x = 1\r\n    y = 2\r\n"


# -- ranges ---------------------------------------------------------------------------------------------------
def test_a_range_that_did_not_end_with_a_line_break_does_not_gain_one():
    assert trim_added_trailing_newlines("return 2\n\n", "return 1") == "return 2"
    assert trim_added_trailing_newlines("x\n", "y\n") == "x\n"


def test_range_edit_replaces_exactly_the_range():
    text = "def f():\n    return 1\n"
    start, end = text.index("return"), text.index("1") + 1
    edit = range_edit("return 2\n", text, start, end)
    assert edit == Edit("return 2", start, end)


def test_range_edit_that_changes_nothing_or_only_deletes_is_dropped():
    text = "x = 1\n"
    assert range_edit("x = 1", text, 0, 5) is None
    assert range_edit("  ", text, 0, 5) is None


def test_range_edit_in_the_client_style():
    text = "if x:\n    a\n    b\n"
    edit = range_edit("if y:\n\ta\n\tb", text, 0, len(text) - 1, Formatting(tab_size=4, insert_spaces=True))
    assert edit is not None and edit.text == "if y:\n    a\n    b"


def test_a_selection_within_one_line_is_regenerated_as_one_line():
    assert keep_one_line("a - b\n    return c", "a + b") == "a - b"
    assert keep_one_line("\n    a - b\n", "a + b") == "a - b"  # the model started a new line first
    assert keep_one_line("x = 1\ny = 2", "x = 0\n") == "x = 1\ny = 2"  # lines selected: lines back
    text = "total = a + b\n"
    assert range_edit("a * b\nprint(total)", text, 8, 13) == Edit("a * b", 8, 13)
