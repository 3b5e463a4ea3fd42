"""How an optimizer step's global batch is split over ranks and accumulated micro-batches, and how a
resumed run keeps it when the number of ranks changed (a node lost or back).

A run's global batch (ranks x data.batch_size x optim.accumulate when it started) and its position in
the epoch (samples consumed, all ranks) are recorded in its checkpoints. A run resumed with the
checkpoint's data.batch_size and optim.accumulate keeps that global batch whatever its number of
ranks: with half the ranks each accumulates twice the micro-batches, the ones the missing ranks would
have taken (see video/loader.py's TrainSampler). Changing either key starts a new global batch, at the
same global sample position when that is a whole number of the new global batches.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Tuple

from errors import UserError


@dataclass(frozen=True)
class Layout:
    """Ranks x micro-batches of data.batch_size per optimizer step."""

    world_size: int
    batch_size: int
    accumulate: int

    @property
    def global_batch(self) -> int:
        return self.world_size * self.batch_size * self.accumulate

    def describe(self) -> str:
        return (f"{self.world_size} ranks x data.batch_size={self.batch_size} x {self.accumulate} "
                f"micro-batches = {self.global_batch}")


def saved_position(state: Dict[str, Any]) -> Tuple[int, int]:
    """(global batch, samples of the epoch consumed over all ranks) recorded in a checkpoint; checkpoints
    that counted each rank's micro-batches (`batch_in_epoch`) are converted."""
    progress, config = state["progress"], state["config"]
    if "global_batch" in progress:
        return progress["global_batch"], progress["sample_in_epoch"]
    world, batch = len(state["rng"]), config["data"]["batch_size"]
    return world * batch * config["optim"]["accumulate"], progress["batch_in_epoch"] * world * batch


def resumed_layout(here: Layout, state: Dict[str, Any], path: Path) -> Tuple[Layout, List[str]]:
    """The layout a run resumed from `state` trains with (`here` is what its config and world size say),
    and the notes that say what differs from the checkpoint; a UserError when it cannot continue."""
    global_batch, consumed = saved_position(state)
    data, optim = state["config"]["data"], state["config"]["optim"]
    world = len(state["rng"])
    same_recipe = (data["batch_size"], optim["accumulate"]) == (here.batch_size, here.accumulate)
    if same_recipe:
        per_micro = here.world_size * here.batch_size
        if global_batch % per_micro:
            raise UserError(f"checkpoint {path} keeps a global batch of {global_batch} samples, which {here.world_size} "
                            f"ranks x data.batch_size={here.batch_size} cannot split; set data.batch_size or "
                            "optim.accumulate to start a new global batch")
        layout = replace(here, accumulate=global_batch // per_micro)
    else:
        layout = here
        if consumed % layout.global_batch:
            raise UserError(f"checkpoint {path} was written by {world} ranks x data.batch_size={data['batch_size']}, "
                            f"this run has {here.world_size} ranks x data.batch_size={here.batch_size}: the {consumed} "
                            f"samples consumed in epoch {state['progress']['epoch']} are not a whole number of this "
                            f"run's global batches of {layout.global_batch}; resume with {world} ranks x "
                            f"{data['batch_size']}")
    notes = []
    if layout.accumulate != here.accumulate:
        notes.append(f"note: keeping the global batch of {global_batch} of {path}: {layout.describe()}")
    if world != here.world_size or not same_recipe:
        notes.append(f"note: {path} was written by {world} ranks x batch {data['batch_size']}, this run has "
                     f"{here.world_size} x {here.batch_size}: continuing at sample {consumed} of epoch "
                     f"{state['progress']['epoch']}")
    return layout, notes
