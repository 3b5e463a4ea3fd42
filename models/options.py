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
