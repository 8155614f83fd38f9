"""The text fixes shared by the engine and the language server (infill/textfix.py)."""

import subprocess
import sys

from conftest import ROOT

from infill.constraints import ConstraintConfig
from infill.hole import Hole, HoleKind
from infill.textfix import (
    detect_indent_unit,
    drop_duplicate_suffix_lines,
    fit_first_line,
    keep_line_break,
    no_added_blank_line,
    reindent,
    shift_continuations,
    trim_overlap,
)

MIN_OVERLAP = ConstraintConfig().min_overlap_chars


def hole(kind=HoleKind.STATEMENT, indent="    ") -> Hole:
    return Hole(0, 0, kind, indent, "", (8,), "python", "tree-sitter", True)


def test_overlap_with_the_suffix_is_offered_trimmed():
    assert trim_overlap("x + 1)", ")\n", MIN_OVERLAP) == ["x + 1"]
    assert trim_overlap("a = 1\n    return a\n", "    return a\n\nfoo()", MIN_OVERLAP) == ["a = 1\n"]
    assert trim_overlap("value", "e + 2", MIN_OVERLAP) == []  # one letter is no overlap worth trimming


def test_indent_unit_detection():
    assert detect_indent_unit("def f():\n\tif x:\n\t\ty\n") == "\t"
    assert detect_indent_unit("def f():\n  if x:\n    y\n") == "  "
    assert detect_indent_unit("x = 1\n") == "    "


def test_new_lines_take_the_hole_indentation():
    out = reindent("x = 1\ny = 2\nif y:\n    z = 3", hole(), "    ")
    assert out == "x = 1\n    y = 2\n    if y:\n        z = 3"
    assert reindent("x = 1\n        y = 2", hole(), "    ") == "x = 1\n        y = 2"  # deeper stays
    assert reindent("a\n    b", hole(indent="\t"), "\t") == "a\n\tb"


def test_a_whole_line_range_keeps_its_line_break():
    assert keep_line_break("y = 2", "x = 1\n") == "y = 2\n"
    assert keep_line_break("y = 2", "x = 1\r\n") == "y = 2\r\n"
    assert keep_line_break("y = 2\n", "x = 1\n") == "y = 2\n"
    assert keep_line_break("y = 2", "x = 1") == "y = 2"
    assert keep_line_break("", "x = 1\n") == ""  # deleting the line stays a deletion


def test_a_middle_where_the_line_already_ends_adds_no_blank_line():
    assert no_added_blank_line("x + 1\n", "", "\n\ndef g(): ...") == "x + 1"  # `return |` at a line's end
    assert no_added_blank_line("x + 1\r\n\r\n", "", "\r\n") == "x + 1"
    assert no_added_blank_line("x + 1\n", "", "") == "x + 1"  # the end of the file
    assert no_added_blank_line("\n", "", "\n") == ""  # only a line break: no suggestion
    assert no_added_blank_line("x = 1\n", "", "foo()\n") == "x = 1\n"  # `|foo()`: the break separates
    assert no_added_blank_line("y = 2\n", "x = 1\n", "\n") == "y = 2\n"  # a whole-line range keeps its own


def test_a_middle_after_the_indentation_stays_on_the_indentation_grid():
    assert fit_first_line(" total = 1", "    ", "    ") == "total = 1"  # five spaces would be off the grid
    assert fit_first_line("    total = 1", "    ", "    ") == "    total = 1"  # eight: a deeper block, kept
    assert fit_first_line(" + 1", "x = a", "    ") == " + 1"  # not at the indentation: untouched
    assert fit_first_line(" y", "", "    ") == " y"  # column 0: nothing to fit


def test_a_first_line_that_continues_the_cursor_line_is_not_compared():
    assert drop_duplicate_suffix_lines("return y", ("return y",), continues_line=True) == "return y"


def test_blank_lines_below_are_skipped_when_comparing():
    assert drop_duplicate_suffix_lines("a\n}\n", ("", "}"), True) == "a"


def test_continuation_lines_shift_as_one_and_restyle_on_request():
    assert shift_continuations("a(\nb,\n    c)", 4, tabs=False) == "a(\n    b,\n        c)"
    assert shift_continuations("a(\n        b)", 4, tabs=False) == "a(\n        b)"  # deep enough: untouched
    assert shift_continuations("a(\n        b)", 4, tabs=True, restyle=True) == "a(\n\t\tb)"
    assert shift_continuations("a(\n\n", 4, tabs=False) == "a(\n\n"  # blank lines are not padded


def test_text_fixes_load_without_torch_or_tree_sitter():
    code = ("import sys, infill.textfix, server.postprocess; "
            "assert not {'torch', 'tree_sitter'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
