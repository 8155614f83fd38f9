"""The engine's choices on a scripted backend, whose denoiser always converges to a known canvas."""

import pytest
import torch

from infill.engine import Engine, EngineConfig
from infill.errors import BadInputError, CancelledError
from infill.quality import quality
from infill.request import InfillRequest
from tests.fakes import CharTokenizer, ScriptedBackend

TOK = CharTokenizer()
TEXT = "def f(x):\n    return \n\nprint(f(2))\n"
CURSOR = TEXT.index("return ") + len("return ")


def scripted(middle: str, length: int = 8, rows: int = 1) -> ScriptedBackend:
    ids = TOK.encode(middle)
    canvas = (ids + [1] + [0] * length)[:length]
    return ScriptedBackend(torch.tensor([canvas] * rows))


def fill(backend, **kw) -> object:
    args = dict(text=TEXT, cursor=CURSOR, path="f.py", seed=0, lengths=(8,))
    args.update(kw)
    return Engine(backend).fill(InfillRequest(**args))


def test_the_middle_is_decoded_checked_and_accounted_for():
    result = fill(scripted("x + 1"))
    assert result.text == "x + 1" and result.syntax_ok
    assert (result.start, result.end) == (CURSOR, CURSOR)
    assert result.forward_passes == 1 + result.steps  # one encoder pass, then one pass per step
    assert result.tokens == 5 and result.language == "python" and result.model == "scripted"


def test_a_candidate_too_short_to_finish_loses_to_one_that_parses():
    result = fill(scripted("x + 1"), lengths=(3, 8))
    assert [c.length for c in result.candidates] == [3, 8]
    assert not result.candidates[0].finished and result.candidates[1].finished
    assert result.text == "x + 1"


def test_longer_candidates_run_only_when_the_shorter_ones_fail():
    result = fill(scripted("x + 1", length=16), lengths=(8, 16))
    assert [c.length for c in result.candidates] == [8]
    no_escalation = Engine(scripted("x + 1", length=16), EngineConfig(escalate=False))
    result = no_escalation.fill(InfillRequest(text=TEXT, cursor=CURSOR, path="f.py", seed=0, lengths=(8, 16)))
    assert [c.length for c in result.candidates] == [8, 16]


def test_a_middle_that_adds_a_syntax_error_is_reported_honestly():
    result = fill(scripted("x + (1"))
    assert not result.syntax_ok
    assert result.repaired is False and result.forward_passes > 1 + result.steps  # a repair round ran and failed


def test_repeating_the_suffix_is_trimmed():
    text = "values = [1, 2, ]\n"
    at = text.index("]")
    result = fill(scripted("3]"), text=text, cursor=at, path="v.py")
    assert result.text == "3" and result.syntax_ok


def test_drafts_stream_and_cancellation_stops_between_steps():
    drafts = []
    engine = Engine(scripted("x + 1"))
    req = InfillRequest(text=TEXT, cursor=CURSOR, path="f.py", seed=0, lengths=(8,))
    engine.fill(req, on_draft=lambda step, text: drafts.append(text))
    assert drafts and drafts[-1] == "x + 1"
    with pytest.raises(CancelledError):
        engine.fill(req, cancelled=lambda: True)


def test_seam_layout_clamps_the_suffix_head():
    backend = ScriptedBackend(torch.tensor([TOK.encode("x + 1") + TOK.encode("\n\np") + [0]]))
    engine = Engine(backend, EngineConfig(seam_tokens=3))
    result = engine.fill(InfillRequest(text=TEXT, cursor=CURSOR, path="f.py", seed=0, lengths=(5,)))
    assert result.text == "x + 1" and result.syntax_ok
    assert all(c[0, 5:8].tolist() == TOK.encode("\n\np") for c in backend.calls)


def test_bad_requests_are_refused():
    with pytest.raises(BadInputError):
        fill(scripted("x"), cursor=len(TEXT) + 1)
    with pytest.raises(ValueError):
        InfillRequest(text="x", cursor=0, span=(0, 1))


def test_fast_quality_runs_one_row_and_no_repairs():
    result = fill(scripted("x + (1", length=16), lengths=(8, 16), quality="fast")
    assert [c.length for c in result.candidates] == [16]  # SizingConfig.one_row: the second rung of a line hole
    assert not result.syntax_ok and result.forward_passes == 1 + result.steps  # no repair round, no climbing


def test_as_you_type_runs_one_canvas_row_of_the_one_row_length():
    backend = scripted("x + 1", length=16)
    result = fill(backend, lengths=(3, 8, 16), quality="balanced", invoked=False)
    assert [c.length for c in result.candidates] == [8] and result.text == "x + 1"
    assert {tuple(c.shape) for c in backend.calls} == {(1, 8)}  # one row, no padding to a longer candidate


