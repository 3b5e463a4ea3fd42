"""The engine through its command line: real torchrun DDP (gloo) against one process, broken videos counted
and reported, multi-view `run.py test`, and one-line exit-2 errors for bad paths and checkpoints."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.checkpoint import load_checkpoint
from configs.compose import CONFIG_DIR, load_config
from engine.train import train
from tests.conftest import ROOT

DEMO = CONFIG_DIR / "experiments" / "demo.yaml"
QUIET = ["logger.wandb.mode=disabled", "trainer.progress_bar=false"]
TEST_RESULT_KEYS = {"top1", "top5", "mean_class_acc", "views", "videos", "skipped_videos", "per_video"}


def run_py(*args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


def records(run_dir: Path) -> list:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def broken_data(tmp_path_factory, synthetic_dataset) -> Path:
    """20 training and 10 validation clips of 48x48; one training and one validation video broken."""
    root = tmp_path_factory.mktemp("broken") / "data"
    shutil.copytree(synthetic_dataset(), root)
    (root / "train" / "grow_0001.mp4").write_bytes(b"")  # zero bytes
    truncated = root / "val" / "shrink_0000.mp4"
    truncated.write_bytes(truncated.read_bytes()[:300])
    return root


@pytest.mark.slow
def test_torchrun_two_ranks_match_one_process(broken_data, tmp_path):
    """2 gloo ranks x batch 1 vs one process x batch 1 x 2 accumulated micro-batches: the same global batch
    (the same samples, with the same keyed augmentation) and the same per-forward BatchNorm statistics.
    Parameters agree within 1e-6 (BN running buffers differ by design: DDP broadcasts rank 0's)."""
    common = ["--config", str(DEMO), f"data.root={broken_data}", "data.batch_size=1", "data.num_workers=1",
              "model.dropout=0", "optim.name=sgd", "optim.lr=0.05", "optim.warmup_steps=0", "trainer.max_steps=10",
              "trainer.log_every=5", "trainer.threads=1", *QUIET]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "run.py", "train", *common, f"run.output_dir={tmp_path / 'ddp'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    cfg = load_config(str(DEMO), [arg for arg in common[2:]] + [f"run.output_dir={tmp_path / 'one'}", "optim.accumulate=2"])
    train(cfg)

    ddp = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")
    one = load_checkpoint(tmp_path / "one" / "checkpoints" / "last.pt")
    parameters = [name for name in one["model"] if "running" not in name and "num_batches" not in name]
    worst = max((ddp["model"][n] - one["model"][n]).abs().max().item() for n in parameters)
    assert worst <= 1e-6
    assert ddp["step"] == one["step"] == 10 and len(ddp["rng"]) == 2
    final_ddp, final_one = records(tmp_path / "ddp")[-1], records(tmp_path / "one")[-1]
    assert final_ddp["val_videos"] == 9 and final_ddp["val_skipped_videos"] == 1  # each video once over ranks
    assert final_ddp["skipped_videos"] == final_one["skipped_videos"] >= 1  # the broken one, summed over ranks
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())


@pytest.mark.slow
def test_broken_videos_train_to_the_end_and_multiview_test_reports_them(broken_data, tmp_path):
    result = train(load_config(str(DEMO), [f"data.root={broken_data}", f"run.output_dir={tmp_path}",
                                           "data.batch_size=4", "trainer.epochs=2", "trainer.threads=2", *QUIET]))
    final = records(tmp_path)[-1]
    assert result["steps"] == 10 and final["epoch"] == 2
    assert final["skipped_videos"] >= 2 and final["val_skipped_videos"] == 1  # one per epoch, and the val one

    proc = run_py("test", f"checkpoint={tmp_path / 'checkpoints' / 'best.pt'}", "test.clips=2", "test.crops=3",
                  "--out", str(tmp_path / "test"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "test" / "test_results.json").read_text())
    assert set(results) == TEST_RESULT_KEYS
    assert (results["views"], results["videos"]) == (6, 9)
    assert [entry["path"] for entry in results["skipped_videos"]] == [str(broken_data / "val" / "shrink_0000.mp4")]
    assert all(abs(sum(video["scores"]) - 1) < 1e-3 for video in results["per_video"])
    assert (tmp_path / "test" / "test_confusion_matrix.png").is_file()


@pytest.mark.slow
def test_user_mistakes_exit_2_with_one_line(broken_data, tmp_path):
    """Missing config file, data folder, checkpoint; corrupt checkpoint; checkpoint of another model."""
    checkpoint = tmp_path / "run" / "checkpoints" / "last.pt"
    train(load_config(str(DEMO), [f"data.root={broken_data}", f"run.output_dir={tmp_path / 'run'}",
                                  "data.batch_size=4", "trainer.max_steps=1", *QUIET]))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(checkpoint.read_bytes()[:1000])
    cases = {
        "nope.yaml": ["train", "--config", str(tmp_path / "nope.yaml")],
        "missing_root": ["train", f"data.root={tmp_path / 'missing_root'}"],
        "missing.pt": ["test", f"checkpoint={tmp_path / 'missing.pt'}"],
        "corrupt": ["test", f"checkpoint={corrupt}"],
        "does not match": ["train", "--config", str(DEMO), f"data.root={broken_data}", "model.iaa.enabled=false", "data.batch_size=4",
                           f"trainer.resume={checkpoint}", f"run.output_dir={tmp_path / 'other'}", *QUIET],
    }
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    running = {culprit: subprocess.Popen([sys.executable, "run.py", *args], cwd=ROOT, env=env, text=True,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for culprit, args in cases.items()}
    for culprit, proc in running.items():
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 2, (culprit, stderr[-1000:])
        assert stderr.startswith("error:") and stderr.strip().count("\n") == 0, stderr
        assert culprit in stderr
