"""Memory budgets: parse sizes like `16GiB`, decide what fits, find the largest batch that fits."""
from __future__ import annotations

import re

from errors import UserError

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_bytes(text: str, name: str = "budget") -> int:
    """`16GiB`, `512MB`, `1.5GB` or a plain number -> bytes; a bad value raises UserError naming `name`."""
    match = _SIZE.match(str(text))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise UserError(f"{name} '{text}' is not a size such as 16GiB, 512MiB, 8GB or a number of bytes")
    return int(float(match.group(1)) * _UNITS[unit])


def format_bytes(num: float | None) -> str:
    """Bytes in binary units for tables (`1.50 GiB`); `-` for a missing value."""
    if num is None:
        return "-"
    units = ("B", "KiB", "MiB", "GiB")
    power = 0
    while abs(num) >= 1024 and power < len(units) - 1:
        num /= 1024
        power += 1
    return f"{num:.0f} B" if power == 0 else f"{num:.2f} {units[power]}"


def largest_fitting_batch(footprint: int, batch: int, state_bytes: int, budget: int) -> int:
    """The largest batch whose footprint fits `budget`, from a footprint measured at `batch`.

    The footprint is the fixed parameter state plus activations; every tensor autograd saves has the
    batch as a dimension, so `(footprint - state) / batch` is the cost of one clip. 0: not one clip fits.
    """
    per_clip = (footprint - state_bytes) / batch
    room = budget - state_bytes
    return 0 if room < per_clip else int(room // per_clip)
