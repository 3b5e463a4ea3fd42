"""`data.batch_size=auto`: the batch the memory model chooses holds against the bytes autograd really saves
(batch + 1 does not fit), the demo trains with it and records it, and impossible asks end in one error line."""
import os
import subprocess
import sys

import pytest
import torch
import yaml

import run
from analysis.profiling.measure import measure_forward
from analysis.profiling.auto_batch import choose_batch, clip_shape
from configs.compose import CONFIG_DIR, load_config
from data_prep.synthetic import write_dataset
from errors import UserError
from models.build import build_model
from tests.conftest import ROOT
from video.config import fixed_batch_size

DEMO = CONFIG_DIR / "experiments" / "demo.yaml"
CPU = torch.device("cpu")
QUIET = ["logger.wandb.mode=disabled", "trainer.progress_bar=false", "trainer.device=cpu"]


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    """The demo's synthetic clips, 13 per class (130: batch 120 of a 256 MiB budget makes a step)."""
    root = tmp_path_factory.mktemp("auto_batch") / "data"
    prep = load_config(str(DEMO), ["prep.synthetic.train_per_class=13", "prep.synthetic.val_per_class=1"]).prep
    write_dataset(root, prep.synthetic, progress=False)
    return root


@pytest.mark.parametrize("config, overrides, budget", [
    ("experiments/demo.yaml", [], "20MiB"),  # non-local reference blocks and the pyramid attention head
    ("model/i3d_tiny_nl.yaml", ["model.attention.0.implementation=fused"], "9MB"),
    ("model/tsn_tiny.yaml", ["data.sampling.mode=segments"], "16MiB"),
])
def test_the_chosen_batch_fits_its_measured_saved_bytes_and_one_more_does_not(config, overrides, budget):
    cfg = load_config(str(CONFIG_DIR / config), ["data.batch_size=auto", f"trainer.memory_budget={budget}", *overrides])
    choice = choose_batch(cfg, CPU, num_classes=10)
    assert choice.batch > 1 and f"chose {choice.batch} on cpu" in choice.line
    model = build_model(cfg.model, 10)
    measured = [measure_forward(model, clip_shape(cfg, b)).activation_bytes for b in (choice.batch, choice.batch + 1)]
    assert measured[0] <= choice.budget_bytes < measured[1], (choice.line, measured)
    assert choice.predicted_bytes == measured[0] and choice.next_predicted_bytes == measured[1]


def test_the_cuda_prediction_counts_weights_gradients_optimizer_state_copies_and_a_reserve():
    """The CUDA branch's arithmetic (no GPU is touched when a budget is given): the chosen batch's prediction
    is (weights + buffers + gradients + AdamW's two states + bf16 weight copies + saved bytes) x 1.1."""
    cfg = load_config(str(DEMO), ["data.batch_size=auto", "trainer.memory_budget=64MiB", "trainer.amp=bf16"])
    choice = choose_batch(cfg, torch.device("cuda"), num_classes=10)
    model = build_model(cfg.model, 10)
    params = sum(p.numel() * 4 for p in model.parameters())
    state = params + sum(b.numel() * b.element_size() for b in model.buffers()) + params + 2 * params + params // 2
    saved = [measure_forward(model, clip_shape(cfg, b)).activation_bytes for b in (choice.batch, choice.batch + 1)]
    assert choice.predicted_bytes == int((state + saved[0]) * 1.1) <= choice.budget_bytes
    assert choice.next_predicted_bytes == int((state + saved[1]) * 1.1) > choice.budget_bytes
    assert "optimizer state" in choice.line and "10% reserve" in choice.line and "on cuda" in choice.line


def test_a_word_other_than_auto_and_auto_outside_train_are_named():
    with pytest.raises(UserError, match="data.batch_size=eight: give a number of clips or auto"):
        load_config(None, ["data.batch_size=eight"])
    with pytest.raises(UserError, match="auto is chosen by `run.py train` only"):
        fixed_batch_size(load_config(None, ["data.batch_size=auto"]).data)


@pytest.mark.slow
def test_impossible_budgets_end_in_one_error_line(demo_data, tmp_path):
    base = ["train", "--config", str(DEMO), f"data.root={demo_data}", "data.batch_size=auto",
            f"run.output_dir={tmp_path}", *QUIET]
    proc = subprocess.run([sys.executable, "run.py", *base, "--budget", "1KiB"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and proc.stderr.strip().count("\n") == 0
    assert "not one clip fits the budget of 1.00 KiB (trainer.memory_budget=1KiB) on cpu" in proc.stderr
    for extra, message in (([], "needs trainer.memory_budget"), (["trainer.memory_budget=lots"], "'lots' is not a size"),
                           (["--budget", "1GiB", "trainer.amp=bf16"], "trainer.amp=bf16 there saves more")):
        with pytest.raises(UserError, match=message):
            run.main([*base, *extra])
    assert not (tmp_path / "config.yaml").exists()


@pytest.mark.slow
def test_the_demo_trains_with_the_batch_its_budget_gives_and_records_it(demo_data, tmp_path, capsys):
    chosen = {}
    for budget in ("64MiB", "256MiB"):
        out = tmp_path / budget
        assert run.main(["train", "--config", str(DEMO), f"data.root={demo_data}", "data.batch_size=auto",
                         f"trainer.memory_budget={budget}", "trainer.max_steps=1", f"run.output_dir={out}",
                         *QUIET]) == 0
        printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("data.batch_size=auto")]
        recorded = yaml.safe_load((out / "config.yaml").read_text())["data"]["batch_size"]
        assert len(printed) == 1 and f"chose {recorded} on cpu" in printed[0] and isinstance(recorded, int)
        assert torch.load(out / "checkpoints" / "last.pt", weights_only=False)["config"]["data"]["batch_size"] == recorded
        chosen[budget] = recorded
    assert 1 < chosen["64MiB"] < chosen["256MiB"]
