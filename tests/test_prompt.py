from infill.prompt import (
    PromptConfig,
    SpecialIds,
    candidate_layouts,
    encode_fim,
    encode_masked,
    middle_ids,
    training_canvas,
    truncate_to_budget,
)
from tests.fakes import CharTokenizer

IDS = SpecialIds(pad=0, eos=(1,), bos=2, fim_prefix=6, fim_suffix=7, fim_middle=8, mask=9)
TOK = CharTokenizer()


def test_fim_prompt_puts_the_suffix_first_so_typing_only_changes_the_tail():
    a = encode_fim(TOK, IDS, "def f(", ")\n", PromptConfig())
    b = encode_fim(TOK, IDS, "def f(x", ")\n", PromptConfig())
    assert a.encoder_ids[:2] == (2, 7) and a.encoder_ids[-1] == 8
    assert TOK.decode(list(a.encoder_ids)) == ")\ndef f("
    shared = 0
    while a.encoder_ids[shared] == b.encoder_ids[shared]:
        shared += 1
    assert shared == len(a.encoder_ids) - 1  # only the last position differs


def test_budget_keeps_the_code_nearest_the_hole():
    p, s, cut = truncate_to_budget(list(range(100)), list(range(200, 300)), 40, 0.25)
    assert cut and len(p) + len(s) == 40
    assert p[-1] == 99 and s[0] == 200  # the prefix keeps its tail, the suffix its head
    assert len(s) == 10
    p, s, cut = truncate_to_budget(list(range(5)), list(range(200, 300)), 40, 0.25)
    assert p == list(range(5)) and len(s) == 35  # unused prefix budget goes to the suffix


def test_seam_ids_are_the_head_of_the_suffix():
    enc = encode_fim(TOK, IDS, "x = ", "  # done\n", PromptConfig(seam_tokens=3))
    assert TOK.decode(list(enc.seam_ids)) == "  #"


def test_masked_prompt_keeps_sides_apart():
    enc = encode_masked(TOK, IDS, "a", "b", PromptConfig())
    assert enc.encoder_ids == () and enc.prefix_ids[0] == 2 and TOK.decode(list(enc.suffix_ids)) == "b"


def test_layouts_share_one_canvas_length():
    open_ = candidate_layouts((4, 8, 16), ())
    assert [(x.free, x.length) for x in open_] == [(4, 16), (8, 16), (16, 16)]
    seam = candidate_layouts((4, 8), (70, 71))
    assert [(x.free, x.clamps, x.length) for x in seam] == [(4, (70, 71), 10), (8, (70, 71), 10)]


def test_training_canvas_matches_the_inference_layouts():
    assert training_canvas([40, 41], 5, IDS) == [40, 41, 1, 0, 0]
    assert training_canvas([40, 41], 5, IDS, seam_ids=[70]) == [40, 41, 70, 0, 0]


def test_typing_at_the_end_of_a_long_prefix_keeps_the_prompt_start_stable():
    cfg = PromptConfig(max_prompt_tokens=200, cut_step=32)
    prefix = "".join(f"value_{i} = compute({i})\n" for i in range(400))
    typed = "result = value_1 + value_2 + value_3 + value_4"
    previous, stable = None, 0
    for n in range(len(typed) + 1):
        enc = encode_fim(TOK, IDS, prefix + typed[:n], "\nprint(result)\n", cfg)
        assert len(enc.encoder_ids) <= 200 + 4 and enc.truncated
        if previous is not None:
            shared = 0
            while shared < min(len(previous), len(enc.encoder_ids)) and previous[shared] == enc.encoder_ids[shared]:
                shared += 1
            stable += shared >= len(previous) - 2  # everything but the tail was reusable
        previous = enc.encoder_ids
    assert stable >= 0.9 * len(typed)


def test_middle_is_cut_at_its_end_token():
    assert middle_ids([40, 41, 1, 0, 50], 5, IDS, seam=False) == ([40, 41], True)
    assert middle_ids([40, 41, 42], 3, IDS, seam=False) == ([40, 41, 42], False)  # ran out of slots
    assert middle_ids([40, 1, 41, 70, 0], 3, IDS, seam=True) == ([40, 41], True)  # seam: exact length
