"""The sampler's per-step constraints (infill/constraints.py)."""

import torch

from infill.constraints import ban_processor


def test_banned_ids_never_win_in_free_slots():
    logits = torch.zeros(1, 3, 10)
    logits[0, :, 4] = 100.0
    free = torch.tensor([[True, False, True]])
    out = ban_processor([4], free)(logits.clone(), 0, torch.tensor([0]), torch.arange(3))
    assert out[0, 0].argmax() != 4 and out[0, 2].argmax() != 4 and out[0, 1].argmax() == 4
    # logits of some columns only (the sampler's denoised columns): the mask follows the columns
    some = ban_processor([4], free)(logits[:, [1, 2]].clone(), 0, torch.tensor([0]), torch.tensor([1, 2]))
    assert some[0, 0].argmax() == 4 and some[0, 1].argmax() != 4
