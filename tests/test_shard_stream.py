"""Clips streamed from `prep shards` tar shards (data.format=shards): real videos, real loader workers,
real 2-rank gloo DDP through torchrun. Not `prep kinetics --shard i/N` (tests/test_prep_shards.py)."""
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest
import torch
import webdataset
from omegaconf import OmegaConf

import run
from configs.compose import CONFIG_DIR, load_config
from data_prep.tar_shards import prepare_shards
from engine.checkpoint import load_checkpoint
from engine.train import train
from errors import UserError
from tests.conftest import ROOT
from video.config import DataConfig
from video.formats import check_resume, open_split, set_epoch
from video.loader import build_loader, stop_workers
from video.shard_stream import Shard, cut, read_index, read_segment, resume_point, shard_order, worker_runs


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, synthetic_dataset) -> Path:
    """20 training and 10 validation synthetic clips of 48x48 as a folder (a copy: shards go beside it)."""
    root = tmp_path_factory.mktemp("shards") / "data"
    shutil.copytree(synthetic_dataset(), root)
    return root


@pytest.fixture(scope="module")
def shards(dataset) -> Path:
    """The training split in 7 shards of at most 3 videos (`tars/`), and in one shard (`one/`) beside the
    validation split's one shard."""
    prepare_shards(dataset, "train", dataset.parent / "tars", 3, progress=False)
    for split in ("train", "val"):
        prepare_shards(dataset, split, dataset.parent / "one", 100, progress=False)
    return dataset.parent / "tars"


def data_cfg(pattern: str, **overrides) -> DataConfig:
    settings = {"format": "shards", "shards": pattern, "batch_size": 2, "num_workers": 2, "shard_buffer": 4,
                "persistent_workers": True, **overrides}
    return OmegaConf.merge(OmegaConf.structured(DataConfig), settings)


def epoch_batches(cfg: DataConfig, rank: int, world_size: int, epoch: int, start: int = 0, seed: int = 0):
    """The batches one rank's training loader yields in `epoch` from `start`."""
    stream = open_split(cfg, "train", True, rank, world_size, seed)
    loader = build_loader(stream, cfg, True, rank, world_size, seed)
    set_epoch(loader, epoch, start)
    try:
        return len(loader), list(loader)
    finally:
        stop_workers(loader)


