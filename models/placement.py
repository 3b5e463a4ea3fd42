"""Place attention blocks after residual blocks, from `model.attention` entries.

An entry is `{type: NAME, stages: [3, 4], blocks: [1, 3] | every: K, **options}`: `stages` are ResNet
stage numbers (2..5); `blocks` are 0-based residual block indices, one list for all stages or one list
per stage; `every: K` means blocks K-1, 2K-1, ... (the non-local paper's "every other block" is
`every: 2`); with neither, every block. The remaining keys are the block's constructor options. A block
placed at res4 block 3 is named "res4.3.<type>".
"""
from __future__ import annotations

import inspect
from typing import Any, Dict, List, Mapping, Sequence

from torch import nn

from errors import UserError
from models.registry import ATTENTION

PLACEMENT_KEYS = ("type", "stages", "blocks", "every")


def _block_options(cls: type) -> List[str]:
    params = list(inspect.signature(cls.__init__).parameters)
    return [p for p in params if p not in ("self", "in_channels")]


def _as_list(value: Any, where: str, key: str) -> List[Any]:
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if isinstance(value, Sequence) and not isinstance(value, str):
        return list(value)
    raise UserError(f"{where}: '{key}' must be an integer or a list, got {value!r}")


def _block_indices(entry: Mapping[str, Any], stage_pos: int, num_blocks: int, where: str) -> List[int]:
    if "blocks" in entry and "every" in entry:
        raise UserError(f"{where}: give either 'blocks' or 'every', not both")
    if "every" in entry:
        every = entry["every"]
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise UserError(f"{where}: 'every' must be a positive integer, got {every!r}")
        return list(range(every - 1, num_blocks, every))
    if "blocks" not in entry:
        return list(range(num_blocks))
    blocks = _as_list(entry["blocks"], where, "blocks")
    if blocks and all(isinstance(b, Sequence) and not isinstance(b, str) for b in blocks):
        stages = _as_list(entry["stages"], where, "stages")
        if len(blocks) != len(stages):
            raise UserError(f"{where}: 'blocks' has {len(blocks)} lists for {len(stages)} stages")
        blocks = list(blocks[stage_pos])
    for block in blocks:
        if isinstance(block, bool) or not isinstance(block, int):
            raise UserError(f"{where}: block index {block!r} is not an integer")
    return blocks


def _construct(cls: type, kind: str, channels: int, options: Dict[str, Any], where: str) -> nn.Module:
    try:
        return cls(channels, **options)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise UserError(f"{where} ({kind}): bad option value: {exc}") from exc


def explicit_entry(entry: Mapping[str, Any], stage_depths: Mapping[str, int], where: str) -> Dict[str, Any]:
    """`entry` with its placement spelled out (one block list per stage, no `every`) and every option of its
    block type at its value or default, so two entries that build the same blocks compare equal."""
    if not isinstance(entry, Mapping) or "type" not in entry or "stages" not in entry:
        raise UserError(f"{where} needs both 'type' and 'stages'")
    cls = ATTENTION.get(entry["type"])
    stages = _as_list(entry["stages"], where, "stages")
    blocks = [_block_indices(entry, pos, stage_depths.get(f"res{stage}", 0), where) for pos, stage in enumerate(stages)]
    defaults = {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
                if name in _block_options(cls) and p.default is not inspect.Parameter.empty}
    options = {k: v for k, v in entry.items() if k not in PLACEMENT_KEYS}
    return {"type": entry["type"], "stages": stages, "blocks": blocks, **defaults, **options}


def place_attention(backbone: nn.Module, entries: Sequence[Mapping[str, Any]]) -> None:
    """Construct and attach the blocks; any impossible placement is a `UserError` naming the entry."""
    for index, entry in enumerate(entries):
        where = f"model.attention[{index}]"
        if not isinstance(entry, Mapping):
            raise UserError(f"{where} must be a mapping with 'type' and 'stages', got {entry!r}")
        if "type" not in entry or "stages" not in entry:
            raise UserError(f"{where} needs both 'type' and 'stages'")
        kind = entry["type"]
        try:
            cls = ATTENTION.get(kind)
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from exc
        allowed = _block_options(cls)
        options = {k: v for k, v in entry.items() if k not in PLACEMENT_KEYS}
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise UserError(f"{where} ({kind}): unknown option '{unknown[0]}'; "
                            f"options are {', '.join(allowed) or 'none'}")
        for stage_pos, stage in enumerate(_as_list(entry["stages"], where, "stages")):
            stage_name = f"res{stage}"
            if stage_name not in backbone.stage_depths:
                raise UserError(f"{where}: stage {stage!r} does not exist (stages are 2..5)")
            num_blocks = backbone.stage_depths[stage_name]
            for j in _block_indices(entry, stage_pos, num_blocks, where):
                if not 0 <= j < num_blocks:
                    raise UserError(f"{where}: block {j} of {stage_name} does not exist "
                                    f"({stage_name} has {num_blocks} blocks: 0..{num_blocks - 1})")
                block = backbone.residual_block(stage_name, j)
                if kind in block.attention:
                    raise UserError(f"{where}: {stage_name}.{j}.{kind} is placed twice")
                channels = backbone.stage_channels[stage_name]
                block.attention[kind] = _construct(cls, kind, channels, options, where)
