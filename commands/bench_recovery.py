"""`run.py bench recovery --kills N`: SIGKILL one rank of a 2-rank torchrun job N times, at random steps,
and count the jobs that `--max-restarts 1` with `trainer.resume=auto` brings to the uninterrupted weights.

The recipe is the demo config at tiny sizes on the built-in synthetic data (written to a temporary
folder unless `--data DIR` names a dataset folder); `key=value` overrides go to every training run.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import asdict
from pathlib import Path

from bench.recovery import kill_trial, launch, log_tail, random_kills, train_command
from configs.compose import CONFIG_DIR, Config, load_config
from data_prep.synthetic import write_dataset
from errors import UserError

RECIPE = ["data.batch_size=1", "data.num_workers=1", "model.dropout=0", "trainer.log_every=1",
          "trainer.threads=1", "trainer.progress_bar=false", "logger.wandb.mode=disabled"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kills", type=int, default=10, help="jobs to run, one SIGKILL each")
    parser.add_argument("--steps", type=int, default=16, help="optimizer steps per job")
    parser.add_argument("--checkpoint-every", type=int, default=3, help="trainer.checkpoint_every of the jobs")
    parser.add_argument("--ranks", type=int, default=2, help="torchrun processes per job")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill steps, ranks and delays")
    parser.add_argument("--data", type=Path, help="dataset folder (default: synthetic, in a temporary folder)")
    parser.add_argument("--json", type=Path, help="write every trial and the total here")


def run_command(args: argparse.Namespace, cfg: Config) -> int:
    if args.kills < 1 or args.steps < 2 or args.ranks < 2:
        raise UserError(f"--kills={args.kills} must be >= 1, --steps={args.steps} >= 2, --ranks={args.ranks} >= 2")
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
        proc = launch(train_command([*overrides, f"run.output_dir={reference}"], args.ranks), work / "reference.log")
        if proc.wait() != 0:
            raise UserError(f"the uninterrupted run failed: {log_tail(work / 'reference.log')}")
        trials = []
        for number, (step, rank, delay) in enumerate(random_kills(args.kills, args.steps, args.ranks, args.seed), 1):
            run = work / f"kill_{number}"
            trial = kill_trial(overrides, run, args.ranks, step, rank, delay, reference / "checkpoints" / "last.pt")
            trials.append(trial)
            verdict = "recovered" if trial.recovered else f"NOT recovered: {log_tail(run.with_suffix('.log'), 3)}"
            print(f"[{number}/{args.kills}] SIGKILL rank {rank} {delay:.2f} s after step {step}: exit {trial.exit_code}, "
                  f"max |dw| {trial.weight_gap:.1e}, {trial.seconds:.0f} s: {verdict}", flush=True)
    recovered = sum(trial.recovered for trial in trials)
    print(f"recovered {recovered}/{len(trials)}")
    if args.json:
        args.json.write_text(json.dumps({"recovered": recovered, "kills": len(trials),
                                         "trials": [{**asdict(t), "recovered": t.recovered} for t in trials]}, indent=1))
    return 0 if recovered == len(trials) else 1
