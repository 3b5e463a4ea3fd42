"""Preemption and recovery on real processes: SIGTERM / SIGUSR1 stop a run cleanly after the step in
flight with last.pt there, SIGKILL of one torchrun rank is recovered by `--max-restarts`, and each
resumed run ends with the uninterrupted run's weights; a changed world size resumes at the same
global sample position or is refused in one line; logs can be followed in a redirected file."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bench.recovery import (ROOT, duplicated_steps, kill_trial, launch, logged_steps, signal_rank, train_command,
                               wait_for_step, weight_gap)
from configs.compose import CONFIG_DIR, load_config
from engine.checkpoint import load_checkpoint
from engine.train import train
from errors import UserError

DEMO = CONFIG_DIR / "experiments" / "demo.yaml"
STEPS = 8


@pytest.fixture(scope="module")
def data(synthetic_dataset) -> Path:
    return synthetic_dataset()


def overrides(root: Path, *extra: str) -> list:
    return ["--config", str(DEMO), f"data.root={root}", "data.batch_size=1", "data.num_workers=1",
            "model.dropout=0", f"trainer.max_steps={STEPS}", "trainer.log_every=1", "trainer.checkpoint_every=3",
            "trainer.threads=1", "trainer.progress_bar=false", "logger.wandb.mode=disabled", *extra]


def in_process(root: Path, out: Path, *extra: str) -> dict:
    args = overrides(root, *extra)
    return train(load_config(args[1], args[2:] + [f"run.output_dir={out}"]))


@pytest.fixture(scope="module")
def ddp_reference(data, tmp_path_factory) -> Path:
    """last.pt of an uninterrupted 2-rank torchrun run."""
    out = tmp_path_factory.mktemp("reference") / "ddp"
    proc = launch(train_command([*overrides(data), f"run.output_dir={out}"], ranks=2), out.parent / "ddp.log")
    assert proc.wait(timeout=240) == 0, (out.parent / "ddp.log").read_text()[-2000:]
    return out / "checkpoints" / "last.pt"


def assert_stopped_cleanly(log: str, signal_name: str) -> int:
    """The one resume line, no traceback; the step it names."""
    assert "Traceback" not in log, log[-3000:]
    lines = [line for line in log.splitlines() if line.startswith(f"stopped by {signal_name}")]
    assert len(lines) == 1, log[-3000:]
    assert "trainer.resume=auto" in lines[0]
    return int(re.search(r"after step (\d+)", lines[0]).group(1))


@pytest.mark.slow
def test_sigterm_stops_after_the_step_and_resume_continues_exactly(data, tmp_path):
    """SIGTERM to a single-process run: exit 0, last.pt at the step named, and the resumed run (wandb
    offline: the same wandb run id) ends bit-equal to the uninterrupted run, metrics without repeats."""
    straight = in_process(data, tmp_path / "straight")
    out = tmp_path / "stopped"
    args = [*overrides(data, "logger.wandb.mode=offline"), f"run.output_dir={out}"]
    proc = launch(train_command(args), tmp_path / "stopped.log")
    wait_for_step(out, 3, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    step = assert_stopped_cleanly((tmp_path / "stopped.log").read_text(), "SIGTERM")
    at_stop = load_checkpoint(out / "checkpoints" / "last.pt")
    assert 3 <= at_stop["step"] == step < STEPS and at_stop["progress"]["sample_in_epoch"] == step

    resumed = launch(train_command([*args, "trainer.resume=auto"]), tmp_path / "resumed.log")
    assert resumed.wait(timeout=120) == 0, (tmp_path / "resumed.log").read_text()[-2000:]
    final = load_checkpoint(out / "checkpoints" / "last.pt")
    reference = load_checkpoint(straight["last_checkpoint"])
    assert final["step"] == STEPS
    for name, tensor in reference["model"].items():
        assert torch.equal(tensor, final["model"][name]), name
    assert duplicated_steps(out) == 0 and logged_steps(out) == sorted(logged_steps(out))
    run_id = (out / "wandb_run_id").read_text().strip()
    runs = sorted(path.name for path in (out / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(name.endswith(run_id) for name in runs)


@pytest.mark.slow
def test_sigusr1_to_one_rank_stops_both_at_the_same_step(data, ddp_reference, tmp_path):
    """SLURM's --signal=USR1 reaching only rank 1 of a 2-rank torchrun job: both ranks stop after the
    same step, torchrun exits 0, and the resumed job ends within 1e-6 of the uninterrupted one."""
    out = tmp_path / "run"
    args = [*overrides(data), f"run.output_dir={out}", "trainer.resume=auto"]
    proc = launch(train_command(args, ranks=2), tmp_path / "stopped.log")
    wait_for_step(out, 4, proc)
    signal_rank(proc.pid, 1, signal.SIGUSR1)
    assert proc.wait(timeout=90) == 0, (tmp_path / "stopped.log").read_text()[-3000:]
    step = assert_stopped_cleanly((tmp_path / "stopped.log").read_text(), "SIGUSR1")
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == step < STEPS

    resumed = launch(train_command(args, ranks=2), tmp_path / "resumed.log")
    assert resumed.wait(timeout=120) == 0, (tmp_path / "resumed.log").read_text()[-2000:]
    assert weight_gap(out / "checkpoints" / "last.pt", ddp_reference) <= 1e-6
    assert duplicated_steps(out) == 0


@pytest.mark.slow
def test_a_killed_rank_is_recovered_by_torchrun_restarts(data, ddp_reference, tmp_path):
    """SIGKILL to rank 1 by pid mid-epoch under --max-restarts 1: the job restarts from last.pt (step 3)
    and ends with the uninterrupted weights; metrics.jsonl repeats no step."""
    trial = kill_trial(overrides(data), tmp_path / "run", ranks=2, step=4, rank=1, delay=0.1,
                       reference=ddp_reference)
    log = (tmp_path / "run.log").read_text()
    assert trial.exit_code == 0, log[-3000:]
    assert "resuming from" in log
    assert trial.weight_gap <= 1e-6 and trial.duplicated_steps == 0


@pytest.mark.slow
def test_changed_world_size_resumes_at_the_global_position_or_is_refused(data, ddp_reference, tmp_path):
    """One process with 2 accumulated micro-batches of 1 sees the same samples as 2 ranks x 1: stopped
    after step 3 or later it resumes under 2 ranks and ends at the 2-rank run's parameters (BN running
    statistics differ by design). The 2-rank checkpoint (16 samples into epoch 0) cannot continue with
    global batches of 3: the error names both sizes."""
    out = tmp_path / "run"
    args = [*overrides(data, "optim.accumulate=2"), f"run.output_dir={out}"]
    proc = launch(train_command(args), tmp_path / "one.log")
    wait_for_step(out, 3, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    step = assert_stopped_cleanly((tmp_path / "one.log").read_text(), "SIGTERM")
    resumed = launch(train_command([*overrides(data), f"run.output_dir={out}", "trainer.resume=auto"], ranks=2),
                     tmp_path / "two.log")
    assert resumed.wait(timeout=120) == 0, (tmp_path / "two.log").read_text()[-2000:]
    assert f"continuing at sample {2 * step} of epoch 0" in (tmp_path / "two.log").read_text()
    assert weight_gap(out / "checkpoints" / "last.pt", ddp_reference, buffers=False) <= 1e-6

    with pytest.raises(UserError, match="written by 2 ranks x data.batch_size=1, this run has 1 ranks x "
                                         "data.batch_size=3: the 16 samples"):
        in_process(data, tmp_path / "b3", "data.batch_size=3", f"trainer.resume={ddp_reference}")


@pytest.mark.slow
def test_progress_lines_reach_a_redirected_log_file_as_they_happen(data, tmp_path):
    """`run.py train ... > train.log`: step lines are in the file while the run is still going."""
    out = tmp_path / "run"
    args = [arg for arg in overrides(data) if arg != "trainer.progress_bar=false"]
    with open(tmp_path / "train.log", "w") as log:
        proc = subprocess.Popen(train_command([*args, f"run.output_dir={out}", "trainer.max_steps=200"]), cwd=ROOT,
                                stdout=log, stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        wait_for_step(out, 3, proc)
        deadline = time.monotonic() + 30
        while "step 3/200  loss" not in (tmp_path / "train.log").read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before the check"
        assert "step 3/200  loss" in (tmp_path / "train.log").read_text()
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_warnings_and_log_records_carry_the_rank():
    """What every rank of a torchrun job calls after joining: its warnings and log records name it."""
    code = ("import logging, warnings; from engine.distributed import tag_warnings; tag_warnings(3); "
            "warnings.warn('decoder hiccup'); logging.getLogger('video').warning('slow %s', 'disk')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "[rank 3] decoder hiccup" in proc.stderr and "[rank 3] slow disk" in proc.stderr