def test_invoked_requests_climb_one_candidate_at_a_time():
    backend = scripted("x + 1", length=16)
    result = fill(backend, lengths=(3, 8, 16))
    assert [c.length for c in result.candidates] == [3, 8]  # 3 cannot hold "x + 1<eos>"; 8 can, so 16 never runs
    assert {tuple(c.shape) for c in backend.calls} == {(1, 3), (1, 8)}


def test_a_completion_at_the_end_of_a_line_adds_no_blank_line():
    """TEXT's cursor ends `    return `; a middle ending with a line break would leave a blank line after it."""
    result = fill(scripted("x + 1\n", length=12), lengths=(12,))
    assert result.text == "x + 1" and result.syntax_ok


def test_rows_of_different_lengths_never_share_a_pass():
    backend = scripted("x + 1", length=16)
    engine = Engine(backend)
    reqs = [InfillRequest(text=TEXT, cursor=CURSOR, path="f.py", seed=0, lengths=(n,), invoked=False)
            for n in (8, 16, 8)]
    results = engine.fill_batch(reqs)
    assert [r.text for r in results] == ["x + 1"] * 3
    assert {tuple(c.shape) for c in backend.calls} == {(2, 8), (1, 16)}  # the two 8-slot rows batch together


def test_a_warm_start_seeds_the_canvas_with_the_rest_of_the_previous_draft():
    ids = TOK.encode("x + 1")
    backend = ScriptedBackend(torch.tensor([ids + [1, 0, 0]]), noisy_slots=(7,))  # never confident: full budgets
    engine = Engine(backend)
    first = engine.fill(InfillRequest(text=TEXT, cursor=CURSOR, path="f.py", seed=0, lengths=(8,), invoked=False,
                                      quality="fast"))
    assert first.text == "x + 1"
    typed = TEXT[:CURSOR] + "x " + TEXT[CURSOR:]  # the user typed the start of the suggestion
    calls = len(backend.calls)
    second = engine.fill(InfillRequest(text=typed, cursor=CURSOR + 2, path="f.py", seed=0, lengths=(8,),
                                       invoked=False, quality="fast"))
    assert backend.calls[calls][0, :4].tolist() == TOK.encode("+ 1") + [1]  # its first canvas: the draft, <eos>
    assert second.steps == quality("fast").warm_steps < first.steps == quality("fast").sampler["max_steps"]
    assert engine.drafts.hits == 1
    elsewhere = engine.fill(InfillRequest(text=typed, cursor=CURSOR, path="f.py", seed=0, lengths=(8,),
                                          invoked=False, quality="fast"))
    assert elsewhere.steps == first.steps and engine.drafts.hits == 1  # not a continuation of it: a cold start


def test_a_whole_line_range_is_not_merged_with_the_next_line():
    text = "a = 1\nb = 2\nc = 3\n"
    start, end = text.index("b"), text.index("c")
    result = fill(scripted("b = 4"), text=text, cursor=None, span=(start, end), path="v.py")
    assert result.text == "b = 4\n" and result.syntax_ok


# -- issue 15: the verdict is the compiler's, a suggestion is never a deletion, the file's own style --------------
def hole(fixture: str) -> dict:
    """InfillRequest fields for a fixture marked with `║` (a cursor) or `├…┤` (a range)."""
    if "║" in fixture:
        return {"text": fixture.replace("║", ""), "cursor": fixture.index("║")}
    start, end = fixture.index("├"), fixture.index("┤") - 1
    return {"text": fixture.replace("├", "").replace("┤", ""), "cursor": None, "span": (start, end)}


def test_the_choice_goes_by_what_compiles():
    """The full middle leaves an unexpected indent that tree-sitter tolerates; the shorter candidate's cut stops
    before it and compiles. The candidate that compiles is chosen, and only that one is syntax_ok."""
    target = "    return x\n            y = 1"
    result = fill(scripted(target, length=40), lengths=(12, 40), path="f.py",
                  **hole("def f(x):\n├    pass\n┤print(f(1))\n"))
    assert [c.length for c in result.candidates] == [12, 40]  # the 12 did not finish: the 40 ran too
    by_length = {c.length: c for c in result.candidates}
    assert by_length[40].finished and not by_length[40].syntax_ok
    assert result.text == "    return x\n" and result.syntax_ok


@pytest.mark.parametrize("middle", ["", "   ", "\n\n", "# TODO\n", "  # later"])
def test_no_code_is_no_suggestion(middle):
    result = fill(scripted(middle, length=12), lengths=(12,), quality="fast")
    assert result.empty and result.text == "" and not result.syntax_ok


