"""The rule that keeps a conversion honest: settings given by the user may fill in what a checkpoint cannot
tell, never contradict what was read from it; and the report of where each written value came from.

A config is compared flattened to dotted keys (`model.attention.0.mode`), after `settle` has spelled out
what two spellings may say alike (attention placement by `every` or by `blocks`, options left at their
defaults, an empty `inflate`). Every `model.*` key binds (it decides the network), except the dropout and a
block's `implementation` (how, not what); so do the input normalisation's mean and std. The rest
(sampling, test views, crop sizes) is free for the user's `--config` and overrides.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from errors import UserError
from models.backbones.resnet3d import LAYOUTS, default_inflation
from models.placement import PLACEMENT_KEYS, explicit_entry

SECTIONS = ("model", "data", "test")
BINDING = ("model.", "data.transforms.mean", "data.transforms.std")
FREE = ("model.dropout",)
FREE_OPTIONS = ("implementation",)


def flatten(tree: Any, prefix: str = "") -> Dict[str, Any]:
    """Dotted key -> leaf; lists of mappings are addressed by index, other lists are leaves."""
    if isinstance(tree, Mapping):
        items = tree.items()
    elif isinstance(tree, (list, tuple)) and tree and all(isinstance(v, Mapping) for v in tree):
        items = ((str(i), v) for i, v in enumerate(tree))
    else:
        return {prefix: tree}
    flat: Dict[str, Any] = {}
    for key, value in items:
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def binding(key: str) -> bool:
    """Whether `key` decides the network (or its input normalisation), so a user may not change it."""
    return key.startswith(BINDING) and key not in FREE and key.rsplit(".", 1)[-1] not in FREE_OPTIONS


def same(a: Any, b: Any) -> bool:
    """Equal, floats to 1e-6 relative (a mean written as 0.485 is 123.675 / 255)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) \
            and not isinstance(b, bool) and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)
    return a == b


def settle(config: Mapping[str, Any], inferred_model: Mapping[str, Any]) -> Dict[str, Any]:
    """`config` (plain sections) with attention entries completed from the inferred ones (same index and type:
    options the user left out keep the checkpoint's value), a class count of 0 (unset) taken from them, and
    placement, options and inflation spelled out."""
    config = copy.deepcopy(dict(config))
    model = config["model"]
    inferred = list(inferred_model.get("attention") or [])
    layout = LAYOUTS.get(model.get("depth"))
    entries = []
    for index, entry in enumerate(model.get("attention") or []):
        entry = dict(entry)
        if index < len(inferred) and entry.get("type") == inferred[index].get("type"):
            entry.update({k: v for k, v in inferred[index].items() if k not in PLACEMENT_KEYS and k not in entry})
        if layout is not None:
            depths = {f"res{stage}": count for stage, count in zip(range(2, 6), layout[1])}
            entry = explicit_entry(entry, depths, f"model.attention[{index}]")
        entries.append(entry)
    model["attention"] = entries
    if not model.get("num_classes"):  # 0 means "from the data"; here the weights are the data
        model["num_classes"] = inferred_model.get("num_classes", 0)
    if model.get("arch") == "i3d" and not model.get("inflate") and layout is not None:
        model["inflate"] = default_inflation(model["depth"])
    return config


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return "(none)" if value is None else str(value)


def reconcile(stages: Sequence[Tuple[str, Mapping[str, Any]]], sources: Mapping[str, str]) -> List[str]:
    """`stages`: (label, settled config) as composed step by step: the checkpoint's settings, then
    `--config FILE`, then each override; `sources`: where the checkpoint's settings were read, by dotted key.
    Returns the report of the last stage, a line per setting the checkpoint gave or the user changed, each
    naming its source; binding settings changed are one UserError naming each with both values."""
    flats = [flatten({s: config.get(s, {}) for s in SECTIONS}) for _, config in stages]
    inferred, written = flats[0], flats[-1]

    def origin(key: str) -> str:  # the checkpoint's source while the value is the checkpoint's, else the last change
        if key in sources and same(flats[-1].get(key), inferred.get(key)):
            return sources[key]
        for index in range(len(flats) - 1, 0, -1):
            if not same(flats[index].get(key), flats[index - 1].get(key)):
                return stages[index][0]
        return sources.get(key, "the checkpoint's architecture")

    counts = [len(config["model"].get("attention") or []) for _, config in (stages[0], stages[-1])]
    if counts[0] != counts[1]:
        conflicts = [f"model.attention has {counts[0]} entries from the weights, {counts[1]} from "
                     f"{next(origin(k) for k in set(inferred) | set(written) if k.startswith('model.attention.'))}"]
    else:
        conflicts = [f"{key} is {_show(inferred.get(key))} from {sources.get(key, 'the checkpoint')}, "
                     f"{_show(written.get(key))} from {origin(key)}"
                     for key in sorted(set(inferred) | set(written))
                     if binding(key) and not same(inferred.get(key), written.get(key))]
    if conflicts:
        raise UserError("the settings given contradict the checkpoint: " + "; ".join(conflicts)
                        + " (leave these keys out, or give the checkpoint's values)")
    return [f"{key}: {_show(value)}  <- {origin(key)}" for key, value in written.items()
            if key in sources or not same(value, inferred.get(key))]
