"""`data.worker_max_rss`: loader workers that pass the limit are restarted between steps at the sample
position reached, and the run ends with the weights of a run without the limit; a limit without worker
processes is refused in one line."""
from pathlib import Path

import pytest
import torch

from configs.compose import CONFIG_DIR, load_config
from engine.checkpoint import load_checkpoint
from engine.train import train
from errors import UserError

DEMO = CONFIG_DIR / "experiments" / "demo.yaml"


@pytest.fixture(scope="module")
def data(synthetic_dataset) -> Path:
    return synthetic_dataset()


def run(data: Path, out: Path, *extra: str) -> dict:
    return train(load_config(str(DEMO), [f"data.root={data}", f"run.output_dir={out}", "data.batch_size=2",
                                         "data.num_workers=2", "trainer.max_steps=4", "trainer.eval_every=100",
                                         "trainer.threads=1", "trainer.progress_bar=false",
                                         "logger.wandb.mode=disabled", *extra]))


@pytest.mark.slow
def test_workers_past_the_limit_are_restarted_without_losing_or_repeating_a_sample(data, tmp_path, capsys):
    """A 1 MiB limit (every Python worker is past it): the workers restart after each of steps 1-3, and
    the weights equal those of the run without a limit, so every step got the same clips."""
    plain = load_checkpoint(run(data, tmp_path / "plain")["last_checkpoint"])
    capsys.readouterr()
    limited = load_checkpoint(run(data, tmp_path / "limited", "data.worker_max_rss=1")["last_checkpoint"])
    lines = [line for line in capsys.readouterr().out.splitlines() if "loader workers restarted" in line]
    assert [line.split(" after step ")[1].split(":")[0] for line in lines] == ["1", "2", "3"]
    assert "> data.worker_max_rss=1" in lines[0]
    assert limited["progress"]["worker_restarts"] == 3 and plain["progress"]["worker_restarts"] == 0
    for name, tensor in plain["model"].items():
        assert torch.equal(tensor, limited["model"][name]), name


@pytest.mark.parametrize("extra", [("data.worker_max_rss=500", "data.num_workers=0"), ("data.worker_max_rss=-1",)])
def test_a_limit_without_worker_processes_is_refused(data, tmp_path, extra):
    with pytest.raises(UserError, match=r"data.worker_max_rss=.* limits each loader worker process"):
        run(data, tmp_path / "run", *extra)
