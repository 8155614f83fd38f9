"""Fast checks of the benchmark scripts' scoring and decoding pieces (benchmarks/quality.py, speed.py, plots.py,
and the before/after scripts' hole cutting, baseline trees and paired intervals)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tests.fakes import ScriptedBackend

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import baseline  # noqa: E402
import cli_latency  # noqa: E402
import humaneval  # noqa: E402
import plots  # noqa: E402
import quality  # noqa: E402
import quality_sxs  # noqa: E402
import speed  # noqa: E402

# A tiny SAFIM-style task: the hole is a loop body; the tests read n and print 2*i for each i, then "done".
BLOCK = {
    "task_id": "block_test",
    "eval_prompt": "n = int(input())\nfor i in range(n):\n    {{completion}}\nprint('done')\n",
    "ground_truth": "x = i * 2\n    print(x)",
    "unit_tests": [{"input": "2\n", "output": ["0\n2\ndone"]}, {"input": "1\n", "output": ["0\ndone"]}],
}


# -- SAFIM truncation -------------------------------------------------------------------------------------------
def test_block_truncation_drops_lines_outside_the_block():
    raw = "x = i * 2\n    print(x)\nprint('extra')\nfoo(\n"
    assert quality.truncate_block(BLOCK, raw) == "x = i * 2\n    print(x)\n"


def test_block_truncation_keeps_a_complete_block_and_empties_a_hopeless_one():
    assert quality.truncate_block(BLOCK, BLOCK["ground_truth"]) == BLOCK["ground_truth"]
    assert quality.truncate_block(BLOCK, "foo(\n)(") == ""


def test_control_truncation_takes_the_first_non_blank_line():
    assert quality.truncate_control("\n  i < n:\n        x = 1\n") == "  i < n:"
    assert quality.truncate_control("\n \n") == ""


def test_api_truncation_stops_at_the_closing_parenthesis():
    assert quality.truncate_api("np.zeros((3, 4), dtype=int) + 1\nrest") == "np.zeros((3, 4), dtype=int)"
    assert quality.truncate_api("x) + 1") == "x)"
    assert quality.truncate_api("no call") == "no call"


# -- SAFIM matching and execution -------------------------------------------------------------------------------
def test_api_match_ignores_whitespace_and_compares_call_arguments():
    assert quality.api_match("np.zeros( (3,4), dtype = int)", "np.zeros((3, 4), dtype=int)")
    assert not quality.api_match("np.zeros(3)", "np.zeros(4)")
    assert not quality.api_match("a +b", "a - b")
    assert quality.api_match("a +b", "a+ b")


def test_unit_tests_run_the_program_with_the_completion():
    assert quality.run_unit_tests(BLOCK, BLOCK["ground_truth"])
    assert not quality.run_unit_tests(BLOCK, "print(i)")  # wrong output
    assert not quality.run_unit_tests(BLOCK, "raise SystemExit(3)")  # non-zero exit
    assert not quality.run_unit_tests(BLOCK, "while True: pass", timeout=0.5)  # time limit


def test_outputs_compare_by_tokens_case_insensitively():
    assert quality.same_output("YES\n 3  4\n", ["yes 3 4"])
    assert not quality.same_output("YES 3", ["yes 3 4"])


def test_score_safim_exact_match_first_then_tests():
    exact = quality.score_safim("safim-block", BLOCK, BLOCK["ground_truth"] + "\nprint('x')\n")
    assert exact["completion"] == BLOCK["ground_truth"] + "\n" and not exact["exact"] and exact["passed"]
    assert exact["compiles"]
    assert quality.score_safim("safim-block", BLOCK, BLOCK["ground_truth"])["exact"]
    wrong = quality.score_safim("safim-block", BLOCK, "x = 1\n    print(x)")
    assert not wrong["exact"] and not wrong["passed"]
    empty = quality.score_safim("safim-block", BLOCK, "")
    assert not empty["passed"]
    broken = quality.score_safim("safim-block", BLOCK, "x = (1,\n")  # the raw middle is judged before truncation
    assert broken["completion"] == "" and not broken["syntax_ok"]
    assert quality.score_safim("safim-api", {"ground_truth": "f(1)", "eval_prompt": "y = {{completion}}\n"}, "f( 1 )")["passed"]


def test_no_code_is_a_miss_never_valid_syntax():
    """An empty or comment-only middle neither passes nor counts as valid syntax, even where the tests would pass."""
    for raw in ("", "   ", "# TODO\n"):
        assert not quality.score_safim("safim-block", BLOCK, raw)["syntax_ok"]
    bad_indent = quality.score_safim("safim-block", BLOCK, "x = i * 2\n        print(x)")  # tree-sitter takes it
    assert not bad_indent["syntax_ok"]
    assert quality.score_safim("safim-block", BLOCK, BLOCK["ground_truth"])["syntax_ok"]
    # a HumanEval line the tests do not depend on: an empty middle would "pass" them
    row = {"prompt": "def f(x):\n    y = 1\n", "suffix": "    return x\n", "test": "def check(f):\n    assert f(2) == 2\n",
           "entry_point": "f", "canonical_solution": "    y = 1\n", "task_id": "t/0"}
    hole = SimpleNamespace(set="single-line", row=row, truth=row["canonical_solution"])
    assert humaneval.passes(row, "", 3.0) and not quality.score(hole, "", 3.0)["passed"]
    engine = SimpleNamespace(fill=lambda req: SimpleNamespace(
        text="", empty=True, syntax_ok=False, forward_passes=2, steps=1, tokens=0, seconds=0.0, kind="line"))
    report = humaneval.evaluate(engine, [row], "fast", seed=0, timeout=3.0)
    assert report["pass_at_1"] == 0.0 and report["syntax_ok"] == 0.0 and report["empty"] == 1.0


def test_middle_of_accounts_for_a_widened_hole():
    text, cursor = "x = 1\n    \ny = 2\n", 10  # cursor after the indentation of the empty line
    widened = SimpleNamespace(start=6, end=10, text="    z = 3")  # the engine replaced the indentation too
    assert quality.middle_of(text, cursor, widened) == "z = 3"
    plain = SimpleNamespace(start=10, end=10, text="z = 3")
    assert quality.middle_of(text, cursor, plain) == "z = 3"


def test_wilson_interval():
    assert quality.wilson(0, 0) == (0.0, 0.0)
    lo, hi = quality.wilson(0, 6)
    assert lo == 0.0 and 0.35 < hi < 0.45
    lo, hi = quality.wilson(5, 10)
    assert lo < 0.5 < hi


# -- AR-equivalent decoding --------------------------------------------------------------------------------------
def _state(backend):
    return backend.prefill(SimpleNamespace(encoder_ids=(2, 7, 8)))


@pytest.mark.parametrize("noise", ["uniform", "mask"])
def test_ar_decode_commits_one_token_per_pass(noise):
    target = torch.tensor([20, 21, 22, 1, 0, 0, 0, 0])  # three tokens, then <eos> (id 1)
    backend = ScriptedBackend(target, noise=noise)
    out = speed.ar_decode(backend, _state(backend), length=8, seed=0)
    assert out.ids == [20, 21, 22, 1] and out.finished
    assert out.passes == len(out.ids) == len(backend.calls)
    for k, canvas in enumerate(backend.calls):  # pass k sees exactly the k tokens committed before it
        assert canvas[0, :k].tolist() == target[:k].tolist()
        if noise == "mask":
            assert (canvas[0, k:] == backend.ids.mask).all()
    assert backend.self_conditioning_seen == [False] + [noise == "uniform"] * 3


def test_ar_decode_stops_at_the_canvas_end_without_an_end_token():
    target = torch.tensor([30, 31, 32, 33])
    backend = ScriptedBackend(target)
    out = speed.ar_decode(backend, _state(backend), length=4)
    assert out.ids == [30, 31, 32, 33] and not out.finished and out.passes == 4


def test_ar_decode_never_commits_a_banned_id():
    target = torch.tensor([7, 7, 1, 0])  # 7 is <fim_suffix>, banned in the canvas
    backend = ScriptedBackend(target)
    out = speed.ar_decode(backend, _state(backend), length=4)
    assert 7 not in out.ids


@pytest.mark.slow
def test_ar_and_stock_on_a_tiny_checkpoint(tiny_engine):
    from infill.prompt import PromptConfig, encode_prompt

    backend = tiny_engine.backend
    prompt = encode_prompt(backend.prompt_format, backend.tokenizer, backend.ids, "def f(x):\n    return ", "\n",
                           PromptConfig())
    out = speed.ar_decode(backend, backend.prefill(prompt), length=6)
    assert out.passes == len(out.ids) <= 6
    model = speed.class_model(backend)  # the engine runs the fused stack; stock generate() needs the class
    canvas_length = model.config.canvas_length
    ids, encoder, decoder = speed.stock_generate(backend, list(prompt.encoder_ids), 8)
    assert len(ids) == 8 and encoder == 1 and 1 <= decoder <= speed.STOCK_STEPS
    assert model.config.canvas_length == canvas_length  # restored after the call


# -- speed summaries and summary.json ----------------------------------------------------------------------------
def _row(kind, engine, ar, stock):
    run = lambda passes, tokens: {"passes": passes, "tokens": tokens, "seconds": 1.0, "exact": False,  # noqa: E731
                                  "syntax_ok": True}
    return {"kind": kind, "engine": run(*engine), "ar_equivalent": run(*ar), "stock_generate": run(*stock)}


def test_compare_ratios_of_passes_per_token():
    rows = [_row("line", (10, 10), (12, 10), (49, 10)), _row("block", (20, 40), (42, 40), (49, 40))]
    s = speed.compare(rows)
    assert s["all"]["engine"]["passes_per_token"] == 0.6
    assert s["all"]["ar_equivalent"]["passes_per_token"] == 1.08
    assert s["line"]["ratio_vs_ar"] == round(1.0 / 1.2, 3)
    assert s["block"]["ratio_vs_stock"] == round(0.5 / (49 / 40), 3)


SHAPE = {"commit": str, "machine": str, "model": str,
         "speed": {"passes_per_token": {"engine": float, "ar_equivalent": float, "stock_generate": float},
                   "ratio_vs_ar": float, "ratio_vs_stock": float},
         "quality": {"humaneval_single_line": {"pass_at_1": float, "exact_match": float, "syntax_ok": float}},
         "cache": {"prefill_speedup_typing_2000_lines": float}}


def _check_shape(value, shape, path="summary"):
    if isinstance(shape, dict):
        assert isinstance(value, dict), path
        for key, sub in shape.items():
            assert key in value, f"{path}.{key} missing"
            _check_shape(value[key], sub, f"{path}.{key}")
    elif shape is float:
        assert isinstance(value, int | float) and not isinstance(value, bool), f"{path} is not a number"
    else:
        assert isinstance(value, shape), f"{path} is not {shape.__name__}"


def test_build_summary_has_the_promised_shape():
    speed_report = {"holes_commit": "abc", "machine": "cpu", "model": "m", "parameters": 18_500_000,
                    "holes": {"count": 2, "summary": speed.compare([_row("line", (10, 10), (12, 10), (49, 10)),
                                                                    _row("block", (20, 40), (42, 40), (49, 40))])}}
    humaneval = {"command": "python benchmarks/humaneval.py", "sets": {
        "single-line": {"holes": 164, "pass_at_1": 0.0122, "exact_match": 0.0, "syntax_ok": 0.68},
        "multi-line": {"holes": 164, "pass_at_1": 0.0, "exact_match": 0.0, "syntax_ok": 0.5, "command": "other"}}}
    cache = {"command": "python benchmarks/cache_reuse.py", "files": {"2000": {"prefill_speedup": 11.8}}}
    summary = plots.build_summary(None, speed_report, cache, humaneval)
    _check_shape(summary, SHAPE)
    assert summary["quality"]["humaneval_single_line"]["holes"] == 164
    assert summary["quality"]["humaneval_multi_line"]["source"] == "other"  # each set names its own run
    assert summary["targets"]["prefill_5x_less_typing_2000_lines"]["met"]
    empty = plots.build_summary(None, None, None, None)  # nothing measured yet: still the same shape
    _check_shape(empty, SHAPE)


def test_committed_summary_json_has_the_promised_shape():
    path = BENCH / "results" / "summary.json"
    if not path.exists():
        pytest.skip("benchmarks/results/summary.json not written yet (python benchmarks/plots.py)")
    _check_shape(json.loads(path.read_text()), SHAPE)


@pytest.mark.slow
def test_gpu_speed_dry_run_covers_every_section(tmp_path):
    """The prepared GPU benchmark (issue 18) runs end to end on a tiny shape on the CPU."""
    import importlib.util
    import json as _json
    from pathlib import Path as _Path

    path = _Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_speed.py"
    spec = importlib.util.spec_from_file_location("gpu_speed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "gpu.json"
    assert module.main(["--dry-run", "--out", str(out)]) == 0
    result = _json.loads(out.read_text())
    for key in ("stock", "build", "prefill_ms", "decoder_step", "full_canvas", "single_line", "batching", "quantized"):
        assert key in result, key
    assert result["full_canvas"]["16"]["passes"] == 16  # random weights never stop early
    assert all(result["quantized"][k]["kl_to_bf16"] < 0.5 for k in ("int8", "fp8", "int4"))


# -- before/after scripts --------------------------------------------------------------------------------------
def test_cli_latency_cuts_each_kind_of_hole_where_it_says():
    from infill.document import LineIndex, parse_position, parse_range

    text = cli_latency.source_file(300)
    holes = cli_latency.cut_holes(text, 3)
    assert [k for k, _, _ in holes] == [k for k in cli_latency.KINDS for _ in range(3)]
    for kind, doc, fields in holes:
        index = LineIndex.of(doc)
        if kind == "range":
            start, end = parse_range(fields["range"], index)
            assert doc == text and doc[start:end].strip() and "\n" not in doc[start:end]
            continue
        at = parse_position(fields["at"], index)
        assert len(doc) < len(text)  # something was cut out
        if kind == "expression":
            assert doc[at - 1] == "(" and doc[at] == ")"
        if kind in ("statement", "block"):
            assert not doc[doc.rfind("\n", 0, at) + 1 : at].strip()  # the cursor is on an indented empty line


def test_a_baseline_tree_is_the_commit_as_it_was(tmp_path):
    tree = baseline.checkout(baseline.BASELINE, tmp_path / "old")
    assert (tree / "infill" / "engine.py").exists() and not (tree / "infill" / "warmstart.py").exists()
    assert baseline.env_for(tree)["PYTHONPATH"] == str(tree)


def test_paired_difference_and_its_interval():
    a = [True] * 30 + [False] * 30
    mean, lo, hi = quality_sxs.paired(a, a)
    assert (mean, lo, hi) == (0.0, 0.0, 0.0)
    mean, lo, hi = quality_sxs.paired(a, [True] * 60)
    assert mean == 0.5 and lo < 0.5 < hi and lo > 0
