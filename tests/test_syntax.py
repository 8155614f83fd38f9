"""tree-sitter checks (infill/syntax.py): does a splice add syntax errors the document did not have?"""

from infill.syntax import check_splice


def test_splice_check_flags_only_errors_the_middle_adds():
    text = "def f(x):\n    return \n\ndef g(:\n    pass\n"  # g is already broken
    at = text.index("return ") + 7
    assert check_splice(text, at, at, "x + 1", "python").ok
    bad = check_splice(text, at, at, "x + (1", "python")
    assert not bad.ok and bad.added >= 1 and bad.first_error is not None
    assert check_splice("any text", 0, 0, "((", None).ok  # no grammar: nothing to check
