"""infill.spans: hole kinds, ranges, indentation, closers and candidate lengths; block_at.

Fixtures mark the cursor with `║` and a selected range with `├…┤` (as Tabby's tests do).
"""

from __future__ import annotations

import dataclasses

import pytest

from infill.errors import BadInputError, UnknownLanguageError
from infill.hole import HoleKind
from infill.spans import SizingConfig, block_at, size_hole
from infill.syntax import language_for_path

CURSOR, OPEN, CLOSE = "║", "├", "┤"


def cut(src: str) -> tuple[str, dict]:
    """Remove the markers; return the text and the size_hole keyword (cursor= or span=)."""
    if CURSOR in src:
        at = src.index(CURSOR)
        return src.replace(CURSOR, "", 1), {"cursor": at}
    start, end = src.index(OPEN), src.index(CLOSE) - 1
    return src.replace(OPEN, "", 1).replace(CLOSE, "", 1), {"span": (start, end)}


def hole(src: str, language: str | None, **kw):
    text, where = cut(src)
    return size_hole(text, language, **where, **kw)


def block(src: str, language: str | None) -> str:
    """The text block_at picks for a fixture."""
    text, where = cut(src)
    start, end = where["span"] if "span" in where else (where["cursor"], None)
    lo, hi = block_at(text, language, start, end)
    return text[lo:hi]


# -- kinds, ranges, indentation, closers --------------------------------------------------------------
# (language, fixture, kind, indent, closers, multiline)
CURSOR_CASES = [
    # inside an expression or argument list
    ("python", "x = foo(a, ║)\n", HoleKind.EXPRESSION, "", ")", False),
    ("javascript", "const x = [1, ║];\n", HoleKind.EXPRESSION, "", "]", False),
    ("python", "f([a, ║", HoleKind.EXPRESSION, "", "])", False),
    ("python", 'print("hello ║")\n', HoleKind.EXPRESSION, "", '")', False),
    ("javascript", 'const s = "abc║', HoleKind.EXPRESSION, "", '"', False),
    ("python", 'x = "(" + foo(║\n', HoleKind.EXPRESSION, "", ")", False),  # "(" in a string does not count
    ("java", "class A {\n  void f() {\n    foo(bar(║), 2);\n  }\n}\n", HoleKind.EXPRESSION, "    ", "", False),
    ("go", "package main\n\nfunc f() {\n\tfmt.Println(a, ║\n}\n", HoleKind.EXPRESSION, "\t", ")", False),
    ("rust", "fn main() {\n    let v = vec![1, ║];\n}\n", HoleKind.EXPRESSION, "    ", "]", False),
    ("python", "items = [\n    1,\n    ║\n]\n", HoleKind.EXPRESSION, "    ", "", True),  # own line in brackets
    ("tsx", "const el = <div>{items.map((i) => ║)}</div>;\n", HoleKind.EXPRESSION, "", "", False),
    ("python", "x = a║ + b\n", HoleKind.EXPRESSION, "", "", False),  # code after the cursor
    # rest of the line
    ("python", "def f():\n    x = ║\n", HoleKind.LINE, "    ", "", False),
    ("javascript", "function f() {\n  return ║\n}\n", HoleKind.LINE, "  ", "", False),
    ("lua", "local x = ║\n", HoleKind.LINE, "", "", False),
    ("c", "int main() {\n\tint a = ║\n}\n", HoleKind.LINE, "\t", "", False),
    # a new statement
    ("python", "def f():\n    x = 1\n    ║\n    return x\n", HoleKind.STATEMENT, "    ", "", True),
    ("go", "package main\n\nfunc f() {\n\tx := 1\n\t║\n\treturn x\n}\n", HoleKind.STATEMENT, "\t", "", True),
    ("c", "int main() {\n  int a = 1;\n  ║\n  return a;\n}\n", HoleKind.STATEMENT, "  ", "", True),
    ("cpp", "namespace n {\nstruct S {\n  int x;\n  ║\n};\n}\n", HoleKind.STATEMENT, "  ", "", True),
    ("typescript", "interface A {\n  x: number;\n  ║\n}\n", HoleKind.STATEMENT, "  ", "", True),
    ("python", "def f():\n    ║\n    return 1\n", HoleKind.STATEMENT, "    ", "", True),  # body not empty
    ("python", "def f():\n    x = 1\n║    return x\n", HoleKind.STATEMENT, "    ", "", True),  # before a line
    ("python", 'def f():\n    """Doc."""\n║        y = 2\n', HoleKind.STATEMENT, "    ", "", True),  # opens a block
    ("javascript", "function f() {\n  a();\n║}\n", HoleKind.STATEMENT, "  ", "", True),  # before the `}`
    # an empty block or body
    ("python", "def f(x):\n    ║\n", HoleKind.BLOCK, "    ", "", True),
    ("python", "def f():║", HoleKind.BLOCK, "    ", "", True),  # end of the header line
    ("python", "def g():\n  return 1\n\ndef f():\n║\n", HoleKind.BLOCK, "  ", "", True),  # 2-space file
    ("python", "for x in y:\n║print(x)\n", HoleKind.BLOCK, "    ", "", True),  # the next line is not the body
    ("javascript", "function f() {\n  ║\n}\n", HoleKind.BLOCK, "  ", "", True),
    ("javascript", "function f() {\n  ║", HoleKind.BLOCK, "  ", "}", True),  # nothing closes the body
    ("javascript", "foo(function () {\n  ║\n});\n", HoleKind.BLOCK, "  ", "", True),  # not inside `foo(`
    ("go", "package main\n\nfunc g() {\n\treturn\n}\n\nfunc f() {\n║\n}\n", HoleKind.BLOCK, "\t", "", True),
    ("rust", "fn main() {\n    ║\n}\n", HoleKind.BLOCK, "    ", "", True),
    ("java", "class A {\n    void f() {\n        ║\n    }\n}\n", HoleKind.BLOCK, "        ", "", True),
    ("c", "int main() {\n  if (x) {\n    ║\n  }\n}\n", HoleKind.BLOCK, "    ", "", True),
    ("lua", "function f(a)\n  ║\nend\n", HoleKind.BLOCK, "  ", "", True),
    ("lua", "if x then\n\t║\nend\n", HoleKind.BLOCK, "\t", "", True),
]


