"""`predict` against `test` on the same checkpoint and views, its timeline over a long video, skipped
videos, and Grad-CAM for I3D, C2D and TSN layers and attention blocks (real files, real decoders)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import run
from configs.compose import load_config
from engine.checkpoint import load_trained
from inference.gradcam import grad_cam
from errors import UserError
from models.build import build_model
from tests.conftest import ROOT
from bench.random_weights import random_checkpoint
from video.encode import write_video

SMALL = ["data.sampling.num_frames=8", "data.transforms.test_scale=48", "data.transforms.crop_size=40",
         "logger.wandb.mode=disabled", "data.num_workers=0", "data.batch_size=4"]


@pytest.fixture(scope="module")
def dataset(synthetic_dataset):
    return synthetic_dataset(1, 2)


def checkpoint(tmp_path: Path, root: Path, model_config: str, *overrides: str) -> Path:
    """A checkpoint of random weights (BN statistics included) for the dataset's classes."""
    cfg = load_config(str(ROOT / "configs" / "model" / f"{model_config}.yaml"),
                      [f"data.root={root}", *SMALL, *overrides])
    return random_checkpoint(tmp_path / f"{model_config}.pt", cfg, (root / "labels.txt").read_text().split(), seed=5)


def test_predict_gives_tests_scores_for_every_video(tmp_path, dataset):
    path = checkpoint(tmp_path, dataset, "i3d_tiny_nl")
    views = ["test.clips=2", "test.crops=3"]
    assert run.main(["test", f"checkpoint={path}", "--out", str(tmp_path / "test"), *views]) == 0
    assert run.main(["predict", f"checkpoint={path}", "--video", str(dataset / "val"), "--out",
                     str(tmp_path / "predict"), *views, "--top-k", "3"]) == 0
    tested = {Path(v["path"]).name: v for v in json.loads((tmp_path / "test" / "test_results.json").read_text())["per_video"]}
    labels = (dataset / "labels.txt").read_text().split()
    predicted = json.loads((tmp_path / "predict" / "predictions.json").read_text())
    assert predicted["skipped"] == [] and len(predicted["videos"]) == len(tested) == 20
    for video in predicted["videos"]:
        expected = tested[Path(video["path"]).name]
        assert video["top"][0]["label"] == expected["pred"] and len(video["top"]) == 3 and video["windows"]
        for entry in video["top"]:  # the same probabilities, not just the same winner
            assert entry["score"] == pytest.approx(expected["scores"][labels.index(entry["label"])], abs=2e-6)


def test_timeline_covers_a_long_video_and_broken_files_are_skipped(tmp_path, dataset):
    path = checkpoint(tmp_path, dataset, "i3d_tiny")
    videos = tmp_path / "videos"
    frames = np.concatenate([np.full((16, 48, 64, 3), 40 * k, np.uint8) for k in range(5)])  # 80 frames
    (videos / "nested").mkdir(parents=True)
    write_video(videos / "long.mp4", frames, 8.0)  # 10 s
    (videos / "nested" / "broken.mp4").write_bytes(b"not a video at all" * 20)
    assert run.main(["predict", f"checkpoint={path}", "--video", str(videos), "--out", str(tmp_path / "p"),
                     "predict.window_stride=2"]) == 0
    result = json.loads((tmp_path / "p" / "predictions.json").read_text())
    assert [Path(s["path"]).name for s in result["skipped"]] == ["broken.mp4"] and result["skipped"][0]["reason"]
    windows = result["videos"][0]["windows"]
    span = 15 / 8  # 8 frames at stride 2 cover 15 frames of 8 fps
    assert [w["start"] for w in windows[:-1]] == [2.0 * i for i in range(len(windows) - 1)]
    assert windows[-1]["end"] == 10.0 and all(w["end"] - w["start"] == pytest.approx(span) for w in windows)
    with Image.open(result["videos"][0]["timeline"]) as image:
        image.verify()


@pytest.mark.parametrize("model_config, layer", [("i3d_tiny_nl", "res4.1.nonlocal"), ("i3d_tiny_nl", "res5"),
                                                 ("c2d_tiny_nl", "res3.1"), ("tsn_tiny", "res4")])
def test_explain_writes_grad_cam_for_layers_and_attention_blocks(tmp_path, dataset, model_config, layer):
    path = checkpoint(tmp_path, dataset, model_config)
    video = sorted((dataset / "val").glob("*.mp4"))[0]
    assert run.main(["predict", f"checkpoint={path}", "--video", str(video), "--out", str(tmp_path / "e"),
                     "--explain", f"predict.gradcam_layer={layer}", "--class", "move_left"]) == 0
    entry = json.loads((tmp_path / "e" / "predictions.json").read_text())["videos"][0]["explain"]
    assert entry["layer"] == layer and entry["class"] == "move_left"
    with Image.open(entry["gradcam_png"]) as image:
        image.verify()
    assert Path(entry["gradcam_mp4"]).stat().st_size > 0


def test_grad_cam_of_identical_tsn_segments_is_identical_and_names_are_checked(tmp_path, dataset):
    model, _, _ = load_trained(checkpoint(tmp_path, dataset, "tsn_tiny"))
    frame = torch.randn(1, 3, 1, 40, 40, generator=torch.Generator().manual_seed(0))
    cam = grad_cam(model, frame.expand(1, 3, 4, 40, 40).contiguous(), "res4")
    assert cam.heat.shape == (4, 40, 40) and cam.heat.max() == pytest.approx(1.0)
    assert np.abs(cam.heat - cam.heat[:1]).max() < 1e-5 and cam.heat.std() > 0.01
    with pytest.raises(UserError, match="valid: res2, res2.0"):
        grad_cam(model, frame, "res9")


def test_profile_sweeps_placements_over_a_checkpoints_network(tmp_path, dataset):
    path = checkpoint(tmp_path, dataset, "c2d_tiny_nl")
    assert run.main(["profile", f"checkpoint={path}", "--out", str(tmp_path / "prof"), "profile.device=cpu",
                     "profile.placements=[{name: none, attention: []}]", "profile.implementations=[fused]"]) == 0
    rows = json.loads((tmp_path / "prof" / "profile.json").read_text())["rows"]
    plain = load_config(str(ROOT / "configs" / "model" / "c2d_tiny_nl.yaml"), ["model.attention=[]"]).model
    base = [r for r in rows if r["placement"] == "none"][0]
    assert base["params"] == sum(p.numel() for p in build_model(plain, 400).parameters())
