"""Weight files and state dicts: the one guarded `torch.load` and the one key/shape check.

Every reader of a weight file (our checkpoints, published checkpoints, ImageNet weights) goes through
`read_torch_file`, and every loader compares keys with `state_dict_mismatch`, so a wrong file always
ends in one `UserError` that names it and what does not fit.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from errors import UserError


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def read_torch_file(path: str | Path, what: str, trust: bool = False, mmap: bool = False,
                    untrusted: str = "only load such a file if you trust it") -> Any:
    """The file loaded onto the CPU (memory-mapped with `mmap`: tensors stay on disk). Only tensors and plain
    types unless `trust` (which runs the file's pickled code); a missing, corrupt or object-holding file is a
    UserError starting with `what` (`untrusted`: what to do about objects)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what}: file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust, mmap=mmap)
    except pickle.UnpicklingError as exc:
        message = str(exc)
        if "Unsupported global" not in message:  # not a refused object: damaged bytes
            detail = message.split("WeightsUnpickler error:", 1)[-1].strip().splitlines()[0][:200]
            raise UserError(f"{what}: {path} is corrupt or not a weight file ({detail})") from exc
        refused = message[message.index("Unsupported global"):].splitlines()[0][:160]
        raise UserError(f"{what}: {path} holds objects other than tensors and plain types ({refused}); "
                        f"{untrusted}") from exc
    except Exception as exc:  # truncated zip, random bytes, torch errors: all mean "not readable"
        raise UserError(f"{what}: {path} is corrupt or not a weight file ({_first_line(exc)})") from exc


def _names(keys: list, shown: int = 3) -> str:
    return f"{', '.join(keys[:shown])}{' ...' if len(keys) > shown else ''} ({len(keys)})"


def state_dict_mismatch(target: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor],
                        ignore: Iterable[str] = (), check_shapes: bool = True) -> str:
    """'' when `given` has exactly `target`'s keys (keys in `ignore` aside) with the same shapes (unless not
    `check_shapes`), else one phrase naming the missing, unexpected and wrongly shaped keys."""
    skip = set(ignore)
    missing = sorted(k for k in target if k not in given and k not in skip)
    unexpected = sorted(k for k in given if k not in target and k not in skip)
    wrong = sorted(f"{k} {tuple(given[k].shape)} vs {tuple(target[k].shape)}" for k in target if check_shapes
                   and k in given and k not in skip and tuple(given[k].shape) != tuple(target[k].shape))
    return "; ".join(f"{label} {_names(keys)}" for label, keys in
                     (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys)