@pytest.mark.parametrize(("language", "src", "kind", "indent", "closers", "multiline"), CURSOR_CASES)
def test_cursor_holes(language, src, kind, indent, closers, multiline):
    text, where = cut(src)
    h = size_hole(text, language, **where)
    assert (h.kind, h.indent, h.closers, h.multiline) == (kind, indent, closers, multiline)
    assert (h.start, h.end) == (where["cursor"], where["cursor"])  # an insertion: nothing is replaced
    assert h.language == language and h.sizing == "tree-sitter"


def test_auto_closed_brackets_stay_outside_the_range():
    text, where = cut("x = foo(bar(║))\n")
    h = size_hole(text, "python", **where)
    assert h.closers == "))"
    assert text[h.end :].startswith("))")


def test_brackets_the_suffix_closes_later_are_not_closers():
    assert hole("x = foo(\n    a, ║\n)\n", "python").closers == ""


def test_non_ascii_before_the_cursor_uses_code_points():
    src = 's = "héllo wörld 🎉"\nx = foo(║'
    text, where = cut(src)
    h = size_hole(text, "python", **where)
    assert h.start == h.end == len(text) == where["cursor"]
    assert (h.kind, h.closers) == (HoleKind.EXPRESSION, ")")


def test_non_ascii_inside_a_string_on_the_cursor_line():
    h = hole('msg = f("ünïcode {x} ║")\n', "python")
    assert (h.kind, h.closers) == (HoleKind.EXPRESSION, '")')


def test_non_ascii_on_many_lines_keeps_offsets_and_brackets_straight():
    head = "".join(f"# ligne {i}: café ☕ — 🎉\n" for i in range(50))
    h = hole(head + "x = foo(\n    'é',\n    ║\n", "python")
    assert (h.kind, h.closers, h.multiline, h.indent) == (HoleKind.EXPRESSION, ")", True, "    ")
    assert block(head + "def f():\n    y = 'ü'║\n    return y\n", "python") == "y = 'ü'"


def test_cursor_in_a_docstring_is_inside_a_string():
    h = hole('def f():\n    """Return ║\n    """\n', "python")
    assert (h.kind, h.closers) == (HoleKind.EXPRESSION, "")


# -- ranges -------------------------------------------------------------------------------------------
def test_range_is_taken_as_given():
    src = "def f(a):\n    ├x = compute(a, b)┤\n    return x\n"
    text, where = cut(src)
    h = size_hole(text, "python", **where)
    assert (h.kind, (h.start, h.end), h.indent, h.closers, h.multiline) == (
        HoleKind.RANGE, where["span"], "    ", "", False)


def test_range_inside_brackets_reports_the_closer_after_it():
    h = hole("foo(├a, b┤)\n", "python")
    assert (h.kind, h.closers) == (HoleKind.RANGE, ")")


def test_range_over_lines_is_multiline():
    h = hole("def f():\n    ├a = 1\n    b = 2\n┤    return a\n", "python")
    assert h.multiline and h.kind is HoleKind.RANGE


