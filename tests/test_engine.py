"""The engine's choices on a scripted backend, whose denoiser always converges to a known canvas."""

import pytest
import torch

from infill.engine import Engine, EngineConfig
from infill.errors import BadInputError, CancelledError
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


def test_fast_quality_runs_one_batch_and_no_repairs():
    result = fill(scripted("x + (1", length=16), lengths=(8, 16), quality="fast")
    assert [c.length for c in result.candidates] == [8, 16]  # all candidates in one run
    assert not result.syntax_ok and result.forward_passes == 1 + result.steps  # no repair round


def test_a_whole_line_range_is_not_merged_with_the_next_line():
    text = "a = 1\nb = 2\nc = 3\n"
    start, end = text.index("b"), text.index("c")
    result = fill(scripted("b = 4"), text=text, cursor=None, span=(start, end), path="v.py")
    assert result.text == "b = 4\n" and result.syntax_ok
