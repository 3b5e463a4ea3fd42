"""Dataset folder reading, broken-video handling, and real multi-worker, multi-rank loaders."""
import dataclasses

import numpy as np
import pytest
import torch

from errors import UserError
from tests.video_helpers import write_barcode_video
from video.config import DataConfig
from video.dataset import VideoDataset
from video.loader import EvalSampler, TrainSampler, build_loader

CLASSES = ["left", "right", "still"]
VIDEOS = 11  # one of them broken


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    """11 real H.264 videos in 3 classes (the 5th is a text file named .mp4), train = val lists."""
    root = tmp_path_factory.mktemp("dataset")
    (root / "videos").mkdir()
    rows = []
    for number in range(VIDEOS):
        path = root / "videos" / f"clip{number}.mp4"
        if number == 4:
            path.write_text("not a video")
        else:
            write_barcode_video(path, 24 + number, keyframe_interval=8)
        rows.append(f"videos/clip{number}.mp4,{CLASSES[number % 3]}\n")
    (root / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    (root / "flip_pairs.txt").write_text("left,right\n")
    for split in ("train", "val"):
        (root / f"{split}.csv").write_text("path,label\n" + "".join(rows))
    return root


def _cfg(**overrides) -> DataConfig:
    return dataclasses.replace(DataConfig(), **overrides)


def test_folder_is_read_into_labels_and_samples(dataset_dir):
    dataset = VideoDataset(dataset_dir, "train", _cfg(), train=True)
    assert dataset.labels == CLASSES and len(dataset) == VIDEOS
    assert dataset.samples[2] == (str(dataset_dir / "videos" / "clip2.mp4"), 2)


def test_training_item(dataset_dir):
    item = VideoDataset(dataset_dir, "train", _cfg(), train=True)[(0, 0, 0)]
    assert item["clip"].shape == (3, 8, 56, 56) and item["clip"].dtype == torch.uint8
    assert item["index"] == 0 and item["valid"] and item["failed"] == []
    assert item["label"] in (0, 1)  # class 'left', or 'right' when the draw mirrored it


def test_flip_swaps_only_paired_labels(dataset_dir):
    dataset = VideoDataset(dataset_dir, "train", _cfg(), train=True)
    left = {dataset[(0, 0, epoch)]["label"] for epoch in range(12)}
    still = {dataset[(2, 0, epoch)]["label"] for epoch in range(12)}
    assert left == {0, 1} and still == {2}


def test_evaluation_item_has_all_views(dataset_dir):
    item = VideoDataset(dataset_dir, "val", _cfg(), train=False, clips=2, crops=3)[3]
    assert item["clip"].shape == (6, 3, 8, 56, 56) and item["clip"].dtype == torch.uint8
    assert (item["index"], item["label"], item["valid"], item["failed"]) == (3, 0, True, [])


def test_training_replaces_a_broken_video_and_reports_it(dataset_dir):
    dataset = VideoDataset(dataset_dir, "train", _cfg(), train=True)
    item = dataset[(4, 0, 0)]
    assert item["valid"] and item["index"] != 4
    assert len(item["failed"]) == 1 and item["failed"][0].startswith(str(dataset_dir / "videos" / "clip4.mp4") + ": ")
    assert item["label"] in {0, 1} | {dataset.samples[item["index"]][1]}
    assert dataset[(4, 0, 0)]["index"] == item["index"]  # the replacement repeats under the same key


def test_evaluation_never_replaces(dataset_dir):
    item = VideoDataset(dataset_dir, "val", _cfg(), train=False, clips=2)[4]
    assert not item["valid"] and item["index"] == 4 and len(item["failed"]) == 1
    assert item["clip"].shape == (2, 3, 8, 56, 56) and not item["clip"].any()


def test_giving_up_after_max_replacements(tmp_path):
    (tmp_path / "labels.txt").write_text("a\n")
    (tmp_path / "train.csv").write_text("path,label\nmissing0.mp4,a\nmissing1.mp4,a\n")
    dataset = VideoDataset(tmp_path, "train", _cfg(max_replacements=3), train=True)
    with pytest.raises(UserError, match="4 videos in a row"):
        dataset[0]


@pytest.mark.parametrize("files, culprit", [
    ({"train.csv": "path,label\n"}, "labels.txt"),
    ({"labels.txt": "a\n"}, "train.csv is missing"),
    ({"labels.txt": "a\n", "train.csv": "path,label\nx.mp4,b\n"}, "train.csv:2"),
    ({"labels.txt": "a\n", "train.csv": "file,class\nx.mp4,a\n"}, "header"),
    ({"labels.txt": "a\n", "train.csv": "path,label\nx.mp4,a\n", "flip_pairs.txt": "a,z\n"}, "flip_pairs.txt:1"),
])
def test_bad_dataset_folders_name_the_file(tmp_path, files, culprit):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(UserError, match=culprit):
        VideoDataset(tmp_path, "train", _cfg(), train=True)


def test_train_sampler_shards_are_disjoint_and_change_with_the_epoch():
    shards = [TrainSampler(23, rank, 2, seed=5) for rank in range(2)]
    first = [[key[0] for key in shard] for shard in shards]
    assert len(first[0]) == len(first[1]) == 11 and not set(first[0]) & set(first[1])
    for shard in shards:
        shard.set_epoch(1)
    assert [key[0] for key in shards[0]] != first[0]


def test_train_sampler_forwards_the_same_groups_in_every_layout_of_a_global_batch():
    """Global batches of 8: 4 ranks x 1 micro-batch of 2, 2 x 2, 1 x 4 forward the same pairs of samples
    in each step (slot m x ranks + r), and a start position skips whole global batches."""
    def forwards(ranks, accumulate, start=0):
        samplers = [TrainSampler(37, rank, ranks, seed=1, batch_size=2, accumulate=accumulate) for rank in range(ranks)]
        for sampler in samplers:
            sampler.set_epoch(3, start)
        keys = [[key[0] for key in sampler] for sampler in samplers]
        steps = len(keys[0]) // (2 * accumulate)
        return [[tuple(keys[slot % ranks][(step * accumulate + slot // ranks) * 2:][:2]) for slot in range(4)]
                for step in range(steps)]
    layouts = [forwards(4, 1), forwards(2, 2), forwards(1, 4)]
    assert layouts[0] == layouts[1] == layouts[2] and len(layouts[0]) == 37 // 8
    assert len({index for step in layouts[0] for pair in step for index in pair}) == 4 * 8
    assert forwards(2, 2, start=16) == layouts[0][2:]
    with pytest.raises(ValueError, match="whole number of global batches"):
        TrainSampler(37, 0, 2, batch_size=2, accumulate=2).set_epoch(0, 4)


def test_eval_sampler_covers_every_index_once():
    for size, world in [(10, 3), (2, 4), (7, 1)]:
        indices = [i for rank in range(world) for i in EvalSampler(size, rank, world)]
        assert sorted(indices) == list(range(size))


def _run(loader):
    return [batch for batch in loader]


@pytest.mark.slow
def test_two_workers_two_ranks_training(dataset_dir):
    torch.set_num_threads(1)
    dataset = VideoDataset(dataset_dir, "train", _cfg(), train=True)
    cfg = _cfg(batch_size=2, num_workers=2, persistent_workers=True)
    seen, failures = [], []
    for rank in range(2):
        loader = build_loader(dataset, cfg, train=True, rank=rank, world_size=2, seed=3)
        loader.sampler.set_epoch(1)
        batches = _run(loader)
        assert len(batches) == 2  # 5 videos per rank, the incomplete batch dropped
        batch = batches[0]
        assert batch["clip"].shape == (2, 3, 8, 56, 56) and batch["clip"].dtype == torch.uint8
        assert batch["label"].dtype == torch.int64 and batch["index"].dtype == torch.int64
        assert batch["valid"].dtype == torch.bool and isinstance(batch["failed"], list)
        keys = [key[0] for key in loader.sampler][:4]
        seen.append(set(keys))
        failures += [entry for b in batches for entry in b["failed"]]
    assert not seen[0] & seen[1]
    drawn_broken = sum(4 in shard for shard in seen)
    assert drawn_broken == 1  # seed 3, epoch 1: rank 1 draws the broken video
    assert len(failures) >= drawn_broken and all("clip4.mp4: " in entry for entry in failures)


@pytest.mark.slow
def test_training_batches_do_not_depend_on_the_number_of_workers(dataset_dir):
    torch.set_num_threads(1)
    dataset = VideoDataset(dataset_dir, "train", _cfg(), train=True)
    runs = []
    for workers in (0, 2):
        loader = build_loader(dataset, _cfg(batch_size=3, num_workers=workers), train=True, seed=7)
        loader.sampler.set_epoch(2)
        runs.append(_run(loader))
    for a, b in zip(*runs):
        assert torch.equal(a["clip"], b["clip"]) and torch.equal(a["label"], b["label"])


@pytest.mark.slow
def test_two_workers_two_ranks_evaluation_covers_every_video_once(dataset_dir):
    torch.set_num_threads(1)
    dataset = VideoDataset(dataset_dir, "val", _cfg(), train=False, clips=2)
    cfg = _cfg(batch_size=2, num_workers=2, persistent_workers=False)
    indices, invalid, failed = [], [], []
    for rank in range(2):
        for batch in _run(build_loader(dataset, cfg, train=False, rank=rank, world_size=2)):
            assert batch["clip"].shape[1:] == (2, 3, 8, 56, 56)
            indices += batch["index"].tolist()
            invalid += batch["index"][~batch["valid"]].tolist()
            failed += batch["failed"]
    assert sorted(indices) == list(range(VIDEOS))
    assert invalid == [4] and len(failed) == 1
