"""`run.py export` on checkpoints: self-describing ONNX and TorchScript files, a dynamic batch, `predict`
(and `bench predict`) of an ONNX file against its checkpoint on a real clip, and every bad input as one
`error:` line."""
from __future__ import annotations

import json
import subprocess
import sys

import onnx
import onnxruntime
import pytest
import torch

import run
from configs.compose import load_config
from engine.checkpoint import load_trained
from errors import UserError
from tests.conftest import ROOT, SHARED_DATA
from bench.random_weights import random_checkpoint

VIEW = ["data.sampling.num_frames=8", "data.sampling.stride=4", "data.transforms.test_scale=48",
        "data.transforms.crop_size=40", "test.clips=2", "test.crops=3", "predict.window_stride=2"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def labels() -> list[str]:
    path = SHARED_DATA / "labelmaps" / "kinetics400.txt"
    return path.read_text().splitlines()[:12] if path.is_file() else [f"class_{i}" for i in range(12)]


def checkpoint(tmp_path, model_config: str, *overrides: str):
    cfg = load_config(str(ROOT / "configs" / "model" / f"{model_config}.yaml"), [*VIEW, *overrides])
    return random_checkpoint(tmp_path / f"{model_config}.pt", cfg, labels(), seed=3)


def test_onnx_export_is_self_describing_and_takes_any_batch(tmp_path, capsys):
    path = checkpoint(tmp_path, "i3d_tiny_nl")
    out = tmp_path / "out" / "model.onnx"
    assert run.main(["export", f"checkpoint={path}", "--format", "onnx", "--out", str(out), "--dynamic-batch",
                     "test.crops=1"]) == 0
    printed = capsys.readouterr().out
    assert "checked: onnxruntime" in printed and f"-> {out}" in printed and "1x3x8x40x40 and 2x3x8x40x40" in printed
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.onnx"]  # no temporary folder left
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["labels"]) == labels() and meta["input.shape"] == "batch,3,8,40,40"
    assert (meta["test.clips"], meta["test.crops"], meta["data.sampling.mode"]) == ("2", "1", '"dense"')
    assert (meta["data.transforms.crop_size"], meta["data.sampling.num_frames"]) == ("40", "8")
    model, _, _ = load_trained(path)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        clip = torch.randn(batch, 3, 8, 40, 40)
        with torch.no_grad():
            expected = model(clip)
        got = torch.from_numpy(session.run(None, {"clip": clip.numpy()})[0])
        assert ((got - expected).abs().max() / expected.abs().max()) <= 1e-4


def test_torchscript_export_takes_frames_and_size(tmp_path):
    path = checkpoint(tmp_path, "tsn_tiny", "data.sampling.mode=segments", "data.sampling.num_segments=8")
    out = tmp_path / "tsn.pt"
    assert run.main(["export", f"checkpoint={path}", "--format", "torchscript", "--out", str(out),
                     "--frames", "4", "--size", "32"]) == 0
    extra = {"metadata.json": ""}
    traced = torch.jit.load(str(out), _extra_files=extra)
    meta = json.loads(extra["metadata.json"])
    assert meta["input.shape"] == "1,3,4,32,32" and meta["data.sampling.num_segments"] == "4"
    assert (meta["data.transforms.crop_size"], meta["data.transforms.test_scale"]) == ("32", "38")  # 48 * 32/40
    assert traced(torch.randn(1, 3, 4, 32, 32)).shape == (1, 12)


