"""One code path for a single process and for torchrun: process group, device, rank-aware helpers.

torchrun (single- or multi-node, through its rendezvous arguments) sets RANK/WORLD_SIZE/LOCAL_RANK;
without them the run is a world of one and no process group is created. NCCL on GPU, gloo on CPU.

Under torchrun the process group meets in the agent's TCPStore, which the agent creates once and keeps
for every restart of its workers (`--max-restarts`). The keys a process group leaves there (each rank's
gloo address) outlive a failed attempt, so a restarted rank could read its peer's address from the dead
attempt and fail in gloo's connectFullMesh ("Connection refused"). Each attempt therefore meets under
its own key prefix.

Intra-op threads (`choose_threads`) follow one rule for every launch, so that `--standalone` and
several agents give the same float order: the cores this process may use, shared among the job's ranks
on the same host whose cores overlap with them.
"""
from __future__ import annotations

import logging
import os
import socket
import warnings
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, List, Optional, Tuple

import torch
import torch.distributed as dist
from torch import nn

from errors import UserError

BACKENDS = {"cuda": "nccl", "cpu": "gloo"}


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job and which device it computes on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError as exc:
        raise UserError(f"environment variable {name}={value!r} is not an integer") from exc


def _choose_device(requested: str, local_rank: int) -> torch.device:
    if requested not in ("auto", "cpu", "cuda"):
        raise UserError(f"trainer.device={requested!r}: expected auto, cpu or cuda")
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError("trainer.device=cuda but no CUDA device is available; use trainer.device=cpu")
    if requested == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    index = local_rank % torch.cuda.device_count()
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


PROCESS_GROUP_TIMEOUT = timedelta(minutes=30)  # torch's default for collectives and for joining


def attempt_store(world_size: int) -> Optional[dist.Store]:
    """The elastic agent's store seen under a prefix unique to this restart attempt (see the module
    docstring), or None outside torchrun's shared-store mode (torch then builds the store itself)."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    store = dist.TCPStore(os.environ["MASTER_ADDR"], _env_int("MASTER_PORT", 0), world_size, is_master=False,
                          timeout=PROCESS_GROUP_TIMEOUT)
    return dist.PrefixStore(f"video-nl/attempt_{_env_int('TORCHELASTIC_RESTART_COUNT', 0)}", store)


def init_distributed(device: str = "auto") -> DistContext:
    """Join the torchrun job if there is one (else a world of one) and pick this rank's device."""
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    chosen = _choose_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = BACKENDS[chosen.type]
        device_id = chosen if chosen.type == "cuda" else None
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size, device_id=device_id,
                                store=attempt_store(world_size), timeout=PROCESS_GROUP_TIMEOUT)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=chosen)


def choose_threads(requested: int, ctx: DistContext) -> Tuple[int, str]:
    """Intra-op threads for this rank and the one line that says why (a collective): `requested` when
    > 0 (`trainer.threads`), else this process's usable cores divided by the ranks on this host whose
    usable cores overlap with them. torchrun's OMP_NUM_THREADS (1 only when nproc_per_node > 1) is
    ignored: it would make two nodes compute differently from one node with the same ranks."""
    cores = frozenset(os.sched_getaffinity(0))
    places = all_gather_objects((socket.gethostname(), cores), ctx)
    sharing = sum(host == places[ctx.rank][0] and bool(used & cores) for host, used in places)
    threads = requested if requested > 0 else max(1, len(cores) // sharing)
    chosen = sorted(set(all_gather_objects(threads, ctx)))
    counts = "/".join(str(count) for count in chosen)
    if requested > 0:
        return threads, f"intra-op threads: {counts} per rank (trainer.threads)"
    return threads, (f"intra-op threads: {counts} per rank (usable cores / ranks sharing them on a host: "
                     f"{len(cores)}/{sharing} on rank {ctx.rank}; trainer.threads=N pins it)")


def shutdown(ctx: DistContext) -> None:
    """Leave the process group (a no-op for a world of one)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def all_reduce_sum(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """The elementwise sum of `values` over all ranks (a copy; the input is left untouched)."""
    total = values.detach().clone().to(ctx.device)
    if ctx.distributed:
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total.cpu()


def any_rank(flag: bool, ctx: DistContext) -> bool:
    """True on every rank when `flag` is true on at least one (a collective)."""
    return bool(all_reduce_sum(torch.tensor([int(flag)]), ctx).item())


def all_gather_objects(obj: Any, ctx: DistContext) -> List[Any]:
    """Every rank's `obj`, in rank order (pickled; for per-video results and small records)."""
    if not ctx.distributed:
        return [obj]
    gathered: List[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's `obj` on every rank."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_buffers(model: nn.Module, ctx: DistContext) -> None:
    """Give every rank rank 0's buffers (BN running statistics), e.g. before evaluating."""
    if ctx.distributed:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def tag_warnings(rank: int) -> None:
    """Prefix `[rank R]` to the Python warnings and log records this process prints, so a warning of any
    rank of a torchrun job says where it came from."""
    show = warnings.showwarning

    def show_tagged(message, category, filename, lineno, file=None, line=None):
        show(f"[rank {rank}] {message}", category, filename, lineno, file, line)

    warnings.showwarning = show_tagged
    make_record = logging.getLogRecordFactory()

    def tagged_record(*args, **kwargs) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        if isinstance(record.msg, str):
            record.msg = f"[rank {rank}] {record.msg}"
        return record

    logging.setLogRecordFactory(tagged_record)