# A middle written with 4-space levels and trailing blanks, into tab-indented files of each language family:
# braces (C, Go, Java, JavaScript, Rust), indentation (Python), keywords (Lua).
TABS = {
    "go": ("main.go", "package main\n\nfunc f(x int) int {\n\tif x > 0 {\n\t\t║\n\t}\n\treturn 0\n}\n",
           "y := x * 2  \n        if y > 9 {\n            return y   \n        }\n        "),
    "c": ("f.c", "int f(int x) {\n\tif (x > 0) {\n\t\t║\n\t}\n\treturn 0;\n}\n",
          "int y = x * 2;  \n        if (y > 9) {\n            return y;   \n        }\n        "),
    "java": ("A.java", "class A {\n\tint f(int x) {\n\t\t║\n\t\treturn 0;\n\t}\n}\n",
             "int y = x * 2;  \n        if (y > 9) {\n            return y;   \n        }\n        "),
    "javascript": ("f.js", "function f(x) {\n\tif (x > 0) {\n\t\t║\n\t}\n\treturn 0;\n}\n",
                   "const y = x * 2;  \n        if (y > 9) {\n            return y;   \n        }\n        "),
    "rust": ("f.rs", "fn f(x: i32) -> i32 {\n\tif x > 0 {\n\t\t║\n\t}\n\t0\n}\n",
             "let y = x * 2;  \n        if y > 9 {\n            return y;   \n        }\n        "),
    "python": ("f.py", "def f(x):\n\tif x > 0:\n\t\t║\n\treturn 0\n",
               "y = x * 2  \n        if y > 9:\n            return y   \n        "),
    "lua": ("f.lua", "local function f(x)\n\tif x > 0 then\n\t\t║\n\tend\n\treturn 0\nend\n",
            "local y = x * 2  \n        if y > 9 then\n            return y   \n        end\n        "),
}


@pytest.mark.parametrize("language", list(TABS))
def test_tab_indented_files_get_tabs_and_no_trailing_blanks(language):
    path, fixture, middle = TABS[language]
    result = fill(scripted(middle, length=90), lengths=(90,), path=path, quality="fast", **hole(fixture))
    lines = result.text.split("\n")
    assert lines[1].startswith("\t\tif ") and lines[2].startswith("\t\t\treturn y")
    assert not any(line != line.rstrip(" \t") for line in lines[:-1]), result.text
    assert " " * 4 not in result.text and result.syntax_ok, result.text


def test_two_space_files_get_two_space_levels():
    fixture = "function f(x) {\n  if (x > 0) {\n    ║\n  }\n}\n"
    middle = "const y = x;\n    if (y) {\n        return y;\n    }\n"  # the model's levels are 4 spaces
    result = fill(scripted(middle, length=80), lengths=(80,), path="f.js", quality="fast", **hole(fixture))
    assert result.text == "const y = x;\n    if (y) {\n      return y;\n    }"  # the line break is the file's


def test_crlf_files_get_crlf_middles():
    fixture = "def f(x):\r\n    if x:\r\n├        pass\r\n┤    return 0\r\n"
    result = fill(scripted("        y = x\n        return y", length=40), lengths=(40,), path="f.py", **hole(fixture))
    assert result.text == "        y = x\r\n        return y\r\n" and result.syntax_ok


def test_a_range_of_whole_lines_gets_no_trailing_blank_line():
    """The range ends with a line break, so the middle's last line ends a line too: its blanks go."""
    fixture = "int f(int x) {\n├    x += 1;\n    return x;\n┤    return 0;\n}\n"
    result = fill(scripted("    x += 2;  \n    return x;\n        ", length=60), lengths=(60,), path="f.c",
                  quality="fast", **hole(fixture))
    assert result.text == "    x += 2;\n    return x;\n\n"


def test_a_row_is_padded_to_the_canvas_length_the_model_was_trained_on():
    backend = scripted("x + 1", length=16)
    backend.canvas_buckets = (16, 32)  # a checkpoint trained on 16- and 32-slot canvases
    result = fill(backend, lengths=(8,), invoked=False)
    assert result.text == "x + 1" and [c.length for c in result.candidates] == [8]
    assert {tuple(c.shape) for c in backend.calls} == {(1, 16)}
    assert all((c[0, 8:] == backend.ids.pad).all() for c in backend.calls)  # the padding is clamped
    assert {tuple(s.tolist()) for s in backend.slots_seen} == {tuple(range(8))}  # logits for the free slots only