def test_range_lengths_bracket_the_removed_size():
    removed = "result = [transform(item, scale=2.5) for item in items if item.ok]"
    h = hole(f"def f(items):\n    ├{removed}┤\n    return result\n", "python", count_tokens=len)
    true = len(removed) + 1  # one token per character, plus the end token
    assert h.lengths[0] < true <= h.lengths[-1]


def test_empty_range_is_sized_like_an_insertion():
    src = "def f():\n    x = 1\n    ├┤\n    return x\n"
    h = hole(src, "python")
    text, where = cut(src)
    assert h.lengths == size_hole(text, "python", cursor=where["span"][0]).lengths
    assert h.kind is HoleKind.RANGE


# -- files without a grammar, edge positions, errors ---------------------------------------------------
def test_file_without_grammar_is_sized_by_lines():
    language = language_for_path("notes.txt")
    assert language is None
    h = hole("first line\nsecond (with ║", language)
    assert (h.sizing, h.language, h.kind, h.closers) == ("lines", None, HoleKind.EXPRESSION, ")")
    assert any("sized by lines" in note for note in h.notes)


def test_line_fallback_finds_blocks_by_indentation():
    h = hole("section:\n    ║\n", None)
    assert (h.kind, h.indent, h.sizing) == (HoleKind.BLOCK, "    ", "lines")


@pytest.mark.parametrize("language", ["python", "javascript", "go", "lua", None])
def test_empty_file(language):
    h = size_hole("", language, cursor=0)
    assert (h.start, h.end, h.kind, h.indent, h.closers) == (0, 0, HoleKind.STATEMENT, "", "")
    assert h.lengths and all(1 <= n <= SizingConfig().max_canvas for n in h.lengths)


def test_cursor_at_end_of_file():
    text = "def f(a):\n    return a\n\nx = f(1)\ny = "
    h = size_hole(text, "python", cursor=len(text))
    assert (h.start, h.kind) == (len(text), HoleKind.LINE)


@pytest.mark.parametrize("where", [{"cursor": -1}, {"cursor": 4}, {"span": (2, 1)}, {"span": (0, 9)},
                                   {}, {"cursor": 0, "span": (0, 0)}])
def test_bad_positions(where):
    with pytest.raises(BadInputError):
        size_hole("abc", "python", **where)


def test_unknown_language():
    with pytest.raises(UnknownLanguageError):
        size_hole("x = 1\n", "cobol", cursor=0)


def test_language_aliases_are_normalized():
    assert hole("x = ║\n", "py").language == "python"


# -- candidate lengths ----------------------------------------------------------------------------------
LENGTH_CASES = [src for _, src, *_ in CURSOR_CASES]


@pytest.mark.parametrize("src", LENGTH_CASES)
def test_lengths_are_a_small_ascending_ladder(src):
    language = next(lang for lang, s, *_ in CURSOR_CASES if s == src)
    lengths = hole(src, language).lengths
    assert 1 <= len(lengths) <= 4
    assert list(lengths) == sorted(set(lengths))
    assert all(1 <= n <= 256 for n in lengths)


def test_one_line_is_not_given_a_huge_first_canvas():
    body = "\n".join(f"    value_{i} = compute(value_{i - 1}, {i})" for i in range(1, 9))
    src = f"def f(value_0):\n{body}\n    ║\n    return value_8\n"
    line_tokens = len("    value_3 = compute(value_2, 3)\n") / SizingConfig().chars_per_token
    lengths = hole(src, "python").lengths
    assert lengths[0] <= 2 * line_tokens + 1 < 64
    assert lengths[-1] >= 8 * line_tokens  # and the ladder still reaches a few statements


def test_longer_lines_give_longer_candidates():
    short = "def f():\n" + "    a = 1\n" * 6 + "    ║\n"
    long = "def f():\n" + "    alpha = compute_something(first_argument, second_argument)\n" * 6 + "    ║\n"
    assert hole(short, "python").lengths[0] < hole(long, "python").lengths[0]


def test_rest_of_line_shrinks_as_the_line_fills():
    lines = "".join(f"    total_{i} = scale(values[{i}], factor) + offset\n" for i in range(6))
    early = hole(f"def f():\n{lines}    total = ║\n", "python").lengths
    late = hole(f"def f():\n{lines}    total = scale(values[9], factor) + ║\n", "python").lengths
    assert late[0] < early[0]


def test_count_tokens_calibrates_the_ratio():
    src = "def f():\n" + "    value = compute(a, b)\n" * 4 + "    ║\n"
    per_char = hole(src, "python", count_tokens=len).lengths  # one token per character
    per_word = hole(src, "python", count_tokens=lambda s: len(s.split())).lengths
    assert per_char[0] > per_word[0]


