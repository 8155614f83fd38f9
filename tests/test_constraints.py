"""Per-step constraints and the final check (infill/constraints.py); the text fixes are tests/test_textfix.py."""

import torch

from infill.constraints import ban_processor, check_splice, middle_ids
from infill.prompt import SpecialIds

IDS = SpecialIds(pad=0, eos=(1,), bos=2)


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


def test_splice_check_flags_only_errors_the_middle_adds():
    text = "def f(x):\n    return \n\ndef g(:\n    pass\n"  # g is already broken
    at = text.index("return ") + 7
    assert check_splice(text, at, at, "x + 1", "python").ok
    bad = check_splice(text, at, at, "x + (1", "python")
    assert not bad.ok and bad.added >= 1 and bad.first_error is not None
    assert check_splice("any text", 0, 0, "((", None).ok  # no grammar: nothing to check
