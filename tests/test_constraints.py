import torch

from infill.constraints import (
    ConstraintConfig,
    ban_processor,
    check_splice,
    detect_indent_unit,
    fit_first_line,
    keep_line_break,
    middle_ids,
    reindent,
    trim_overlap,
)
from infill.hole import Hole, HoleKind
from infill.prompt import SpecialIds

IDS = SpecialIds(pad=0, eos=(1,), bos=2)
CFG = ConstraintConfig()


def hole(kind=HoleKind.STATEMENT, indent="    ") -> Hole:
    return Hole(0, 0, kind, indent, "", (8,), "python", "tree-sitter", True)


def test_middle_is_cut_at_its_end_token():
    assert middle_ids([40, 41, 1, 0, 50], 5, IDS, seam=False) == ([40, 41], True)
    assert middle_ids([40, 41, 42], 3, IDS, seam=False) == ([40, 41, 42], False)  # ran out of slots
    assert middle_ids([40, 1, 41, 70, 0], 3, IDS, seam=True) == ([40, 41], True)  # seam: exact length


def test_banned_ids_never_win_in_free_slots():
    logits = torch.zeros(1, 3, 10)
    logits[0, :, 4] = 100.0
    free = torch.tensor([[True, False, True]])
    out = ban_processor([4], free)(logits, 0, torch.tensor([0]))
    assert out[0, 0].argmax() != 4 and out[0, 2].argmax() != 4 and out[0, 1].argmax() == 4


def test_overlap_with_the_suffix_is_offered_trimmed():
    assert trim_overlap("x + 1)", ")\n", CFG) == ["x + 1"]
    assert trim_overlap("a = 1\n    return a\n", "    return a\n\nfoo()", CFG) == ["a = 1\n"]
    assert trim_overlap("value", "e + 2", CFG) == []  # one letter is no overlap worth trimming


def test_indent_unit_detection():
    assert detect_indent_unit("def f():\n\tif x:\n\t\ty\n") == "\t"
    assert detect_indent_unit("def f():\n  if x:\n    y\n") == "  "
    assert detect_indent_unit("x = 1\n") == "    "


def test_new_lines_take_the_hole_indentation():
    out = reindent("x = 1\ny = 2\nif y:\n    z = 3", hole(), "    ")
    assert out == "x = 1\n    y = 2\n    if y:\n        z = 3"
    assert reindent("x = 1\n        y = 2", hole(), "    ") == "x = 1\n        y = 2"  # deeper stays
    assert reindent("a\n    b", hole(indent="\t"), "\t") == "a\n\tb"


def test_splice_check_flags_only_errors_the_middle_adds():
    text = "def f(x):\n    return \n\ndef g(:\n    pass\n"  # g is already broken
    at = text.index("return ") + 7
    assert check_splice(text, at, at, "x + 1", "python").ok
    bad = check_splice(text, at, at, "x + (1", "python")
    assert not bad.ok and bad.added >= 1 and bad.first_error is not None
    assert check_splice("any text", 0, 0, "((", None).ok  # no grammar: nothing to check


def test_a_whole_line_range_keeps_its_line_break():
    assert keep_line_break("y = 2", "x = 1\n") == "y = 2\n"
    assert keep_line_break("y = 2", "x = 1\r\n") == "y = 2\r\n"
    assert keep_line_break("y = 2\n", "x = 1\n") == "y = 2\n"
    assert keep_line_break("y = 2", "x = 1") == "y = 2"
    assert keep_line_break("", "x = 1\n") == ""  # deleting the line stays a deletion


def test_a_middle_after_the_indentation_stays_on_the_indentation_grid():
    assert fit_first_line(" total = 1", "    ", "    ") == "total = 1"  # five spaces would be off the grid
    assert fit_first_line("    total = 1", "    ", "    ") == "    total = 1"  # eight: a deeper block, kept
    assert fit_first_line(" + 1", "x = a", "    ") == " + 1"  # not at the indentation: untouched
    assert fit_first_line(" y", "", "    ") == " y"  # column 0: nothing to fit
