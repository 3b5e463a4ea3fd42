"""Real failures on real training processes: launch `run.py train` (alone or under torchrun), find a
rank's process id, wait for a logged step, kill or signal it, and compare the weights a run ends with.

Nodes are simulated by torchrun agents on one host, each with its own share of the cores, meeting
in a c10d rendezvous on 127.0.0.1; losing a node is a SIGKILL of its agent and every process under it.
Used by `run.py bench recovery` (repeated SIGKILLs of one rank under `torchrun --max-restarts`, or of
whole nodes) and by the reliability tests.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
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


def launch(command: Sequence[str], log: Path, env: Optional[Dict[str, str]] = None, stdin=None) -> subprocess.Popen:
    """Start `command` in the project root, stdout and stderr into `log` (appended), with `env` added."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1", **(env or {})}
    with open(log, "a") as handle:
        return subprocess.Popen(list(command), cwd=ROOT, env=env, stdin=stdin, stdout=handle, stderr=subprocess.STDOUT)


# Quicker failure detection for simulated nodes: a node is gone after 5 missed heartbeats 2 s apart, and a
# rendezvous that has its minimum of nodes waits 3 s more for the others. (With 3 x 1 s, a node waiting
# to rejoin was at times taken for dead between its heartbeats and never admitted.)
RDZV_CONF = "join_timeout=300,last_call_timeout=3,keep_alive_interval=2,keep_alive_max_attempt=5"
# torchrun's agents share their rendezvous store with the workers unless this is set; a node that comes
# back to a running job needs it off (docs/distributed.md).
REJOIN_ENV = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# torchrun, loaded and then waiting for a line on stdin: a node whose start is timed to the moment
HELD_TORCHRUN = "import sys, torch.distributed.run as run; sys.stdin.readline(); run.main()"


def node_command(overrides: Sequence[str], nnodes: str, port: int, job: str, hosts_store: bool,
                 cores: Sequence[int], max_restarts: int = 3, held: bool = False) -> List[str]:
    """One node's `torchrun --nnodes NNODES --nproc_per_node 1` with a c10d rendezvous on 127.0.0.1:port,
    pinned to `cores` (its share of the host); `hosts_store`: this node hosts the rendezvous store;
    `held`: it starts when a line arrives on its stdin."""
    runner = ["-c", HELD_TORCHRUN] if held else ["-m", "torch.distributed.run"]
    return ["taskset", "-c", ",".join(map(str, cores)), sys.executable, *runner,
            "--nnodes", nnodes, "--nproc_per_node", "1", "--rdzv_backend", "c10d",
            "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", job,
            "--rdzv_conf", f"is_host={int(hosts_store)},{RDZV_CONF}", "--max-restarts", str(max_restarts),
            "run.py", "train", *overrides]


def node_cores(nodes: int) -> List[List[int]]:
    """This process's usable cores cut into `nodes` shares (all of them each when there are fewer)."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < nodes:
        return [cores] * nodes
    share = len(cores) // nodes
    return [cores[i * share:(i + 1) * share] for i in range(nodes)]


def descendants(pid: int) -> List[int]:
    """`pid` and every process under it (Linux /proc), parents first."""
    children: Dict[int, List[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                children.setdefault(_parent_pid(int(name)), []).append(int(name))
            except (OSError, IndexError, ValueError):
                continue  # the process ended while we looked
    found, queue = [], [pid]
    while queue:
        found.append(queue.pop(0))
        queue += children.get(found[-1], [])
    return found


def kill_tree(proc: subprocess.Popen, dump_stacks: bool = False) -> None:
    """SIGKILL `proc` and every process under it (a lost node: its agent, ranks, loader workers); with
    `dump_stacks`, SIGABRT the processes under it first, so their Python stacks reach the log."""
    if dump_stacks:
        for pid in descendants(proc.pid)[1:]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGABRT)
        time.sleep(2)
    for pid in descendants(proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()


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
    tolerance: float = 1e-6  # the largest weight gap that counts as recovered
    rejoined: Optional[bool] = None  # rejoin trials: whether the node that came back trained with the survivor

    @property
    def recovered(self) -> bool:
        return (self.exit_code == 0 and self.weight_gap <= self.tolerance and self.duplicated_steps == 0
                and self.rejoined is not False)


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


# A job that shrank keeps its samples and optimizer math; the float order of the gradient sums may
# differ, and BN running statistics (which only rank 0's forwards update under DDP) are left out.
SHRINK_TOLERANCE = 1e-4


def wait_for_line(log: Path, text: str, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    """Block until `text` appears in `log`; raises if `proc` ends first or on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{log}: the node ended (exit code {proc.returncode}) before '{text}'")
        time.sleep(0.05)
    raise TimeoutError(f"{log}: '{text}' not seen within {timeout:.0f} s")