def test_positions_are_disjoint_and_equal_per_rank_for_any_shard_count():
    """The assignment alone, over many layouts: each rank the same whole number of batches, no position
    twice, fewer than one global batch dropped; the loader's round-robin consumption adds up."""
    for counts in ([1], [7], [3, 3, 1], [5] * 9, [2, 0, 4, 1]):
        total = sum(counts)
        for world_size in (1, 2, 3):
            for workers in (1, 2, 4):
                for batch in (1, 2, 3):
                    taken, per_rank = [], set()
                    for rank in range(world_size):
                        runs = worker_runs(total, rank, world_size, workers, batch, True)
                        per_rank.add(sum(high - low for low, high in runs) // batch)
                        order = shard_order(len(counts), 0, 1, True)
                        for low, high in runs:
                            assert (high - low) % batch == 0
                            taken += [(s.shard, p) for s in cut(order, counts, low, high) for p in range(s.start, s.stop)]
                    assert len(per_rank) == 1 and len(taken) == len(set(taken))
                    assert total - len(taken) < world_size * batch
    assert resume_point([3, 2], 3) == ([2, 1], 1) and resume_point([3, 2], 4) == ([2, 2], 0)
    assert resume_point([3, 2], 5) == ([3, 2], 0)


@pytest.mark.slow
@pytest.mark.parametrize("pattern", ["tars/train-{000000..000006}.tar", "one/train-000000.tar"])
def test_two_ranks_two_workers_read_no_sample_twice(shards, pattern):
    """2 ranks x 2 workers, on 7 shards and on one shard (fewer than workers x ranks): equal batch counts,
    disjoint samples, the order a function of (seed, epoch)."""
    cfg = data_cfg(str(shards.parent / pattern))
    lengths, indices = [], []
    for rank in range(2):
        length, batches = epoch_batches(cfg, rank, 2, epoch=3)
        assert length == len(batches) and all(len(batch["index"]) == 2 for batch in batches)
        lengths.append(length)
        indices += [i for batch in batches for i in batch["index"].tolist()]
    assert lengths[0] == lengths[1] >= 1
    assert len(indices) == len(set(indices)) == sum(lengths) * 2
    again = [i for batch in epoch_batches(cfg, 0, 2, epoch=3)[1] for i in batch["index"].tolist()]
    other = [i for batch in epoch_batches(cfg, 0, 2, epoch=4)[1] for i in batch["index"].tolist()]
    assert again == indices[:len(again)] and other != again


@pytest.mark.slow
@pytest.mark.parametrize("workers, consumed", [(2, 3), (3, 7)])
@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_mid_epoch_resume_gives_the_remaining_batches(shards, workers, consumed):
    """A loader restored after `consumed` batches of an epoch yields exactly the batches (samples and
    clips) the uninterrupted loader yielded from there on (with 3 workers, holding 3, 3 and 4 batches)."""
    cfg = data_cfg(str(shards / "train-{000000..000006}.tar"), num_workers=workers)
    _, full = epoch_batches(cfg, 0, 1, epoch=2)
    _, rest = epoch_batches(cfg, 0, 1, epoch=2, start=consumed * cfg.batch_size)
    assert len(full) == 10 and len(rest) == len(full) - consumed
    for expected, got in zip(full[consumed:], rest):
        assert expected["index"].tolist() == got["index"].tolist()
        assert torch.equal(expected["clip"], got["clip"])
    with pytest.raises(UserError, match=f"num_workers {workers} -> 1"):
        check_resume(OmegaConf.merge(cfg, {"num_workers": 1}), dict(cfg), 1, 1, consumed, Path("last.pt"))


@pytest.mark.slow
def test_pipe_commands_read_like_files(shards):
    """`pipe:cat ...` gives the same bytes as the file, also when a worker stops reading mid-shard (the
    command's closed output is no error); a failing command makes broken samples, not a crash."""
    local = read_index(str(shards / "train-000001.tar"), "data.shards").shards[0]
    piped = read_index(f"pipe:cat {shards}/train-000001.tar", "data.shards").shards[0]
    for start, stop in ((0, 1), (1, 3)):
        files, pipes = list(read_segment(local, start, stop)), list(read_segment(piped, start, stop))
        assert [(r.index, r.data) for r in files] == [(r.index, r.data) for r in pipes] and all(r.data for r in pipes)
    failing = Shard(piped.name, f"pipe:cat {shards}/absent.tar", piped.samples)
    records = list(read_segment(failing, 0, 3))
    assert len(records) == 3 and all(r.data is None and "cannot be read" in r.reason for r in records)


def rewrite_shard(path: Path, change) -> str:
    """Rewrite the shard at `path` with `change(name, data) -> data` applied to its members (None drops
    one); returns the key of its first sample."""
    with tarfile.open(path) as archive:
        members = [(m.name, archive.extractfile(m).read()) for m in archive]
    with tarfile.open(path, "w") as archive:
        for name, data in members:
            data = change(name, data)
            if data is not None:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return members[0][0].split(".")[0]


@pytest.mark.slow
def test_broken_and_missing_samples_are_counted_and_replaced(shards, tmp_path):
    """A shard whose first video is garbage and whose last sample is gone: both reported as
    `SHARD/KEY.mp4: reason`, replaced, and the epoch keeps its batch count."""
    for name in os.listdir(shards):
        (tmp_path / name).write_bytes((shards / name).read_bytes())
    index = json.loads((tmp_path / "train-shards.json").read_text())
    last_key = index["shards"][1]["samples"][-1][0]
    broken_key = rewrite_shard(tmp_path / "train-000001.tar",
                               lambda name, data: b"not a video" if name.endswith(".mp4") and name.startswith(
                                   index["shards"][1]["samples"][0][0]) else None if name.startswith(last_key) else data)
    cfg = data_cfg(str(tmp_path / "train-{000000..000006}.tar"), num_workers=1)
    length, batches = epoch_batches(cfg, 0, 1, epoch=0)
    failed = [entry for batch in batches for entry in batch["failed"]]
    assert length == len(batches) == 10
    assert any(entry.startswith(f"train-000001.tar/{broken_key}.mp4: ") for entry in failed)
    assert any(entry.startswith(f"train-000001.tar/{last_key}.mp4: missing") for entry in failed)
    assert len(failed) == 2

    items = list(open_split(OmegaConf.merge(cfg, {"shards": str(tmp_path / "train-000001.tar")}), "train", False))
    assert [item["valid"] for item in items] == [False, True, False]
    assert items[0]["failed"][0].startswith(f"train-000001.tar/{broken_key}.mp4: ")


def test_prep_shards_resumes_and_reports_broken_inputs(dataset, tmp_path):
    """A broken video is left out and reported; a re-run keeps complete shards, rewrites a missing one
    and a half-written `.part` byte for byte, and WebDataset's own reader reads every sample."""
    root = tmp_path / "data"
    root.mkdir()
    for name in ("labels.txt", "flip_pairs.txt", "train.csv"):
        (root / name).write_text((dataset / name).read_text().replace("train/", str(dataset / "train") + "/"))
    first_video = (root / "train.csv").read_text().splitlines()[1].split(",")[0]
    broken = root / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    lines = (root / "train.csv").read_text().replace(first_video, str(broken))
    (root / "train.csv").write_text(lines)

    out = tmp_path / "shards"
    report = prepare_shards(root, "train", out, 6, progress=False)
    assert report["shards"] == 4 and report["written"] == 19 and report["kept_shards"] == []
    assert [entry["source"] for entry in report["skipped"]] == [str(broken)]
    assert json.loads((out / "train-prep_report.json").read_text()) == report
    written = {name: (out / name).read_bytes() for name in os.listdir(out) if name.endswith(".tar")}

    (out / "train-000002.tar").unlink()
    (out / "train-000003.tar").rename(out / "train-000003.tar.part")
    (out / "train-000003.tar.part").write_bytes(b"half a shard")
    again = prepare_shards(root, "train", out, 6, progress=False)
    assert again["kept_shards"] == ["train-000000.tar", "train-000001.tar"]
    assert again["written"] == 19 and again["skipped"][0]["source"] == str(broken)
    assert {name: (out / name).read_bytes() for name in written} == written

    index = json.loads((out / "train-shards.json").read_text())
    expected = [(key, label) for shard in index["shards"] for key, label in shard["samples"]]
    samples = webdataset.WebDataset(str(out / "train-{000000..000003}.tar"), shardshuffle=False, empty_check=False)
    read = [(sample["__key__"], int(sample["cls"])) for sample in samples]
    assert read == expected and len(read) == 19


def run_to_end(command: list, timeout: float) -> subprocess.CompletedProcess:
    """Run `command` in its own process group; on timeout kill the whole group and fail (never hang)."""
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"hung for {timeout} s:\n{output[-3000:]}")
    return subprocess.CompletedProcess(command, proc.returncode, output)


