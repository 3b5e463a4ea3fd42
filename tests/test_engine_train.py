"""Training in-process on the built-in synthetic data: a tiny I3D learns it, an average-consensus TSN cannot
tell the long-range XOR pair apart, and a run stopped and resumed ends with the uninterrupted weights."""
import json
from pathlib import Path

import pytest
import torch

from engine.checkpoint import load_checkpoint, load_trained
from configs.compose import CONFIG_DIR, load_config
from engine.distributed import init_distributed
from engine.evaluate import run_test
from engine.train import Trainer, train

DEMO = CONFIG_DIR / "experiments" / "demo.yaml"
XOR_PAIR = ("cue_event_same", "cue_event_opposite")


def class_subset(root: Path, out: Path, classes) -> Path:
    """A dataset folder listing only `classes` (same labels.txt, absolute paths to the same files)."""
    out.mkdir()
    (out / "labels.txt").write_text((root / "labels.txt").read_text())
    for split in ("train", "val"):
        rows = [line for line in (root / f"{split}.csv").read_text().splitlines()[1:]
                if line.split(",")[1] in classes]
        (out / f"{split}.csv").write_text("path,label\n" + "".join(f"{root / line}\n" for line in rows))
    return out


def demo_config(root: Path, out: Path, *overrides: str):
    """The demo recipe on `root`, quiet, with two threads (the CI machine's cores)."""
    return load_config(str(DEMO), [f"data.root={root}", f"run.output_dir={out}", "logger.wandb.mode=disabled",
                                   "trainer.progress_bar=false", "trainer.threads=2", *overrides])


@pytest.fixture(scope="module")
def learn_data(synthetic_dataset) -> Path:
    """400 training and 300 validation clips of 48x48 (30 per class so chance-level claims have n=60)."""
    return synthetic_dataset(40, 30)


@pytest.fixture(scope="module")
def small_data(synthetic_dataset) -> Path:
    return synthetic_dataset()


@pytest.mark.slow
def test_tiny_i3d_learns_the_synthetic_classes(learn_data, tmp_path):
    """300 steps (~25 s on 2 cores) of a tiny I3D: chance is 0.1 on 10 classes."""
    cfg = demo_config(learn_data, tmp_path, "model.attention=[]", "model.iaa.enabled=false", "model.dropout=0",
                      "optim.lr=0.0005", "optim.warmup_steps=10", "trainer.epochs=6", "trainer.eval_every=6")
    result = train(cfg)
    assert result["steps"] == 300
    assert result["last"]["val_videos"] == 300
    assert result["last"]["val_top1"] >= 0.3, result["last"]


@pytest.mark.slow
def test_average_consensus_tsn_stays_at_chance_on_the_xor_pair(learn_data, tmp_path):
    """A TSN (per-frame scores averaged) learns which pair a video belongs to, but not which side of the
    cue/event XOR: averaged per-frame scores are additive in cue and event, and no additive rule
    separates same-side from opposite-side (it can get at most 3 of the 4 side combinations right)."""
    root = class_subset(learn_data, tmp_path / "subset", ("grow", "move_right") + XOR_PAIR)
    cfg = demo_config(root, tmp_path / "run", "model.arch=tsn", "model.attention=[]", "model.iaa.enabled=false",
                      "data.sampling.mode=segments", "data.sampling.num_segments=8", "optim.lr=0.002",
                      "optim.warmup_steps=10", "trainer.epochs=15", "trainer.eval_every=15", "test.crops=1")
    result = train(cfg)
    model, _, labels = load_trained(result["best_checkpoint"])
    results = run_test(model, labels, cfg, tmp_path / "run", init_distributed("cpu"))
    xor = [video for video in results["per_video"] if video["label"] in XOR_PAIR]
    pair = [labels.index(name) for name in XOR_PAIR]
    in_pair = sum(video["pred"] in XOR_PAIR for video in xor) / len(xor)
    side = sum((video["scores"][pair[0]] > video["scores"][pair[1]]) == (video["label"] == XOR_PAIR[0])
               for video in xor) / len(xor)
    assert len(xor) == 60
    assert in_pair >= 0.9, f"the TSN did not even learn the pair ({in_pair:.2f})"
    assert 0.3 <= side <= 0.7, f"same/opposite accuracy {side:.2f} is not near chance"


@pytest.mark.slow
def test_stopped_and_resumed_run_ends_with_the_uninterrupted_weights(small_data, tmp_path, monkeypatch):
    """Crash after step 6 (last.pt at step 4, mid-epoch), resume with trainer.resume=auto, cross an epoch
    boundary with validation, and finish at step 14: every tensor equals the uninterrupted run's."""
    overrides = ("data.batch_size=2", "data.num_workers=2", "trainer.max_steps=14", "trainer.checkpoint_every=4",
                 "trainer.log_every=3", "optim.warmup_steps=3", "model.dropout=0.5")
    train(demo_config(small_data, tmp_path / "straight", *overrides))

    original_step = Trainer._optimizer_step
    calls = {"n": 0}

    def crash_after_six(self, batches):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt("simulated crash")
        return original_step(self, batches)

    monkeypatch.setattr(Trainer, "_optimizer_step", crash_after_six)
    with pytest.raises(KeyboardInterrupt):
        train(demo_config(small_data, tmp_path / "resumed", *overrides))
    monkeypatch.setattr(Trainer, "_optimizer_step", original_step)
    at_crash = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert (at_crash["step"], at_crash["progress"]["sample_in_epoch"]) == (4, 8)
    train(demo_config(small_data, tmp_path / "resumed", *overrides, "trainer.resume=auto"))

    straight = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    resumed = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert straight["step"] == resumed["step"] == 14
    for name, tensor in straight["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name
    assert any(not torch.equal(tensor, at_crash["model"][name]) for name, tensor in straight["model"].items())
    records = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r][-1] == 12  # the log continues in the same file
