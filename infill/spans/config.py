"""Settings of the span sizer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SizingConfig:
    """How candidate canvas lengths are chosen. Lengths are in tokens and include the end token."""

    max_canvas: int = 256  # longest canvas the sampler is given; no candidate exceeds it
    min_length: int = 2  # shortest candidate: one token of middle plus the end token
    max_candidates: int = 4  # candidates are denoised as one batch, so each one costs a canvas row
    end_tokens: int = 1  # slots after the middle that hold the end token
    chars_per_token: float = 3.2  # fallback ratio when no tokenizer is given (byte-level BPE on code)
    context_lines: int = 12  # non-blank lines sampled on each side of the hole for line sizes and the ratio
    lookback_lines: int = 40  # lines above the hole searched for its statement's start and for siblings
    lookahead_lines: int = 40  # lines below the hole searched for closing brackets and for siblings
    line_quantile: float = 0.75  # quantile of neighbouring code lines taken as "one typical line"
    fallback_line_chars: int = 32  # one line, in characters, when the file has no other code lines
    min_rest_share: float = 0.5  # the rest of a line is at least this share of a typical line
    line_rest: tuple[float, ...] = (0.6, 1.2, 2.6, 6.0)  # rest-of-line candidates, in "rest of a typical line"
    expression_rest: tuple[float, ...] = (0.2, 0.5, 1.2, 2.6)  # inside brackets on one line, same unit
    statement_lines: tuple[float, ...] = (1.0, 2.2, 5.5, 16.0)  # new statements, in typical lines
    block_lines: tuple[float, ...] = (1.5, 4.0, 10.0, 25.0)  # an empty body, in typical lines
    range_slack: tuple[float, ...] = (0.75, 1.25, 2.0)  # range candidates, as multiples of the removed text
    range_pad: int = 2  # tokens added to every range candidate (a rewrite rarely shrinks to nothing)
    # The one candidate an as-you-type request runs (one canvas row, no escalation), as the rung of the ladder
    # per hole kind. On HumanEval single-line holes (the cursor where the middle goes / the rest of a line
    # missing) the first `statement` rung holds the middle on 73% of holes (the second, twice as long, 94%),
    # the second `line` rung on 85% (the first 61%), the first `block` rung on 97%.
    one_row: tuple[tuple[str, int], ...] = (("line", 1), ("expression", 1), ("statement", 0), ("block", 0),
                                            ("range", 1))
    default_indent_unit: str = "    "  # indentation unit when the file shows none

    def __post_init__(self) -> None:
        if not 1 <= self.max_candidates <= 4:
            raise ValueError(f"max_candidates must be 1 to 4, not {self.max_candidates}")
        if not 1 <= self.min_length <= self.max_canvas:
            raise ValueError(f"need 1 <= min_length <= max_canvas, got {self.min_length} and {self.max_canvas}")
        if self.chars_per_token <= 0:
            raise ValueError(f"chars_per_token must be positive, not {self.chars_per_token}")