class Nodes:
    """Two simulated nodes of one training job (`--nnodes NNODES`, one rank each, node 0 hosts the
    rendezvous store); on exit every process they started is killed. Node i logs to RUN.node<i>.log."""

    def __init__(self, overrides: Sequence[str], run_dir: Path, nnodes: str, env: Optional[Dict[str, str]] = None):
        self.overrides = [*overrides, f"run.output_dir={run_dir}", "trainer.resume=auto"]
        self.run_dir, self.nnodes, self.env = Path(run_dir), nnodes, env
        self.port, self.cores = free_port(), node_cores(2)
        self.procs: List[Optional[subprocess.Popen]] = [None, None]
        self.started: List[subprocess.Popen] = []
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def log(self, node: int) -> Path:
        return self.run_dir.with_name(f"{self.run_dir.name}.node{node}.log")

    def start(self, node: int, held: bool = False) -> subprocess.Popen:
        """Start (or start again, as a scheduler would) node `node`'s torchrun agent; `held`: loaded,
        waiting for `release(node)`."""
        command = node_command(self.overrides, self.nnodes, self.port, self.run_dir.name, node == 0, self.cores[node],
                               held=held)
        self.procs[node] = launch(command, self.log(node), self.env, stdin=subprocess.PIPE if held else None)
        self.started.append(self.procs[node])
        return self.procs[node]

    def release(self, node: int) -> None:
        """Let a held node's agent go on to the rendezvous."""
        self.procs[node].stdin.write(b"go\n")
        self.procs[node].stdin.close()

    def kill(self, node: int) -> None:
        """Lose node `node`: SIGKILL its agent and everything under it."""
        kill_tree(self.procs[node])
        self.procs[node] = None

    def wait(self, timeout: float) -> int:
        """The job's exit code: 0 when every running agent exits 0 within `timeout` s."""
        deadline = time.monotonic() + timeout
        codes = [proc.wait(timeout=max(deadline - time.monotonic(), 1)) for proc in self.procs if proc is not None]
        return max(codes, key=abs)

    def __enter__(self) -> "Nodes":
        return self

    def __exit__(self, *exc) -> None:
        """Kill what is still running (a job that hung leaves its ranks' stacks in the logs)."""
        for proc in self.started:
            if proc.poll() is None:
                kill_tree(proc, dump_stacks=True)


def _node_trial(nodes: Nodes, step: int, exit_code: int, reference: Path, started: float, tolerance: float,
                buffers: bool, rejoined: Optional[bool] = None) -> Trial:
    last = nodes.run_dir / "checkpoints" / "last.pt"
    gap = weight_gap(last, reference, buffers=buffers) if exit_code == 0 and last.is_file() else float("inf")
    return Trial(step, 1, exit_code, gap, duplicated_steps(nodes.run_dir), time.monotonic() - started, tolerance,
                 rejoined)


def rejoined_mid_run(logs: str) -> bool:
    """Whether the survivor was stopped for a returning node (SIGTERM, last.pt at that step) and the two
    ranks went on from that step, before the last one."""
    stopped = re.findall(r"stopped by SIGTERM after step (\d+)", logs)
    resumed = re.findall(r"this run has 2 x \d+: continuing at .*\n(?:.*\n)?resuming from .* at step (\d+)", logs)
    return bool(stopped) and stopped[-1] in resumed


def shrink_trial(overrides: Sequence[str], run_dir: Path, step: int, reference: Path, rejoin: bool = False,
                 timeout: float = 300.0) -> Trial:
    """A `--nnodes 1:2` job loses node 1 (its agent and rank, SIGKILL) after `step` is logged: node 0
    goes on alone from last.pt, accumulating the lost rank's micro-batches. With `rejoin`, node 1 is
    started again as soon as node 0 has resumed alone, and the job grows back to two ranks. The weights
    are compared with `reference` (an uninterrupted 2-rank run) without BN running statistics."""
    started = time.monotonic()
    with Nodes(overrides, run_dir, "1:2", REJOIN_ENV if rejoin else None) as nodes:
        nodes.start(1)  # the store's client waits for its host: both join the first round together
        nodes.start(0)
        wait_for_step(run_dir, step, nodes.procs[0])
        nodes.kill(1)
        if rejoin:
            nodes.start(1, held=True)  # loading torch takes longer than the survivor's remaining steps
            wait_for_line(nodes.log(0), "1 ranks x data.batch_size", nodes.procs[0])
            nodes.release(1)
        code = nodes.wait(timeout)
    rejoined = rejoined_mid_run("".join(nodes.log(i).read_text(errors="replace") for i in (0, 1))) if rejoin else None
    return _node_trial(nodes, step, code, reference, started, SHRINK_TOLERANCE, buffers=False, rejoined=rejoined)


def requeue_trial(overrides: Sequence[str], run_dir: Path, step: int, reference: Path,
                  timeout: float = 300.0) -> Trial:
    """A `--nnodes 2` job loses both nodes (SIGKILL) after `step` is logged and is started again as a
    whole with trainer.resume=auto; its weights are compared with `reference` exactly, buffers included."""
    started = time.monotonic()
    with Nodes(overrides, run_dir, "2") as nodes:
        nodes.start(1)
        nodes.start(0)
        wait_for_step(run_dir, step, nodes.procs[0])
        nodes.kill(1)
        nodes.kill(0)
        nodes.start(1)
        nodes.start(0)
        code = nodes.wait(timeout)
    return _node_trial(nodes, step, code, reference, started, 1e-6, buffers=True)
