"""What can go wrong with a runner, as the server sees it.

Each ``protocol.Failed`` kind becomes one of these on the server's side
(``from_failure``), so the model service can sort them by the status they earn: the
client's request (400s) or the model's failure (500s).
"""

from __future__ import annotations

from .protocol import Failed

__all__ = [
    "BadRequest",
    "CompileTimeout",
    "ConstraintFailed",
    "ContextOverflow",
    "LoadFailed",
    "PromptTooLong",
    "RunnerDied",
    "RunnerError",
    "UnsupportedSchema",
    "from_failure",
]


class RunnerError(Exception):
    """llama.cpp failed: a file it cannot load, a failed decode, a closed runner."""


class RunnerDied(RunnerError):
    """The runner process ended while this request needed it (a crash, an abort,
    a kill); the message says how it ended and what it last wrote."""


class LoadFailed(RunnerError):
    """The model could not be loaded, or its load took too long."""


class ConstraintFailed(RunnerError):
    """Constrained generation could not go on (never continued unconstrained)."""


class BadRequest(RunnerError):
    """The request cannot be run as it is: the client's mistake (400)."""


class PromptTooLong(BadRequest):
    """The prompt has more tokens than a slot's context holds."""


class UnsupportedSchema(BadRequest):
    """The constraint cannot be compiled or enforced."""


class CompileTimeout(BadRequest):
    """Compiling the constraint took longer than the configured limit."""


class ContextOverflow(BadRequest):
    """An input to embed has more tokens than the context holds; nothing was run."""

    def __init__(self, message: str, *, index: int, count: int) -> None:
        super().__init__(message)
        self.index = index
        self.count = count


def from_failure(failure: Failed) -> RunnerError:
    """The exception a ``Failed`` reply stands for."""
    match failure.kind:
        case "bad_request":
            return BadRequest(failure.message)
        case "prompt_too_long":
            return PromptTooLong(failure.message)
        case "context_overflow":
            return ContextOverflow(
                failure.message, index=failure.index, count=failure.count
            )
        case "unsupported_schema":
            return UnsupportedSchema(failure.message)
        case "compile_timeout":
            return CompileTimeout(failure.message)
        case "constraint":
            return ConstraintFailed(failure.message)
        case "runner":
            return RunnerError(failure.message)
