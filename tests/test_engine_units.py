"""Engine parts that need no data or model package: schedules, parameter groups, checkpoints, metrics, logs."""
import json
import random

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from engine.checkpoint import load_checkpoint, load_model_state, rng_state, save_checkpoint, set_rng_state
from configs.compose import load_config
from engine.distributed import init_distributed
from engine.metrics import ThroughputMeter
from engine.run_log import JsonlSink
from engine.metrics import WindowMeans, classification_metrics, save_confusion_matrix, topk_accuracy
from engine.optim import build_optimizer, build_scheduler, parameter_groups
from engine.precision import check_amp
from errors import UserError


def lrs(overrides, total=10):
    cfg = load_config(None, overrides)
    optimizer = build_optimizer(nn.Linear(2, 2), cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, total)
    values = []
    for _ in range(total):
        values.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return values


def test_warmup_is_linear_then_multistep_decays_at_milestones():
    values = lrs(["optim.lr=0.1", "optim.warmup_steps=4", "optim.warmup_start_factor=0.2",
                  "optim.schedule=multistep", "optim.milestones=[0.5]", "optim.gamma=0.1"], total=10)
    assert values[:5] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])
    # after warm-up 6 steps remain; the milestone at half of them is step 4 + 3
    assert values[5:] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.01])


def test_cosine_falls_monotonically_to_the_floor():
    values = lrs(["optim.lr=1.0", "optim.schedule=cosine", "optim.min_lr_factor=0.1"], total=11)
    assert values[0] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert lrs(["optim.lr=1.0", "optim.schedule=cosine", "optim.min_lr_factor=0.1"], total=101)[-1] > 0.1


def test_no_weight_decay_on_biases_and_norms():
    model = nn.Sequential(nn.Conv3d(3, 4, 3), nn.BatchNorm3d(4), nn.Linear(4, 2))
    decayed, plain = parameter_groups(model, 1e-4)
    assert {p.ndim for p in decayed["params"]} == {2, 5} and decayed["weight_decay"] == 1e-4
    assert len(plain["params"]) == 4 and plain["weight_decay"] == 0.0  # conv/linear biases, BN scale/shift


@pytest.mark.parametrize("override, culprit", [("optim.name=lion", "optim.name"),
                                               ("optim.schedule=poly", "optim.schedule"),
                                               ("optim.milestones=[30]", "optim.milestones")])
def test_bad_optim_values_name_the_key(override, culprit):
    cfg = load_config(None, [override])
    with pytest.raises(UserError, match=culprit):
        optimizer = build_optimizer(nn.Linear(2, 2), cfg.optim)
        build_scheduler(optimizer, cfg.optim, 10)


def test_fp16_on_cpu_is_refused():
    with pytest.raises(UserError, match="fp16"):
        check_amp("fp16", torch.device("cpu"))


def test_checkpoint_round_trip_is_atomic_and_restores_rng(tmp_path):
    path = tmp_path / "ckpt" / "last.pt"
    state = {"format": 1, "model": {"w": torch.arange(3.0)}, "config": {}, "labels": ["a"], "step": 7,
             "rng": rng_state()}
    save_checkpoint(state, path)
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary left behind
    expected = (random.random(), np.random.rand(), torch.rand(1))
    set_rng_state(load_checkpoint(path)["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected


def test_bad_checkpoints_are_one_line_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a zip" * 100)
    with pytest.raises(UserError, match="corrupt"):
        load_checkpoint(garbage)
    good = tmp_path / "good.pt"
    save_checkpoint({"format": 1, "model": nn.Linear(2, 3).state_dict(), "config": {}, "labels": [],
                     "step": 0}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(UserError, match="corrupt"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": 1}, foreign)
    with pytest.raises(UserError, match="not a checkpoint of this toolkit"):
        load_checkpoint(foreign)
    with pytest.raises(UserError, match="wrong shape") as info:
        load_model_state(nn.Linear(2, 4), load_checkpoint(good), good)
    assert "\n" not in str(info.value)


def test_metrics_on_a_known_case(tmp_path):
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.2, 0.7]])
    labels = torch.tensor([0, 1, 1, 1])
    metrics = classification_metrics(scores, labels)
    assert metrics["top1"] == pytest.approx(0.5)
    assert topk_accuracy(scores, labels, 2) == pytest.approx(1.0)
    assert metrics["per_class"] == [pytest.approx(1.0), pytest.approx(1 / 3), None]
    assert metrics["mean_class_acc"] == pytest.approx((1 + 1 / 3) / 2)
    assert metrics["confusion"] == [[1, 0, 0], [1, 1, 1], [0, 0, 0]]
    paths = save_confusion_matrix(metrics["confusion"], ["a", "b", "c"], tmp_path)
    assert json.loads(paths["json"].read_text()) == {"labels": ["a", "b", "c"], "matrix": metrics["confusion"]}
    assert Image.open(paths["png"]).size[0] > 100


def test_window_means_and_jsonl(tmp_path):
    window = WindowMeans()
    window.add({"loss": torch.tensor(1.0)})
    window.add({"loss": torch.tensor(3.0)})
    assert window.reduce(lambda t: t) == {"loss": pytest.approx(2.0)}
    sink = JsonlSink(tmp_path / "metrics.jsonl")
    sink.log({"loss": 2.0}, step=3)
    sink.close()
    sink = JsonlSink(tmp_path / "metrics.jsonl", resume_step=3)
    sink.log({"loss": 1.0}, step=4)
    sink.log({"loss": 0.5}, step=5)
    sink.close()
    with open(tmp_path / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 6, "lo')  # a writer killed mid-line
    again = JsonlSink(tmp_path / "metrics.jsonl", resume_step=4)  # resumed from a checkpoint at step 4
    again.log({"loss": 0.7}, step=5)
    again.close()
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == [{"step": 3, "loss": 2.0}, {"step": 4, "loss": 1.0}, {"step": 5, "loss": 0.7}]


def test_throughput_meter_reports_wait_share():
    meter = ThroughputMeter()
    meter.start -= 2.0  # two seconds of wall time, one of them waiting
    meter.waited(1.0, clips=8)
    stats = meter.summary(world_size=2)
    assert stats["data_wait"] == pytest.approx(0.5, abs=0.01)
    assert stats["clips_per_s"] == pytest.approx(8.0, rel=0.01)


def test_single_process_context(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ctx = init_distributed("cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed) == (0, 1, True, False)
    with pytest.raises(UserError, match="trainer.device"):
        init_distributed("tpu")
