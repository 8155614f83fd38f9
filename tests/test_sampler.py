import pytest
import torch

from infill.errors import CancelledError, DeadlineExceededError, UnknownStrategyError
from infill.sampler import SamplerConfig, entropy_bound_accept, quality_preset, sample, temperature
from tests.fakes import ScriptedBackend

TARGET = torch.tensor([[40, 41, 42, 43, 1, 0, 0, 0]])


def free_canvas(length: int = 8, rows: int = 1) -> torch.Tensor:
    return torch.full((rows, length), -1, dtype=torch.long)


def test_temperature_schedule_runs_from_t_max_to_t_min():
    cfg = SamplerConfig(max_steps=48)
    assert temperature(cfg, 0) == pytest.approx(0.8)
    assert temperature(cfg, 47) == pytest.approx(0.4 + 0.4 / 48)
    assert all(temperature(cfg, s) > temperature(cfg, s + 1) for s in range(47))


def test_entropy_bound_accepts_lowest_entropy_prefix_and_at_least_one():
    h = torch.tensor([[0.5, 0.01, 0.02, 0.9]])
    eligible = torch.ones_like(h, dtype=torch.bool)
    # sorted: .01 .02 .5 .9; cumsum - current: 0, .01, .03, .53 -> bound .1 accepts three
    assert entropy_bound_accept(h, eligible, 0.1).tolist() == [[True, True, True, False]]
    # a tiny bound still accepts the single most certain slot
    assert entropy_bound_accept(h, eligible, 1e-9).tolist() == [[False, True, False, False]]


def test_entropy_bound_ignores_ineligible_slots():
    h = torch.tensor([[0.0, 0.0, 0.3]])
    eligible = torch.tensor([[False, False, True]])
    assert entropy_bound_accept(h, eligible, 0.1).tolist() == [[False, False, True]]


def test_sampler_converges_to_a_confident_target_and_stops_early():
    backend = ScriptedBackend(TARGET)
    out = sample(backend, backend.prefill(_prompt()), free_canvas(), SamplerConfig(), seed=0)
    assert out.tokens.tolist() == TARGET.tolist()
    assert bool(out.finished.all())
    assert 2 <= int(out.steps[0]) < 48  # stable for one step, confident
    assert out.forward_passes == int(out.steps[0])


def test_sampler_respects_clamps_at_every_step():
    backend = ScriptedBackend(TARGET)
    clamp = free_canvas()
    clamp[0, 2] = 99  # the model wants 42 here; the clamp wins
    sample(backend, backend.prefill(_prompt()), clamp, SamplerConfig(max_steps=5, confidence=0.0), seed=0)
    assert all(int(c[0, 2]) == 99 for c in backend.calls)


def test_sampler_is_deterministic_under_a_seed_and_varies_without_one():
    def run(seed):
        backend = ScriptedBackend(TARGET, sharpness=1.0)  # soft logits: sampling matters
        sample(backend, backend.prefill(_prompt()), free_canvas(), SamplerConfig(max_steps=6), seed=seed)
        return torch.stack(backend.calls)  # every canvas the model saw

    assert torch.equal(run(7), run(7))
    assert not torch.equal(run(7), run(8))


def test_a_rows_draws_do_not_depend_on_its_batch_mates():
    def canvases(seeds, rows=None):
        backend = ScriptedBackend(TARGET, sharpness=1.0)  # soft logits: every step samples
        sample(backend, backend.prefill(_prompt()), free_canvas(rows=rows or len(seeds)), SamplerConfig(max_steps=6),
               seed=seeds)
        return torch.stack(backend.calls)  # (steps, B, L): every canvas the model saw

    alone, together = canvases([11]), canvases([7, 11])
    assert torch.equal(together[:, 1], alone[:, 0])  # the seed-11 row saw the same canvases with or without a mate
    assert not torch.equal(together[:, 0], alone[:, 0])
    assert torch.equal(canvases(3, rows=2)[:, 1], canvases([3, 4])[:, 1])  # an int seed: row r uses seed + r


def test_sampler_hits_the_step_limit_when_never_confident():
    backend = ScriptedBackend(TARGET, noisy_slots=(0,))
    out = sample(backend, backend.prefill(_prompt()), free_canvas(), SamplerConfig(max_steps=7), seed=0)
    assert int(out.steps[0]) == 7 and not bool(out.finished[0])


def test_finished_rows_leave_the_batch():
    # row 1 is never confident (a noisy slot); once row 0 stops, passes carry one row only
    target = torch.tensor([[40, 41, 1, 0, 0, 0, 0, 90], [40, -1, 1, 0, 0, 0, 0, 91]])
    clamp = free_canvas(rows=2)
    clamp[:, -1] = target[:, -1]
    backend = ScriptedBackend(target)
    out = sample(backend, backend.prefill(_prompt()), clamp, SamplerConfig(max_steps=10), seed=0)
    assert out.finished.tolist() == [True, False]
    assert backend.rows_seen[0] == 2 and backend.rows_seen[-1] == 1
    assert int(out.steps[1]) == 10 and int(out.steps[0]) < 10
    # the self-conditioning rows follow the canvases: the finished row's probabilities leave with it
    assert all(f is None or f.shape[0] == n for f, n in zip(backend.feedback, backend.rows_seen, strict=True))


