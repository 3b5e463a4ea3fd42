"""Checks of block options that raise `UserError` naming the option, its value and what is allowed."""
from __future__ import annotations

from typing import Any, Sequence

from errors import UserError


def check_choice(option: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise UserError(f"{option}='{value}' is not one of {', '.join(choices)}")
    return value


def check_positive_int(option: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{option}={value!r} must be a positive integer")
    return value


def reduced_width(channels: int, reduction: Any, option: str) -> int:
    """channels // reduction (at least 1), after checking that `option` (the reduction) is valid."""
    return max(1, channels // check_positive_int(option, reduction))
