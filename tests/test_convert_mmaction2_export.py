"""`models.export.mmaction2.write_mmaction2`: mmaction2 -> ours -> mmaction2 gives back the same tensors
under the same keys; one of our own models, exported, is built by mmaction2 1.2.0's own modules from the
written config text and gives our logits; what mmaction2 lacks is refused in one line naming the part."""
from __future__ import annotations

import pytest
import torch

from configs.compose import load_config, model_config_names
from engine.config import config_from_dict
from commands.convert import convert
from errors import UserError
from models.build import build_model
from models.export.mmaction2 import write_mmaction2
from tests.mmaction2_modules import Mmaction2Recognizer, require
from bench.random_weights import randomize
from tests.test_convert_mmaction2 import convert_args, mmaction2_file

# mmaction2's ResNet3d pools pool1 with temporal kernel 1 and after res2 with kernel 2: trained so, ours exports
MMACTION2_POOLS = ["model.temporal.pool1_kernel=1", "model.temporal.res2_pool_kernel=2"]
EXPORTABLE = {"i3d_r50", "i3d_r50_nl5", "tsn_r50"}  # the shipped configs mmaction2 has, with MMACTION2_POOLS


def exported_logits(tmp_path, cfg, ours, clip):
    """Our model written for mmaction2, built by its own modules from the written text: (ours, theirs) logits."""
    from mmengine.config import Config

    checkpoint, text = write_mmaction2(cfg.model, ours.state_dict(), tmp_path / "exported",
                                       normalisation=(cfg.data.transforms.mean, cfg.data.transforms.std))
    config = Config.fromfile(str(text))
    theirs = Mmaction2Recognizer(config.model)
    theirs.load_state_dict(torch.load(checkpoint, weights_only=True)["state_dict"])  # strict: every key
    with torch.no_grad():
        return ours.eval()(clip), theirs.eval()(clip), config


@pytest.mark.slow
@pytest.mark.parametrize("name", model_config_names())
def test_every_shipped_model_config_exports_with_equal_logits_or_is_refused_in_one_line(tmp_path, name):
    require()
    cfg = load_config(f"configs/model/{name}.yaml", MMACTION2_POOLS)
    ours = build_model(cfg.model, 5)
    if name not in EXPORTABLE:
        with pytest.raises(UserError, match=r"^mmaction2 has no [^\n]+$"):
            write_mmaction2(cfg.model, ours.state_dict(), tmp_path / "exported")
        assert not list(tmp_path.iterdir())
        return
    randomize(ours, seed=6)
    for block in ours.attention_blocks().values():  # a non-local branch that matters (its BN starts at zero)
        torch.nn.init.normal_(block.bn.weight, 1.0, 0.2)
    clip = torch.randn(1, 3, 8, 32, 32, generator=torch.Generator().manual_seed(3))
    expected, got, _ = exported_logits(tmp_path, cfg, ours, clip)
    error = ((got - expected).abs().max() / expected.abs().max()).item()
    print(f"{name}: max |diff| / max |logit| = {error:.2e}")
    assert expected.abs().max() > 1e-3 and error < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["nl_embedded_gaussian", "tsn_r50"])
def test_mmaction2_to_ours_to_mmaction2_gives_bit_equal_weights(tmp_path, variant):
    path, _, _ = mmaction2_file(tmp_path, variant)
    convert(convert_args(path, tmp_path / "ours.pt"))
    ours = torch.load(tmp_path / "ours.pt", weights_only=True)
    written = write_mmaction2(config_from_dict(ours["config"]).model, ours["model"], tmp_path / "back")
    assert [p.name for p in written] == ["back.pth", "back.py"]
    original = torch.load(path, weights_only=True)["state_dict"]
    back = torch.load(written[0], weights_only=True)
    assert sorted(back["state_dict"]) == sorted(original)
    assert all(torch.equal(back["state_dict"][k], original[k]) for k in original)
    assert back["meta"]["cfg"] == written[1].read_text()


@pytest.mark.parametrize("mode", ["embedded_gaussian", "concatenation"])
def test_a_small_model_exported_runs_in_mmaction2_with_our_logits(tmp_path, mode):
    require()
    cfg = load_config("configs/model/i3d_tiny_nl.yaml", MMACTION2_POOLS + [
        "model.depth=50", f"model.attention.0.mode={mode}", "model.attention.0.scale=false"])
    ours = build_model(cfg.model, 5)
    randomize(ours, seed=4)
    for block in ours.attention_blocks().values():
        torch.nn.init.normal_(block.bn.weight, 1.0, 0.2)
    clip = torch.randn(1, 3, 8, 64, 64, generator=torch.Generator().manual_seed(3))
    expected, got, config = exported_logits(tmp_path, cfg, ours, clip)
    error = ((got - expected).abs().max() / expected.abs().max()).item()
    print(f"{mode}: max |diff| / max |logit| = {error:.2e}")
    assert expected.abs().max() > 1e-3 and error < 1e-4
    assert [round(v, 3) for v in config.model.data_preprocessor.mean] == [114.75] * 3  # 0.45 on 0..255


@pytest.mark.parametrize("name, overrides, part", [
    ("i3d_tiny_cbam", MMACTION2_POOLS, r"mmaction2 has no 'cbam' attention block \(model\.attention\.0\.type=cbam\)"),
    ("tsn_tiny_iaa", [], r"mmaction2 has no pyramid attention head \(model\.iaa\.enabled=True\)"),
    ("i3d_tiny", [], r"mmaction2 has no pool1 with a temporal kernel \(model\.temporal\.pool1_kernel=0\)"),
    ("i3d_tiny", MMACTION2_POOLS, r"mmaction2 has no basic block inflating only its first conv \(model\.inflate="),
    ("c2d_tiny_nl", [], r"mmaction2 has no attention blocks in its 2D ResNet \(c2d\)"),
])
def test_what_mmaction2_lacks_is_refused_naming_the_part(tmp_path, name, overrides, part):
    cfg = load_config(f"configs/model/{name}.yaml", overrides)
    with pytest.raises(UserError, match=part):
        write_mmaction2(cfg.model, build_model(cfg.model, 3).state_dict(), tmp_path / "x")
    assert not list(tmp_path.iterdir())
