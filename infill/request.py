"""What callers hand the engine, and what they get back."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .quality import DEFAULTS, quality

DEFAULT_SEED = 0  # what `infill fill` and the language server sample with unless told otherwise: the same input
#                   gives the same middle (a preview predicts the write)

@dataclass(frozen=True)
class InfillRequest:
    """One hole in one document. Give `cursor` (complete at a point) or `span` (regenerate a range)."""

    text: str  # the whole document
    cursor: int | None = None  # code-point offset
    span: tuple[int, int] | None = None  # code-point offsets, end exclusive
    path: str | None = None  # used for language detection and messages
    language: str | None = None  # grammar name; None: from the path, else line-based sizing
    quality: str = DEFAULTS.request  # name of an infill.quality preset
    max_steps: int | None = None  # overrides the preset's step limit
    seed: int | None = DEFAULT_SEED  # the same request gives the same middle; None: a random draw each time
    deadline: float | None = None  # time.monotonic() after which the request fails
    lengths: tuple[int, ...] | None = None  # candidate canvas lengths; None: from the span sizer
    seam_tokens: int | None = None  # suffix tokens clamped at the canvas end; None: engine default
    invoked: bool = True  # asked for (CLI, code action, explicit trigger); False: as-you-type, one canvas row

    def __post_init__(self) -> None:
        if (self.cursor is None) == (self.span is None):
            raise ValueError("give exactly one of cursor or span")
        quality(self.quality)  # an unknown name fails here, listing the presets, not halfway through a batch


@dataclass
class Candidate:
    length: int
    text: str
    syntax_ok: bool
    confidence: float  # mean log-probability of the chosen tokens
    finished: bool  # the middle ended inside the canvas (an end token, or the seam)


@dataclass
class InfillResult:
    text: str  # the middle, post-processed; replaces [start, end)
    start: int
    end: int
    kind: str
    syntax_ok: bool  # the spliced document passes the language's check (infill.syntax.check_splice)
    steps: int  # denoising steps of the chosen run
    forward_passes: int  # encoder + decoder passes spent on this hole, repairs included
    tokens: int  # tokens in the middle
    seconds: float
    model: str
    language: str | None
    sizing: str
    candidates: list[Candidate] = field(default_factory=list)
    repaired: bool = False
    empty: bool = False  # no suggestion: the model wrote no code (blank or comments only); `text` is ""
    prompt_tokens: int = 0
    reused_prompt_tokens: int = 0

    def to_dict(self) -> dict:
        return asdict(self)
