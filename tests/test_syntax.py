"""The splice checker (infill/syntax.py): does a middle leave a file that compiles?

Fixtures mark the hole with `║` (a cursor) or `├…┤` (a range). Each case of `TOLERATED` is a middle that
tree-sitter alone let through (the checker before issue 15 said ok) and that the language's compiler rejects.
"""

import pytest

from infill.syntax import check_splice, hole_window, python_compile_error


def hole(fixture: str) -> tuple[str, int, int]:
    """(text, start, end) of a fixture with `║` or `├…┤`."""
    if "║" in fixture:
        at = fixture.index("║")
        return fixture.replace("║", ""), at, at
    start = fixture.index("├")
    end = fixture.index("┤") - 1
    return fixture.replace("├", "").replace("┤", ""), start, end


def verdict(language: str, fixture: str, middle: str):
    text, start, end = hole(fixture)
    return check_splice(text, start, end, middle, language)


# (language, fixture, a middle the compiler rejects, a middle it takes)
TOLERATED = {
    "python: a deeper line after return (IndentationError)": (
        "python", "def f(d, remove):\n    if d:\n        ║\n    return remove\n",
        "return d\n\n            return remove\n  \n", "return d\n"),
    "python: return outside a function": ("python", "x = 1\n║\n", "return x\n", "print(x)\n"),
    "python: the error after the hole was the hole's": (
        "python", "def f(a):\n    n = ║\n    return n\n", "a +", "a + 1"),
    "javascript: the error after the hole was the hole's": (
        "javascript", "function f(a) {\n  const n = ║\n  return n;\n}\n", "a +", "a + 1;"),
    "typescript": ("typescript", "function f(a: number): number {\n  const n = ║\n  return n;\n}\n", "a +", "a + 1;"),
    "tsx": ("tsx", "function f(a: number): number {\n  const n = ║\n  return n;\n}\n", "a +", "a + 1;"),
    "lua": ("lua", "local function f(a)\n  local n = ║\n  return n\nend\n", "a +", "a + 1"),
    "go: a statement outside any function": (
        "go", "package main\n\nfunc f() int {\n\treturn 1\n}\n║\n", "x := f()\n", "var x = f()\n"),
    "rust: let outside any function": ("rust", "fn f() -> i32 {\n    1\n}\n║\n", "let y = f();\n", "static Y: i32 = 2;\n"),
    "java: a statement outside any class": (
        "java", "class A {\n    int f() { return 1; }\n}\n║\n", "int y = new A().f();\n", "class B {}\n"),
    "c: return outside any function": ("c", "int f(void) {\n    return 1;\n}\n║\n", "return 2;\n", "int g(void);\n"),
    "cpp: if outside any function": ("cpp", "int f() {\n    return 1;\n}\n║\n", "if (f()) { f(); }\n", "int g();\n"),
}


@pytest.mark.parametrize("case", list(TOLERATED))
def test_the_checker_rejects_what_tree_sitter_tolerated(case):
    language, fixture, bad, good = TOLERATED[case]
    rejected = verdict(language, fixture, bad)
    assert not rejected.ok and rejected.added >= 1 and not rejected.empty
    assert rejected.first_error is not None and 0 <= rejected.first_error <= len(bad)  # repairs aim here
    assert verdict(language, fixture, good).ok


def test_python_verdict_is_the_compilers():
    """Wherever the original compiles, ok means `compile(..., "exec")` takes the spliced file."""
    text, start, end = hole("def f(d):\n    if d:\n├        pass\n┤    return 0\n")
    assert python_compile_error(text) is None
    for middle in ("        return d\n", "        x = d\n        return x\n", "        return d\n\n      y = 1\n",
                   "        return (d\n", "    return d\n", "        return d\n    else:\n        return 1\n"):
        spliced = text[:start] + middle + text[end:]
        assert check_splice(text, start, end, middle, "python").ok == (python_compile_error(spliced) is None)


def test_an_error_elsewhere_does_not_excuse_the_middle():
    """The original does not compile for a reason far from the hole: the top-level statements around the hole are
    compiled on their own, so a bad indent is still caught and a good middle still passes."""
    text, start, end = hole("def f(d):\n    if d:\n        ║\n    return 0\n\n\ndef g(:\n    pass\n")
    assert python_compile_error(text) is not None
    assert check_splice(text, start, end, "return d\n", "python").ok
    assert not check_splice(text, start, end, "return d\n            x = 1\n", "python").ok


def test_an_error_before_the_hole_in_the_same_function_leaves_it_to_tree_sitter():
    """CPython stops at the first error, before the hole: only tree-sitter sees the middle."""
    text, start, end = hole("def f(d):\n    x = 1 2\n    if d:\n        ║\n")
    assert check_splice(text, start, end, "return d\n", "python").ok
    assert not check_splice(text, start, end, "return (d\n", "python").ok


def test_errors_far_from_the_hole_are_not_the_middles():
    text = "int f(void) {\n    return 1 +;\n}\nint g(void) {\n    return ;\n}\n"
    at = text.index("return ;") + 7
    assert check_splice(text, at, at, "2", "c").ok
    assert not check_splice(text, at, at, "2 +", "c").ok


@pytest.mark.parametrize(("language", "fixture", "middle"), [
    ("python", "def f(x):\n    ║\n", ""),
    ("python", "def f(x):\n    ║\n", "  \n\t\n"),
    ("python", "def f(x):\n    ║\n", "# TODO: fill in\n"),
    ("python", "current_page += ║\nprint(current_page)\n", ""),
    ("python", "def f(x):\n├    return x\n┤", "    # gone\n"),  # a range: replacing code with a comment deletes it
    ("go", "package main\n\nfunc f() {\n\t║\n}\n", "// later\n"),
    ("c", "int f(void) {\n    ║\n}\n", "/* nothing */"),
    ("rust", "fn f() {\n    ║\n}\n", "// nothing\n    /* more */\n"),
    ("lua", "local x = 1\n║\n", "-- nothing\n"),
    (None, "notes\n║\n", " \n"),
])
def test_a_middle_without_code_is_empty_never_ok(language, fixture, middle):
    v = verdict(language, fixture, middle)
    assert v.empty and not v.ok and v.first_error is None


def test_text_inside_an_existing_comment_is_a_suggestion():
    """At a cursor inside a comment, comment text is what the user is typing: not empty."""
    v = verdict("python", "def f(x):\n    return x  # the ║\n", "identity")
    assert v.ok and not v.empty


def test_hole_window_reaches_the_next_code_line():
    text, start, end = hole("a = ║\n\n  return n\nz\n")
    lo, hi = hole_window(text, start, end)
    assert text[lo:hi] == "a = \n\n  return n"


def test_no_grammar_checks_only_for_code():
    assert check_splice("any text", 0, 0, "((", None).ok  # no grammar: nothing else to check
    assert not check_splice("any text", 0, 0, "", None).ok
