"""Real failures on real training processes: launch `run.py train` (alone or under torchrun), find a
rank's process id, wait for a logged step, kill or signal it, and compare the weights a run ends with.

Used by `run.py bench recovery` (repeated SIGKILLs of one rank under `torchrun --max-restarts`) and
by the reliability tests.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from engine.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent


def train_command(overrides: Sequence[str], ranks: int = 1, max_restarts: int = 0) -> List[str]:
    """`python run.py train ...`, or the same under `torchrun --standalone` with `ranks` processes."""
    if ranks == 1 and max_restarts == 0:
        return [sys.executable, "run.py", "train", *overrides]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks),
            "--max-restarts", str(max_restarts), "run.py", "train", *overrides]


def launch(command: Sequence[str], log: Path) -> subprocess.Popen:
    """Start `command` in the project root, stdout and stderr into `log`, one thread per process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as handle:
        return subprocess.Popen(list(command), cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)


def logged_steps(run_dir: Path) -> List[int]:
    """The steps of the complete records in `run_dir/metrics.jsonl`, in file order."""
    path = Path(run_dir) / "metrics.jsonl"
    steps = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            steps.append(json.loads(line)["step"])
        except (ValueError, KeyError):
            continue  # a line being written right now
    return steps


def wait_for_step(run_dir: Path, step: int, proc: subprocess.Popen, timeout: float = 120.0) -> int:
    """Block until metrics.jsonl logs `step` or later; the step seen. Raises if `proc` ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        steps = logged_steps(run_dir)
        if steps and max(steps) >= step:
            return max(steps)
        if proc.poll() is not None:
            raise RuntimeError(f"the run ended (exit code {proc.returncode}) before step {step}")
        time.sleep(0.02)
    raise TimeoutError(f"step {step} not logged within {timeout:.0f} s")


def _parent_pid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as handle:
        return int(handle.read().rsplit(")", 1)[1].split()[1])


def _environment(pid: int) -> Dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as handle:
        items = handle.read().decode(errors="replace").split("\0")
    return dict(item.split("=", 1) for item in items if "=" in item)


def rank_pids(launcher_pid: int) -> Dict[int, int]:
    """{rank: pid} of the training processes torchrun (`launcher_pid`) runs now (Linux /proc)."""
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if _parent_pid(int(name)) == launcher_pid:
                rank = _environment(int(name)).get("RANK")
                if rank is not None:
                    found[int(rank)] = int(name)
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we looked
    return found


def signal_rank(launcher_pid: int, rank: int, sig: signal.Signals, timeout: float = 30.0) -> int:
    """Send `sig` to the process of `rank` under torchrun; its pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = rank_pids(launcher_pid).get(rank)
        if pid is not None:
            os.kill(pid, sig)
            return pid
        time.sleep(0.05)
    raise TimeoutError(f"no process of rank {rank} under pid {launcher_pid}")


BN_STATISTICS = ("running_mean", "running_var")


def weight_gap(a: Path, b: Path, buffers: bool = True) -> float:
    """Max |difference| over the floating-point tensors of two checkpoints' models (inf: other keys);
    `buffers=False` leaves out BatchNorm running statistics (which depend on the per-forward batches)."""
    first, second = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    if set(first) != set(second):
        return float("inf")
    names = [k for k in first if first[k].is_floating_point() and (buffers or not k.endswith(BN_STATISTICS))]
    gaps = [(first[k].double() - second[k].double()).abs().max().item() for k in names]
    return max(gaps, default=0.0)


@dataclass
class Trial:
    """One kill: where, and how the job ended."""

    step: int
    rank: int
    exit_code: int
    weight_gap: float
    duplicated_steps: int
    seconds: float

    @property
    def recovered(self) -> bool:
        return self.exit_code == 0 and self.weight_gap <= 1e-6 and self.duplicated_steps == 0


def duplicated_steps(run_dir: Path) -> int:
    """How many records of metrics.jsonl repeat an earlier one's step and kind (the same keys): 0 after
    a clean resume. A step has one record of each kind (training window, evaluation, image)."""
    seen, repeats = set(), 0
    path = Path(run_dir) / "metrics.jsonl"
    for line in path.read_text().splitlines() if path.is_file() else []:
        record = json.loads(line)
        kind = (record["step"], tuple(sorted(record)))
        repeats += kind in seen
        seen.add(kind)
    return repeats


def kill_trial(overrides: Sequence[str], run_dir: Path, ranks: int, step: int, rank: int, delay: float,
               reference: Path, timeout: float = 300.0) -> Trial:
    """Run a torchrun job with one restart allowed, SIGKILL `rank` `delay` s after `step` is logged,
    and compare the job's final weights with `reference` (a checkpoint of the uninterrupted run)."""
    started = time.monotonic()
    command = train_command([*overrides, f"run.output_dir={run_dir}", "trainer.resume=auto"], ranks, max_restarts=1)
    run_dir.mkdir(parents=True, exist_ok=True)
    proc = launch(command, run_dir.with_suffix(".log"))
    try:
        wait_for_step(run_dir, step, proc)
        time.sleep(delay)
        signal_rank(proc.pid, rank, signal.SIGKILL)
        code = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    last = run_dir / "checkpoints" / "last.pt"
    gap = weight_gap(last, reference) if code == 0 and last.is_file() else float("inf")
    return Trial(step, rank, code, gap, duplicated_steps(run_dir), time.monotonic() - started)


def random_kills(count: int, steps: int, ranks: int, seed: int) -> List[tuple]:
    """(step, rank, delay) for `count` kills: a random logged step before the last, a random rank,
    and a random extra delay of up to half a second so kills land anywhere inside a step."""
    rng = np.random.default_rng(seed)
    return [(int(rng.integers(1, steps)), int(rng.integers(ranks)), float(rng.uniform(0, 0.5)))
            for _ in range(count)]


def log_tail(path: Path, lines: int = 5) -> Optional[str]:
    """The last lines of a run's log, for a report on a job that did not recover."""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else None