@pytest.mark.slow
def test_ddp_with_fewer_shards_than_workers_times_ranks_does_not_hang(shards, tmp_path):
    """torchrun, 2 gloo ranks x 2 workers on ONE training shard holding a broken video: the run ends (into
    its second epoch), the broken sample is counted and named in the log, each validation video scored once."""
    out = tmp_path / "one"
    out.mkdir()
    for name in os.listdir(shards.parent / "one"):
        (out / name).write_bytes((shards.parent / "one" / name).read_bytes())
    rewrite_shard(out / "train-000000.tar", lambda name, data: b"garbage" if name.endswith(".mp4") and
                  name.startswith(json.loads((out / "train-shards.json").read_text())["shards"][0]["samples"][0][0])
                  else data)
    proc = run_to_end([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                       "run.py", "train", "--config", str(CONFIG_DIR / "experiments" / "demo.yaml"),
                       "data.format=shards", f"data.shards={out / 'train-000000.tar'}",
                       f"data.val_shards={out / 'val-000000.tar'}", "data.batch_size=2", "data.num_workers=2",
                       "trainer.max_steps=6", "trainer.log_every=1", "trainer.threads=1", "logger.wandb.mode=disabled",
                       "trainer.progress_bar=false", "prep.synthetic_if_missing=false", f"run.output_dir={tmp_path / 'run'}"], timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 6  # into the second epoch
    assert records[-1]["epoch"] == 1 and records[-1]["val_videos"] == 10
    assert records[-1]["skipped_videos"] >= 1 and "skipped video (replaced by another sample): train-000000.tar/" in proc.stdout


def shard_training(shards: Path, out: Path, *extra: str):
    """The demo model trained in this process on the 7 training shards: 8 steps of one 10-step epoch."""
    one = shards.parent / "one"
    return train(load_config(str(CONFIG_DIR / "experiments" / "demo.yaml"), [
        "data.format=shards", f"data.shards={shards / 'train-{000000..000006}.tar'}",
        f"data.val_shards={one / 'val-000000.tar'}", "data.batch_size=2", "data.num_workers=2",
        "trainer.max_steps=8", "trainer.log_every=1", "trainer.threads=1", "logger.wandb.mode=disabled",
        "trainer.progress_bar=false", "prep.synthetic_if_missing=false", f"run.output_dir={out}", *extra]))


@pytest.mark.slow
def test_training_stopped_mid_epoch_resumes_bit_exactly(shards, tmp_path):
    """SIGTERM in the middle of a shard epoch, then trainer.resume=auto: the weights equal those of the
    uninterrupted run."""
    straight = shard_training(shards, tmp_path / "straight")
    out = tmp_path / "stopped"

    def stop_after_step_two() -> None:
        while not (out / "metrics.jsonl").is_file() or len((out / "metrics.jsonl").read_text().splitlines()) < 2:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    watcher = threading.Thread(target=stop_after_step_two, daemon=True)
    watcher.start()
    stopped = shard_training(shards, out)
    watcher.join()
    assert stopped["stopped"] and 2 <= stopped["steps"] < 8
    resumed = shard_training(shards, out, "trainer.resume=auto")
    assert resumed["steps"] == 8
    reference, final = (load_checkpoint(run["last_checkpoint"])["model"] for run in (straight, resumed))
    assert all(torch.equal(reference[name], final[name]) for name in reference)


def test_prep_shards_and_bench_loader_commands(dataset, tmp_path, capsys):
    """`run.py prep shards` says what it wrote; `bench loader --format shards` times both formats."""
    assert run.main(["prep", "shards", "--root", str(dataset), "--out", str(tmp_path), "--shard-size", "8"]) == 0
    assert "20 videos in 3 shards (0 kept from an earlier run), 0 skipped" in capsys.readouterr().out
    assert run.main(["bench", "loader", "--format", "shards", f"data.root={dataset}", "data.batch_size=4",
                     f"data.shards={tmp_path}/train-{{000000..000002}}.tar", "--workers", "0", "--rounds", "1",
                     "--epochs", "1"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "clips/s" in line]
    assert [line.split()[0] for line in lines] == ["folders", "shards"] and lines[1].endswith("x folders)")