def test_self_conditioning_is_fed_back_after_the_first_step():
    backend = ScriptedBackend(TARGET)
    sample(backend, backend.prefill(_prompt()), free_canvas(), SamplerConfig(), seed=0)
    assert backend.self_conditioning_seen[0] is False and all(backend.self_conditioning_seen[1:])


def test_self_conditioning_is_the_previous_steps_probabilities():
    backend = ScriptedBackend(TARGET, sharpness=2.0)
    cfg = SamplerConfig(max_steps=3)
    sample(backend, backend.prefill(_prompt()), free_canvas(), cfg, seed=0)
    for step in (1, 2):  # the logits the backend gave at step - 1, at that step's temperature
        previous = backend.denoise(backend.prefill(_prompt()), backend.calls[step - 1], None)
        want = torch.softmax(previous / temperature(cfg, step - 1), dim=-1)
        assert torch.allclose(backend.feedback[step], want, atol=1e-6)


def test_only_accepted_slots_are_sampled(monkeypatch):
    import infill.sampler

    drawn = []
    real = infill.sampler.draw

    def spy(probs, generator):
        drawn.append(probs.shape[0])  # rows of the distribution = slots sampled in one call
        return real(probs, generator)

    monkeypatch.setattr(infill.sampler, "draw", spy)
    target = torch.tensor([[40, 41, -1, -1, -1, -1, 1, 0]])  # four slots stay uncertain
    backend = ScriptedBackend(target, sharpness=30.0)
    sample(backend, backend.prefill(_prompt()), free_canvas(), SamplerConfig(max_steps=3), seed=0)
    # the 4 certain slots and the first uncertain one (the EB rule takes the slot that crosses the bound); not all 8
    assert drawn == [5, 5, 5]


def test_mask_noise_freezes_accepted_slots_and_stops_when_no_mask_is_left():
    backend = ScriptedBackend(TARGET, noise="mask", sharpness=5.0)
    out = sample(backend, backend.prefill(_prompt()), free_canvas(), SamplerConfig(), seed=0)
    assert bool(out.finished[0])
    first = backend.calls[0]
    assert (first == backend.ids.mask).all()
    for before, after in zip(backend.calls, backend.calls[1:], strict=False):
        unmasked = before != backend.ids.mask
        assert torch.equal(after[unmasked], before[unmasked])  # accepted slots never change


def test_cancel_and_deadline_stop_between_steps():
    backend = ScriptedBackend(TARGET, noisy_slots=(0,))
    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(CancelledError):
        sample(backend, backend.prefill(_prompt()), free_canvas(), SamplerConfig(), cancelled=cancelled)
    assert len(backend.calls) == 3
    with pytest.raises(DeadlineExceededError):
        sample(backend, backend.prefill(_prompt()), free_canvas(), SamplerConfig(), deadline=0.0)


def test_step_callback_receives_drafts():
    backend = ScriptedBackend(TARGET)
    drafts = []
    sample(backend, backend.prefill(_prompt()), free_canvas(), SamplerConfig(), seed=0,
           on_step=lambda step, draft: drafts.append((step, draft.clone())))
    assert [s for s, _ in drafts] == list(range(len(drafts)))
    assert drafts[-1][1].tolist() == TARGET.tolist()


def test_quality_presets_and_unknown_names():
    assert quality_preset("thinking").max_steps > quality_preset("balanced").max_steps > quality_preset("fast").max_steps
    assert quality_preset("balanced", max_steps=5).max_steps == 5
    with pytest.raises(UnknownStrategyError, match="fast, balanced, thinking|balanced, fast, thinking"):
        quality_preset("turbo")


def _prompt():
    from infill.prompt import EncodedPrompt

    return EncodedPrompt((2, 7, 8), (), (), (), False)


def test_a_draw_follows_the_distribution_and_never_picks_an_impossible_id():
    from infill.sampler import draw

    probs = torch.tensor([[0.1, 0.0, 0.6, 0.3], [0.0, 0.0, 0.0, 1.0]])
    g = torch.Generator().manual_seed(0)
    picks = torch.stack([draw(probs, g) for _ in range(4000)])  # (4000, 2)
    share = torch.bincount(picks[:, 0], minlength=4).float() / len(picks)
    assert torch.allclose(share, probs[0], atol=0.03) and (picks[:, 1] == 3).all()


def test_fill_accepts_a_growing_share_so_the_last_step_sees_a_canvas_the_model_wrote(monkeypatch):
    import infill.sampler

    drawn = []
    real = infill.sampler.draw
    monkeypatch.setattr(infill.sampler, "draw", lambda probs, g: drawn.append(probs.shape[0]) or real(probs, g))
    backend = ScriptedBackend(TARGET, sharpness=0.5)  # unconfident: the entropy bound alone accepts one slot a step
    sample(backend, backend.prefill(_prompt()), free_canvas(), SamplerConfig(max_steps=4, fill=True), seed=0)
    assert drawn == [2, 4, 6, 8]  # ceil(8 * (step + 1) / 4)
    drawn.clear()
    sample(backend, backend.prefill(_prompt()), free_canvas(), SamplerConfig(max_steps=4), seed=0)
    assert max(drawn) < 8