def test_a_large_sibling_stretches_the_largest_candidate():
    big = "    for i in range(10):\n" + "".join(f"        step_{j}(i, data, options)\n" for j in range(40))
    src = f"def f(data, options):\n{big}    ║\n"
    assert hole(src, "python").lengths[-1] == SizingConfig().max_canvas


def test_config_limits_are_respected():
    cfg = SizingConfig(max_canvas=16, max_candidates=2)
    lengths = hole("def f():\n    x = 1\n    ║\n", "python", config=cfg).lengths
    assert len(lengths) <= 2 and lengths[-1] <= 16
    full = hole("def f():\n    x = 1\n    ║\n", "python").lengths
    assert hole("def f():\n    x = 1\n    ║\n", "python", config=SizingConfig(max_candidates=1)).lengths == full[-1:]


def test_config_is_frozen_and_validated():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SizingConfig().max_canvas = 8  # type: ignore[misc]
    with pytest.raises(ValueError):
        SizingConfig(max_candidates=5)
    with pytest.raises(ValueError):
        SizingConfig(min_length=0)


# -- block_at -------------------------------------------------------------------------------------------
PY_FUNC = """def f(x):
    total = 0
    for i in range(x):
        if i % 2:
            total += i{a}
            print(i)
    {b}
    return total
"""


def test_block_at_statement_in_nested_blocks():
    assert block(PY_FUNC.format(a=CURSOR, b=""), "python") == "total += i"


def test_block_at_blank_line_in_a_body_is_the_body():
    got = block(PY_FUNC.format(a="", b=CURSOR), "python")
    assert got.startswith("total = 0\n") and got.endswith("return total")


def test_block_at_header_takes_the_whole_compound_statement():
    src = PY_FUNC.format(a="", b="").replace("    for i", "    f║or i")
    assert block(src, "python") == (
        "for i in range(x):\n        if i % 2:\n            total += i\n            print(i)")


def test_block_at_selection_of_two_statements_is_their_block():
    src = "def f(x):\n    ├y = 1\n    z = 2┤\n    return z\n"
    assert block(src, "python") == "y = 1\n    z = 2\n    return z"


def test_block_at_selection_inside_one_statement():
    assert block("def f(x):\n    y = g(├x┤, 2)\n    return y\n", "python") == "y = g(x, 2)"


def test_block_at_braces():
    src = "function f(a) {\n  if (a) {\n    g(a);\n    ║\n  }\n  return a;\n}\n"
    assert block(src, "javascript") == "if (a) {\n    g(a);\n    \n  }"
    assert block("function f(a) {\n  if (a) {\n    g(a);║\n  }\n}\n", "javascript") == "g(a);"


def test_block_at_go_nested_loop():
    assert block("package main\n\nfunc f() {\n\tfor {\n\t\tx()║\n\t}\n}\n", "go") == "x()"


def test_block_at_non_ascii_offsets():
    src = 's = "héllo 🎉"\ndef f():\n    x = "ü"║\n    return x\n'
    assert block(src, "python") == 'x = "ü"'


def test_block_at_without_grammar_uses_indentation():
    src = "step one║\n  detail a\n  detail b\nstep two\n"
    assert block(src, None) == "step one\n  detail a\n  detail b"
    assert block("step one\n  detail a║\n  detail b\nstep two\n", None) == "detail a"


def test_block_at_python_blank_line_after_the_body_falls_back_to_indentation():
    assert block("def f(x):\n    y = 1\n    ║\n\ndef g():\n    pass\n", "python") == "y = 1"


@pytest.mark.parametrize(("start", "end"), [(-1, None), (99, None), (3, 1)])
def test_block_at_bad_positions(start, end):
    with pytest.raises(BadInputError):
        block_at("x = 1\n", "python", start, end)


# -- the grammar tables -----------------------------------------------------------------------------------------
def test_every_grammar_has_its_sizing_tables_and_no_table_names_an_unknown_grammar():
    from infill.spans import tables
    from infill.syntax import ALIASES, EXTENSIONS, GRAMMARS

    assert set(tables.BRACE_BLOCKS) == set(GRAMMARS)
    for name in ("INDENT_BLOCKS", "HEADER_ENDS"):
        assert set(getattr(tables, name)) <= set(GRAMMARS), name
    assert set(EXTENSIONS.values()) <= set(GRAMMARS) and set(ALIASES.values()) <= set(GRAMMARS)


def test_a_grammar_without_sizing_tables_is_named_in_the_error():
    from infill.errors import UnknownStrategyError
    from infill.spans.tables import statement_containers

    with pytest.raises(UnknownStrategyError, match="unknown sizing-table grammar 'ruby'; choose one of: c, cpp"):
        statement_containers("ruby")
