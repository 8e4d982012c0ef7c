"""The pipelines' error type and the argument checks every task shares (one text, three frameworks)."""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import OneLineError, short


class PipelineError(OneLineError, ValueError):
    """A pipeline was asked for something it cannot do: an unknown task or option, a model whose
    head does not fit the task, or an input that is not what the task reads."""


def check_text(value, where: str) -> str:
    """`value` when it is a string; otherwise a `PipelineError` naming `where`."""
    if not isinstance(value, str):
        raise PipelineError(f"{where} must be a string, got {type(value).__name__} ({short(value, 60)})")
    return value


def check_top_k(value, where: str = "top_k", allow_none: bool = False):
    """A positive int (or None where the task takes None for "all")."""
    if value is None and allow_none:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        expected = "a positive integer or None" if allow_none else "a positive integer"
        raise PipelineError(f"{where} must be {expected}, got {short(value, 60)}")
    return value


def check_positive_int(value, where: str, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise PipelineError(f"{where} must be an integer of at least {minimum}, got {short(value, 60)}")
    return value


def check_bool(value, where: str) -> bool:
    if not isinstance(value, bool):
        raise PipelineError(f"{where} must be True or False, got {short(value, 60)}")
    return value


def check_choice(value, where: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value.lower() not in choices:
        raise PipelineError(f"{where} must be one of {', '.join(map(repr, choices))}, got {short(value, 60)}")
    return value.lower()


def check_known_options(task: str, options: Mapping, known) -> None:
    """Refuse an option the task does not take (a misspelling is an error, never ignored)."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise PipelineError(
            f"{task} pipeline got unknown option {short(unknown[0], 60)}; "
            f"it takes: {', '.join(sorted(known))}"
        )
