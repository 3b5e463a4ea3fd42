"""`convert --source mmaction2` is proven on mmaction2's own modules, built from its published configs
with random weights and random BatchNorm statistics and affine terms (so every branch, the non-local
ones included, changes the output): eval-mode logits of the converted model equal theirs, at full R50
width, to max |diff| / max |logit| < 1e-4, for every variant; and the converted input normalisation
equals their data preprocessor's. The checkpoint file is named as in the model zoo, so the converter
reads what the weights cannot show from the name as it would on a downloaded file."""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest
import torch
import yaml

import run
from bench.random_weights import randomize
from commands.convert import convert
from engine.checkpoint import load_trained
from engine.inputs import model_input
from errors import UserError
from tests.mmaction2_modules import Mmaction2Recognizer, published_config

I3D = "recognition/i3d/i3d_imagenet-pretrained-r50{}_8xb8-32x2x1-100e_kinetics400-rgb.py"
VARIANTS = {  # name -> (published config, backbone changes, model-zoo style file name)
    "i3d_r50": (I3D.format(""), {}, "i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb_20220812-e213c223.pth"),
    "i3d_r101": (I3D.format(""), {"depth": 101, "inflate": ((1, 1, 1), (1, 0, 1, 0), tuple((j + 1) % 2 for j in range(23)),
                                                            (0, 1, 0))}, "i3d_r101_own.pth"),
    "i3d_r50_heavy": (I3D.format("-heavy"), {},
                      "i3d_imagenet-pretrained-r50-heavy_8xb8-32x2x1-100e_kinetics400-rgb_20220812-ed501b31.pth"),
    "nl_embedded_gaussian": (I3D.format("-nl-embedded-gaussian"), {},
                             "i3d_imagenet-pretrained-r50-nl-embedded-gaussian_8xb8-32x2x1-100e_kinetics400-rgb_20220812-afd8f562.pth"),
    "nl_dot_product": (I3D.format("-nl-dot-product"), {},
                       "i3d_imagenet-pretrained-r50-nl-dot-product_8xb8-32x2x1-100e_kinetics400-rgb_20220812-8e1f2148.pth"),
    "nl_gaussian": (I3D.format("-nl-gaussian"), {},
                    "i3d_imagenet-pretrained-r50-nl-gaussian_8xb8-32x2x1-100e_kinetics400-rgb_20220812-0c5cbf5a.pth"),
    # not published: use_scale and no subsampling, read from the config text mmengine stores in `meta`
    "nl_embedded_scaled_full": (I3D.format("-nl-embedded-gaussian"), {"non_local_cfg": {
        "sub_sample": False, "use_scale": True, "norm_cfg": {"type": "BN3d"}, "mode": "embedded_gaussian"}},
        "renamed.pth"),
    # not published: mmcv's concatenation mode, and conv_out without BN (a conv bias instead)
    "nl_concatenation_no_norm": (I3D.format("-nl-gaussian"), {"non_local_cfg": {
        "sub_sample": True, "mode": "concatenation"}}, "renamed_concat.pth"),
    "tsn_r50": ("recognition/tsn/tsn_imagenet-pretrained-r50_8xb32-1x1x8-100e_kinetics400-rgb.py", {},
                "tsn_imagenet-pretrained-r50_8xb32-1x1x8-100e_kinetics400-rgb_20220906-2692d16c.pth"),
    "c2d_r50": ("recognition/c2d/c2d_r50-in1k-pre_8xb32-8x8x1-100e_kinetics400-rgb.py", {},
                "c2d_r50-in1k-pre_8xb32-8x8x1-100e_kinetics400-rgb_20221027-3ca304fa.pth"),
}
# variant -> (its matching configs/model file, the key that file contradicts, the override that fixes it)
MATCHING = {
    "i3d_r50": ("i3d_r50", None, None), "i3d_r50_heavy": ("i3d_r50", None, None),
    "i3d_r101": ("i3d_r50", "model.depth", "model.depth=101"),
    "nl_embedded_gaussian": ("i3d_r50_nl5", None, None),
    "nl_dot_product": ("i3d_r50_nl5", "model.attention.0.mode", "model.attention.0.mode=dot_product"),
    "nl_gaussian": ("i3d_r50_nl5", "model.attention.0.mode", "model.attention.0.mode=gaussian"),
    "nl_embedded_scaled_full": ("i3d_r50_nl5", "model.attention.0.subsample", "model.attention.0.subsample=false"),
    "nl_concatenation_no_norm": ("i3d_r50_nl5", "model.attention.0.mode", "model.attention.0.mode=concatenation"),
    "tsn_r50": ("tsn_r50", None, None), "c2d_r50": ("c2d_r50", None, None),
}
CLIP = (1, 3, 8, 64, 64)  # batch, channels, frames (TSN: segments), height, width


