"""Typed errors. Every message says what went wrong and what the user can do about it.

    InfillError
    ├── BadInputError          the file, range or option given by the user cannot be used
    │   ├── UnknownLanguageError
    │   ├── FileChangedError   the file changed between reading it and writing the result
    │   └── MissingExtraError  what was asked for needs an optional extra that is not installed
    ├── ModelLoadError         a checkpoint could not be found or loaded
    ├── UnknownStrategyError   a registry was asked for a name it does not hold
    ├── CancelledError         a request was cancelled between denoising steps
    └── DeadlineExceededError  a request ran past its deadline
"""

from __future__ import annotations


class InfillError(Exception):
    """Base class of all errors raised by the infill library."""


class BadInputError(InfillError, ValueError):
    """Input the user can fix: a missing or binary file, a range outside the file, a bad option."""


class UnknownLanguageError(BadInputError):
    """A language was named that no bundled tree-sitter grammar knows."""


class FileChangedError(BadInputError):
    """The file on disk changed after it was read; writing now could lose the user's edits."""


class MissingExtraError(BadInputError):
    """An optional extra (`pip install 'infill[gpu]'`) is needed for what was asked and is not installed."""

    def __init__(self, module: str, extra: str, purpose: str) -> None:
        self.module, self.extra = module, extra
        super().__init__(f"{purpose} needs {module}, from the optional [{extra}] extra: "
                         f"pip install 'infill[{extra}]' (or pip install -e '.[{extra}]' in a checkout)")


class ModelLoadError(InfillError):
    """A model could not be found or loaded."""


class UnknownStrategyError(InfillError, KeyError):
    """A registry lookup for a name that is not registered."""

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        self.kind, self.name, self.known = kind, name, sorted(known)
        super().__init__(f"unknown {kind} {name!r}; choose one of: {', '.join(self.known)}")

    def __str__(self) -> str:  # KeyError would quote the whole message
        return self.args[0]


class CancelledError(InfillError):
    """The request was cancelled; the sampler stopped at the next step boundary."""


class DeadlineExceededError(InfillError):
    """The request ran past its deadline."""


def lookup(registry: dict, kind: str, name: str):
    """Registry lookup with an error that lists the valid names."""
    try:
        return registry[name]
    except KeyError:
        raise UnknownStrategyError(kind, name, list(registry)) from None
