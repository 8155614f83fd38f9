"""Between the daemon's wire messages and the engine's types, in one place for the daemon and the language
server's embedded engine:

    InfillMessage ──request()──▶ InfillRequest ──Engine──▶ InfillResult ──result()──▶ ResultMessage
                                                    └──── an exception ──error()──▶ FillError (an ErrorCode)

and back, for `infill fill` through a daemon (`server.remote`): InfillRequest ──message()──▶ InfillMessage,
ResultMessage ──result_of()──▶ InfillResult, FillError ──engine_error()──▶ the engine's exception.

No torch and no websockets here: the engine's request and error types are plain Python.
"""

from __future__ import annotations

from dataclasses import asdict

from infill.errors import BadInputError, CancelledError, DeadlineExceededError, InfillError
from infill.request import Candidate, InfillRequest, InfillResult

from .protocol import ErrorCode, FillError, InfillMessage, ResultMessage

# Engine errors that are answered as what they are; any other exception (out of memory, a bug in a backend)
# is a model error, its type named in the message.
CODES: dict[type[Exception], str] = {
    CancelledError: ErrorCode.CANCELLED,
    DeadlineExceededError: ErrorCode.DEADLINE,
    BadInputError: ErrorCode.BAD_INPUT,
}


def request(msg: InfillMessage, received: float) -> InfillRequest:
    """The engine's request for `msg`, received at `received` (time.monotonic()): its deadline counts from then."""
    deadline = None if msg.deadline_ms is None else received + msg.deadline_ms / 1000
    return InfillRequest(text=msg.text, cursor=msg.cursor, span=msg.range, path=msg.path, language=msg.language,
                         quality=msg.quality, max_steps=msg.max_steps or None, seed=msg.seed, deadline=deadline,
                         lengths=msg.lengths, invoked=msg.invoked)  # max_steps 0 on the wire: the preset's budget


def result(request_id: str, r: InfillResult, queued_seconds: float = 0.0, batch_size: int = 1) -> ResultMessage:
    """The wire answer for an engine result; `queued_seconds` and `batch_size` are the daemon's to say."""
    return ResultMessage(
        id=request_id, text=r.text, start=r.start, end=r.end, syntax_ok=r.syntax_ok, kind=r.kind, steps=r.steps,
        forward_passes=r.forward_passes, tokens=r.tokens, seconds=round(r.seconds, 6),
        queued_seconds=round(queued_seconds, 6), batch_size=batch_size, model=r.model, language=r.language,
        sizing=r.sizing, prompt_tokens=r.prompt_tokens, reused_prompt_tokens=r.reused_prompt_tokens,
        repaired=r.repaired, candidates=tuple(asdict(c) for c in r.candidates))


def error(exc: BaseException) -> FillError:
    """The error a failed fill is answered with."""
    for kind, code in CODES.items():
        if isinstance(exc, kind):
            return FillError(code, str(exc))
    return FillError(ErrorCode.MODEL, f"{type(exc).__name__}: {exc}")


def message(request_id: str, req: InfillRequest) -> InfillMessage:
    """The wire message for an engine request (no deadline: a person at a terminal waits)."""
    return InfillMessage(id=request_id, text=req.text, cursor=req.cursor, range=req.span, path=req.path,
                         language=req.language, quality=req.quality, max_steps=req.max_steps, seed=req.seed,
                         lengths=req.lengths, invoked=req.invoked)


def result_of(msg: ResultMessage) -> InfillResult:
    """The engine's result for a daemon's answer."""
    return InfillResult(
        text=msg.text, start=msg.start, end=msg.end, kind=msg.kind, syntax_ok=msg.syntax_ok, steps=msg.steps,
        forward_passes=msg.forward_passes, tokens=msg.tokens, seconds=msg.seconds, model=msg.model,
        language=msg.language, sizing=msg.sizing, candidates=[Candidate(**c) for c in msg.candidates],
        repaired=msg.repaired, prompt_tokens=msg.prompt_tokens, reused_prompt_tokens=msg.reused_prompt_tokens)


def engine_error(exc: FillError) -> InfillError:
    """The engine exception a daemon's error code stands for (the inverse of `error`)."""
    for kind, code in CODES.items():
        if exc.code == code:
            return kind(exc.message)
    return InfillError(f"the daemon failed this request ({exc.code}): {exc.message}")