def test_predict_runs_an_onnx_export_with_the_checkpoints_views(tmp_path, clips_dir):
    video = clips_dir / "clean_and_jerk_k400.mp4"
    path = checkpoint(tmp_path, "i3d_tiny_nl_iaa")
    exported = tmp_path / "model.onnx"  # a fixed batch of 1: the wrapper feeds the views one by one
    assert run.main(["export", f"checkpoint={path}", "--format", "onnx", "--out", str(exported)]) == 0
    documents = {}
    for name, model in (("torch", path), ("onnx", exported)):
        assert run.main(["predict", f"checkpoint={model}", "--video", str(video), "--out", str(tmp_path / name)]) == 0
        documents[name] = json.loads((tmp_path / name / "predictions.json").read_text())["videos"][0]
    ours, theirs = documents["torch"], documents["onnx"]
    assert len(ours["windows"]) > 1 and len(ours["windows"]) == len(theirs["windows"])
    for a, b in zip([ours] + ours["windows"], [theirs] + theirs["windows"]):
        assert [t["label"] for t in a["top"]] == [t["label"] for t in b["top"]]
        assert [t["score"] for t in a["top"]] == pytest.approx([t["score"] for t in b["top"]], abs=1e-4)
        assert (a.get("start"), a.get("end")) == (b.get("start"), b.get("end"))
    bench = tmp_path / "bench.json"
    assert run.main(["bench", "predict", f"checkpoint={path}", "--onnx", str(exported), "--video", str(video),
                     "--rounds", "1", "--json", str(bench)]) == 0
    measured = json.loads(bench.read_text())
    assert measured["runtimes"]["torch"]["clips"] == measured["runtimes"]["onnxruntime"]["clips"] == 3 * (2 + len(ours["windows"]))
    assert measured["max_score_diff"] < 1e-4 and measured["runtimes"]["onnxruntime"]["clips_per_s"] > 0
    with pytest.raises(UserError, match=f"--explain needs the PyTorch checkpoint.*{exported}"):
        run.main(["predict", f"checkpoint={exported}", "--video", str(video), "--out", str(tmp_path / "e"), "--explain"])
    assert not (tmp_path / "e").exists()


@pytest.mark.slow
def test_bad_input_is_one_line_naming_it_and_leaves_no_file(tmp_path):
    path, non_local = checkpoint(tmp_path, "i3d_tiny"), checkpoint(tmp_path, "i3d_tiny_nl")
    proc = subprocess.run([sys.executable, "run.py", "export", f"checkpoint={path}", "--format", "tflite",
                           "--out", str(tmp_path / "m.tflite")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: unknown --format 'tflite'; known: mmaction2, onnx, torchscript")
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the output folder should be")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint" * 8)
    before = sorted(tmp_path.rglob("*"))
    cases = [([f"checkpoint={path}", "--out", str(blocker / "m.onnx")], f"--out {blocker / 'm.onnx'}: cannot write"),
             ([f"checkpoint={path}", "--out", str(tmp_path)], f"--out {tmp_path} is a folder"),
             ([f"checkpoint={foreign}", "--out", str(tmp_path / "a.onnx")], f"checkpoint {foreign} is not a checkpoint"),
             ([f"checkpoint={garbage}", "--out", str(tmp_path / "b.onnx")], f"checkpoint: {garbage} is corrupt"),
             ([f"checkpoint={path}", "--out", str(tmp_path / "c.onnx"), "--size", "0"], "--size=0 must be"),
             ([f"checkpoint={path}", "--out", str(tmp_path / "d.onnx"), "model.depth=50"], "'model.depth' is not a view key"),
             ([f"checkpoint={non_local}", "--out", str(tmp_path / "e.onnx"), "--size", "8"],  # res4 gets 0x0
              "--frames/--size: the model cannot take a 1x3x8x8x8 clip")]
    for arguments, message in cases:
        with pytest.raises(UserError, match=message.replace("(", r"\(")):
            run.main(["export", "--format", "onnx", *arguments])
    assert sorted(tmp_path.rglob("*")) == before
    foreign_onnx = tmp_path / "identity.onnx"  # a valid ONNX model, not one of ours
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
                                   [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), str(foreign_onnx))
    with pytest.raises(UserError, match=f"{foreign_onnx} was not written by `run.py export`"):
        run.main(["predict", f"checkpoint={foreign_onnx}", "--video", str(foreign), "--out", str(tmp_path / "p")])
