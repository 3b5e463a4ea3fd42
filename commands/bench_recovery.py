"""`run.py bench recovery --kills N`: SIGKILL one rank of a 2-rank torchrun job N times, at random steps,
and count the jobs that `--max-restarts 1` with `trainer.resume=auto` brings to the uninterrupted weights.
`run.py bench recovery --nodes 2 --trials N [--rejoin]`: two torchrun agents as two nodes; N times each,
lose node 1 of a `--nnodes 1:2` job (the survivor must finish within 1e-4 of the uninterrupted weights,
BN running statistics aside; with `--rejoin` also N trials where node 1 comes back) and lose both nodes
of a `--nnodes 2` job that is then started again (bit-equal); recovered/N per kind.

The recipe is the demo config at tiny sizes on the built-in synthetic data (written to a temporary
folder unless `--data DIR` names a dataset folder); `key=value` overrides go to every training run.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Callable, Dict, List

from bench.recovery import (Trial, kill_trial, launch, log_tail, random_kills, requeue_trial, shrink_trial,
                            train_command)
from configs.compose import CONFIG_DIR, Config, load_config
from data_prep.synthetic import write_dataset
from errors import UserError

RECIPE = ["data.batch_size=1", "data.num_workers=1", "trainer.log_every=1", "trainer.eval_every=100",
          "trainer.progress_bar=false", "logger.wandb.mode=disabled"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kills", type=int, default=10, help="jobs to run, one SIGKILL of a rank each")
    parser.add_argument("--nodes", type=int, default=0, help="2: kill whole simulated nodes instead of one rank")
    parser.add_argument("--trials", type=int, default=5, help="with --nodes: jobs per kind of node loss")
    parser.add_argument("--rejoin", action="store_true", help="with --nodes: also trials where the lost node comes back")
    parser.add_argument("--steps", type=int, default=16, help="optimizer steps per job")
    parser.add_argument("--checkpoint-every", type=int, default=3, help="trainer.checkpoint_every of the jobs")
    parser.add_argument("--ranks", type=int, default=2, help="torchrun processes per job (rank kills)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill steps, ranks and delays")
    parser.add_argument("--data", type=Path, help="dataset folder (default: synthetic, in a temporary folder)")
    parser.add_argument("--json", type=Path, help="write every trial and the total here")


def _rank_trials(args: argparse.Namespace, overrides: List[str], work: Path, reference: Path) -> Dict[str, List[Trial]]:
    trials = []
    for number, (step, rank, delay) in enumerate(random_kills(args.kills, args.steps, args.ranks, args.seed), 1):
        run = work / f"kill_{number}"
        trial = kill_trial(overrides, run, args.ranks, step, rank, delay, reference)
        trials.append(trial)
        print(f"[{number}/{args.kills}] SIGKILL rank {rank} {delay:.2f} s after step {step}: exit {trial.exit_code}, "
              f"max |dw| {trial.weight_gap:.1e}, {trial.seconds:.0f} s: {_verdict(trial, run.with_suffix('.log'))}",
              flush=True)
    return {"rank": trials}


NODE_LOSSES: Dict[str, Callable[..., Trial]] = {"shrink": shrink_trial, "rejoin": partial(shrink_trial, rejoin=True),
                                               "requeue": requeue_trial}
NODE_LOSS_TEXT = {"shrink": "node 1 lost, node 0 goes on", "rejoin": "node 1 lost and back",
                  "requeue": "both nodes lost, job started again"}


def _node_trials(args: argparse.Namespace, overrides: List[str], work: Path, reference: Path) -> Dict[str, List[Trial]]:
    kinds = ["shrink", "requeue"] + (["rejoin"] if args.rejoin else [])
    steps = [step for step, _, _ in random_kills(args.trials, args.steps, 2, args.seed)]
    trials: Dict[str, List[Trial]] = {kind: [] for kind in kinds}
    for number, step in enumerate(steps, 1):
        for kind in kinds:  # interleaved, so a change in the machine's load touches every kind alike
            run = work / f"{kind}_{number}"
            trial = NODE_LOSSES[kind](overrides, run, step, reference)
            trials[kind].append(trial)
            print(f"[{number}/{args.trials}] {NODE_LOSS_TEXT[kind]} after step {step}: exit {trial.exit_code}, "
                  f"max |dw| {trial.weight_gap:.1e} (tolerance {trial.tolerance:.0e}), {trial.seconds:.0f} s: "
                  f"{_verdict(trial, run.with_name(f'{run.name}.node0.log'))}", flush=True)
    return trials


def _verdict(trial: Trial, log: Path) -> str:
    return "recovered" if trial.recovered else f"NOT recovered: {log_tail(log, 3)}"


def run_command(args: argparse.Namespace, cfg: Config) -> int:
    if args.kills < 1 or args.steps < 2 or args.ranks < 2 or args.trials < 1 or args.nodes not in (0, 2):
        raise UserError(f"--kills={args.kills} and --trials={args.trials} must be >= 1, --steps={args.steps} >= 2, "
                        f"--ranks={args.ranks} >= 2, --nodes={args.nodes} 0 or 2")
    with tempfile.TemporaryDirectory(prefix="bench_recovery_") as scratch:
        work = Path(scratch)
        data = args.data or work / "data"
        if args.data is None:
            prep = load_config(None, ["prep.synthetic.size=48", "prep.synthetic.train_per_class=2",
                                      "prep.synthetic.val_per_class=1"]).prep.synthetic
            write_dataset(data, prep, progress=False)
        overrides = ["--config", args.config or str(CONFIG_DIR / "experiments" / "demo.yaml"), f"data.root={data}",
                     *RECIPE, f"trainer.max_steps={args.steps}", f"trainer.checkpoint_every={args.checkpoint_every}",
                     *args.overrides]
        reference = work / "reference"
        ranks = 2 if args.nodes else args.ranks
        proc = launch(train_command([*overrides, f"run.output_dir={reference}"], ranks), work / "reference.log")
        if proc.wait() != 0:
            raise UserError(f"the uninterrupted run failed: {log_tail(work / 'reference.log')}")
        last = reference / "checkpoints" / "last.pt"
        trials = (_node_trials if args.nodes else _rank_trials)(args, overrides, work, last)
    totals = {kind: sum(trial.recovered for trial in runs) for kind, runs in trials.items()}
    for kind, runs in trials.items():
        print(f"recovered {totals[kind]}/{len(runs)}" + (f" ({NODE_LOSS_TEXT[kind]})" if args.nodes else ""))
    if args.json:
        args.json.write_text(json.dumps({kind: {"recovered": totals[kind], "trials": len(runs),
                                                "runs": [{**asdict(t), "recovered": t.recovered} for t in runs]}
                                         for kind, runs in trials.items()}, indent=1))
    return 0 if all(totals[kind] == len(runs) for kind, runs in trials.items()) else 1
