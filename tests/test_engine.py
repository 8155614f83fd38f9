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


def test_a_row_is_padded_to_the_canvas_length_the_model_was_trained_on():
    backend = scripted("x + 1", length=16)
    backend.canvas_buckets = (16, 32)  # a checkpoint trained on 16- and 32-slot canvases
    result = fill(backend, lengths=(8,), invoked=False)
    assert result.text == "x + 1" and [c.length for c in result.candidates] == [8]
    assert {tuple(c.shape) for c in backend.calls} == {(1, 16)}
    assert all((c[0, 8:] == backend.ids.pad).all() for c in backend.calls)  # the padding is clamped
    assert {tuple(s.tolist()) for s in backend.slots_seen} == {tuple(range(8))}  # logits for the free slots only