def mmaction2_file(tmp_path: Path, variant: str):
    """A checkpoint as mmaction2 saves it, from its own modules with random weights; and those modules.
    Model-zoo files are read by their names; a renamed file carries the config text in its meta, as
    mmengine's runner stores it."""
    config_name, changes, file_name = VARIANTS[variant]
    config = published_config(config_name)
    config.model.backbone.update(changes)
    recognizer = Mmaction2Recognizer(config.model)
    randomize(recognizer, seed=len(variant))
    path = tmp_path / file_name
    meta = {"cfg": config.pretty_text} if file_name.startswith("renamed") else {"mmaction2_version": "1.2.0"}
    torch.save({"meta": meta, "state_dict": recognizer.state_dict()}, path)
    return path, recognizer.eval(), config


def convert_args(path: Path, out: Path, **extra) -> argparse.Namespace:
    values = dict(source="mmaction2", checkpoint=path, out=out, labels=None, arch=None, nonlocal_mode=None,
                  trust_file=False, config=None, overrides=[], verify=False)
    values.update(extra)
    return argparse.Namespace(**values)


def their_logits_and_clip(theirs, config):
    clip = torch.randint(0, 256, CLIP, dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    mean = torch.tensor(config.model.data_preprocessor.mean).view(3, 1, 1, 1)
    std = torch.tensor(config.model.data_preprocessor.std).view(3, 1, 1, 1)
    their_input = (clip.float() - mean) / std  # ActionDataPreprocessor's normalisation
    with torch.no_grad():
        return theirs(their_input), their_input, clip


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_converted_logits_equal_mmaction2s_with_and_without_a_model_config(tmp_path, variant):
    """Without --config, and with the matching configs/model file (refused first, naming the key, where that
    file says otherwise than the checkpoint; then with the user's fix): the same logits, mmaction2's."""
    path, theirs, config = mmaction2_file(tmp_path, variant)
    expected, their_input, clip = their_logits_and_clip(theirs, config)
    yaml_name, contradicted, fix = MATCHING[variant]
    model_config = f"configs/model/{yaml_name}.yaml"
    if contradicted:
        with pytest.raises(UserError, match=rf"contradict the checkpoint: {re.escape(contradicted)} is "):
            convert(convert_args(path, tmp_path / "refused.pt", config=model_config))
        assert not (tmp_path / "refused.pt").exists()
    convert(convert_args(path, tmp_path / "plain.pt"))
    convert(convert_args(path, tmp_path / "configured.pt", config=model_config, overrides=[fix] if fix else []))
    for name in ("plain", "configured"):
        ours, ours_cfg, labels = load_trained(tmp_path / f"{name}.pt")
        assert len(labels) == 400
        our_input = model_input(clip, torch.device("cpu"), ours_cfg.data, channels_last=False)
        assert (our_input - their_input).abs().max() < 1e-5
        with torch.no_grad():
            got = ours(our_input)
        error = ((got - expected).abs().max() / expected.abs().max()).item()
        print(f"{variant} ({name}): max |diff| / max |logit| = {error:.2e} (max |logit| {expected.abs().max():.3g})")
        assert expected.abs().max() > 1e-3 and error < 1e-4
    blocks = ours.attention_blocks()
    if blocks:  # the non-local branches change the logits far beyond the tolerance
        for block in blocks.values():
            torch.nn.init.zeros_(block.bn.weight), torch.nn.init.zeros_(block.bn.bias)
        with torch.no_grad():
            without = ours(our_input)
        change = ((without - expected).abs().max() / expected.abs().max()).item()
        print(f"{variant}: without the non-local branches the logits move by {change:.2e} of max |logit|")
        assert change > 1e-2


def test_inferred_settings_and_what_the_weights_cannot_tell(tmp_path, capsys):
    path, recognizer, config = mmaction2_file(tmp_path, "nl_dot_product")
    renamed = tmp_path / "my_model.pth"
    torch.save({"meta": {}, "state_dict": recognizer.state_dict()}, renamed)
    with pytest.raises(UserError, match="--nonlocal-mode"):  # neither name nor meta says dot product
        convert(convert_args(renamed, tmp_path / "a.pt"))
    result = convert(convert_args(renamed, tmp_path / "b.pt", nonlocal_mode="dot_product"))
    assert "model.attention.0.mode: dot_product  <- --nonlocal-mode" in result["report"]
    with pytest.raises(UserError, match="--nonlocal-mode embedded_gaussian contradicts the file name, which says dot_product"):
        convert(convert_args(path, tmp_path / "x.pt", nonlocal_mode="embedded_gaussian"))
    torch.save({"meta": {"cfg": config.pretty_text}, "state_dict": torch.load(renamed)["state_dict"]}, renamed)
    result = convert(convert_args(renamed, tmp_path / "c.pt", overrides=["test.clips=2", "model.dropout=0.1"]))
    report = "\n".join(result["report"])  # mmengine's stored config text; the overrides fill in what it may
    assert "model.attention.0.mode: dot_product  <- the checkpoint's meta (its stored config)" in report
    assert "model.attention.0.scale: False  <- the checkpoint's meta" in report
    assert "test.clips: 2  <- override test.clips=2" in report and "model.dropout: 0.1  <- override" in report
    assert "model.attention.0.blocks: [[1, 3], [1, 3, 5]]  <- the weights" in report
    _, cfg, _ = load_trained(tmp_path / "c.pt")
    entry = cfg.model.attention[0]
    assert (entry.mode, entry.scale, entry.subsample, list(entry.stages)) == ("dot_product", False, True, [3, 4])
    assert [list(b) for b in entry.blocks] == [[1, 3], [1, 3, 5]]
    assert cfg.data.sampling.num_frames == 32 and cfg.test.clips * cfg.test.crops == 6 and cfg.model.dropout == 0.1
    with pytest.raises(UserError, match=r"model\.attention\.0\.scale is False from the checkpoint's meta .*, True "
                                        r"from override model\.attention\.0\.scale=true; model\.num_classes is 400"):
        convert(convert_args(renamed, tmp_path / "d.pt", overrides=["model.attention.0.scale=true", "model.num_classes=7"]))
    assert not (tmp_path / "d.pt").exists() and not (tmp_path / "d.yaml").exists()


def test_a_leftover_key_a_missing_key_and_a_wrong_shape_are_named(tmp_path):
    path, recognizer, _ = mmaction2_file(tmp_path, "i3d_r50")
    state = recognizer.state_dict()
    for change, message in ((lambda s: s.update({"backbone.extra.weight": torch.zeros(1)}), "backbone.extra.weight"),
                            (lambda s: s.pop("backbone.layer1.0.conv2.bn.running_var"), "res2.0.bn2.running_var"),
                            (lambda s: s.update({"cls_head.fc_cls.bias": torch.zeros(3)}), "head.fc.bias")):
        broken = dict(state)
        change(broken)
        torch.save({"meta": {}, "state_dict": broken}, path)
        with pytest.raises(UserError, match=message.replace(".", r"\.")):
            convert(convert_args(path, tmp_path / "x.pt"))


def test_labels_and_a_config_to_check_against(tmp_path):
    path, _, _ = mmaction2_file(tmp_path, "i3d_r50")
    labels = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "labelmaps" / "kinetics400.txt"
    if not labels.is_file():
        labels = tmp_path / "labels.txt"
        labels.write_text("".join(f"c{i}\n" for i in range(400)))
    convert(convert_args(path, tmp_path / "a.pt", labels=labels, config="configs/model/i3d_r50.yaml"))
    assert load_trained(tmp_path / "a.pt")[2] == labels.read_text().split("\n")[:400]
    with pytest.raises(UserError, match="model.attention has 0 entries from the weights, 1 from --config"):
        convert(convert_args(path, tmp_path / "b.pt", config="configs/model/i3d_r50_nl5.yaml"))
    with pytest.raises(UserError, match="model.arch is i3d from the weights .3D kernels., c2d from --config"):
        convert(convert_args(path, tmp_path / "b.pt", config="configs/model/c2d_r50.yaml"))
    short = tmp_path / "short.txt"
    short.write_text("a\nb\n")
    with pytest.raises(UserError, match="lists 2 classes"):
        convert(convert_args(path, tmp_path / "c.pt", labels=short))
    fine_tune = yaml.safe_load((tmp_path / "a.yaml").read_text())
    assert fine_tune["model"]["num_classes"] == 0 and fine_tune["model"]["temporal"]["res2_pool_kernel"] == 2
    assert [round(255 * s, 3) for s in fine_tune["data"]["transforms"]["std"]] == [58.395, 57.12, 57.375]
    convert(convert_args(path, tmp_path / "again.pt", config=str(tmp_path / "a.yaml")))  # its own OUT.yaml agrees
    assert torch.load(tmp_path / "again.pt", weights_only=True)["config"]["model"] == \
        torch.load(tmp_path / "a.pt", weights_only=True)["config"]["model"]


def test_a_converted_non_local_i3d_predicts_explains_and_shows_its_relations(tmp_path, clips_dir):
    path, _, _ = mmaction2_file(tmp_path, "nl_embedded_gaussian")
    convert(convert_args(path, tmp_path / "nl.pt"))
    small = ["data.sampling.num_frames=8", "data.transforms.test_scale=128", "data.transforms.crop_size=112",
             "test.clips=1", "test.crops=1", "logger.wandb.mode=disabled"]
    video = str(clips_dir / "tai_chi_k400.mp4")
    assert run.main(["visualize", f"checkpoint={tmp_path / 'nl.pt'}", "--video", video, "--out",
                     str(tmp_path / "vis"), *small]) == 0
    relations = json.loads((tmp_path / "vis" / "relations.json").read_text())
    assert relations["block"] == "res4.5.nonlocal" and relations["frames"] == [8, 112, 112]
    assert run.main(["predict", f"checkpoint={tmp_path / 'nl.pt'}", "--video", video, "--out", str(tmp_path / "p"),
                     "--explain", "predict.gradcam_layer=res4.5.nonlocal", *small]) == 0
    entry = json.loads((tmp_path / "p" / "predictions.json").read_text())["videos"][0]
    assert Path(entry["explain"]["gradcam_png"]).is_file() and len(entry["top"]) == 5
