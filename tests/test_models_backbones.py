"""Backbones: the shape of every residual block's output in every stage, and ImageNet inflation."""
import pytest
import torch
import torchvision

from errors import UserError
from models.backbones.pretrained import load_2d_weights
from models.backbones.resnet3d import LAYOUTS, STAGES, ResNet3d
from models.build import build_model
from models.config import ModelConfig, TemporalConfig

WIDTH = 0.125  # 8 stem channels


def _block_outputs(backbone, clip):
    shapes = {}
    hooks = [block.register_forward_hook(lambda m, i, o, key=(stage, j): shapes.__setitem__(key, o.shape))
             for stage in STAGES for j, block in enumerate(backbone.get_submodule(stage))]
    backbone.stage_features(clip)
    for hook in hooks:
        hook.remove()
    return shapes


@pytest.mark.parametrize("depth", sorted(LAYOUTS))
@pytest.mark.parametrize("arch, batch, frames", [("i3d", 2, (4, 2, 2, 2)), ("c2d", 2, (4, 2, 2, 2)),
                                                 ("tsn", 32, (1, 1, 1, 1))])
def test_every_block_of_every_stage_has_the_documented_shape(arch, batch, frames, depth):
    """Two 16x64x64 clips; i3d/c2d: conv1 and pool1 take T 16 -> 8 -> 4, the pool after res2 4 -> 2;
    tsn: blocks see each of the 2 x 16 segments as its own image."""
    cfg = ModelConfig(arch=arch, depth=depth, width=WIDTH)
    backbone = build_model(cfg, num_classes=3).backbone
    expansion = 4 if depth >= 50 else 1
    shapes = _block_outputs(backbone, torch.randn(2, 3, 16, 64, 64))
    assert len(shapes) == sum(LAYOUTS[depth][1])
    for index, stage in enumerate(STAGES):
        size = 16 // 2 ** index
        expected = (batch, 8 * 2 ** index * expansion, frames[index], size, size)
        for j in range(LAYOUTS[depth][1][index]):
            assert tuple(shapes[(stage, j)]) == expected, (stage, j)


def test_default_i3d_geometry_matches_the_docstring():
    """32x224x224 through the default I3D-R50 layout (width 1/8 to stay cheap)."""
    backbone = build_model(ModelConfig(width=WIDTH), 3).backbone
    features = backbone.stage_features(torch.randn(1, 3, 32, 224, 224))
    assert {k: tuple(v.shape[2:]) for k, v in features.items()} == {
        "res2": (8, 56, 56), "res3": (4, 28, 28), "res4": (4, 14, 14), "res5": (4, 7, 7)}


def _random_torchvision_resnet(depth, path):
    torch.manual_seed(depth)
    net = getattr(torchvision.models, f"resnet{depth}")()
    for module in net.modules():  # make BN do something in eval mode
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.1, 0.1)
    torch.save(net.state_dict(), path)
    return net.eval()


def _torchvision_stages(net, image):
    x = net.maxpool(net.relu(net.bn1(net.conv1(image))))
    out = {}
    for index, stage in enumerate(STAGES):
        x = getattr(net, f"layer{index + 1}")(x)
        out[stage] = x
    return out


@pytest.mark.parametrize("depth, radius", [(18, 7), (50, 11)])
def test_inflated_i3d_on_identical_frames_gives_the_2d_features(tmp_path, depth, radius):
    """Temporal strides 1, so the centre frame is `radius` frames (the temporal receptive radius) away
    from the zero padding of the clip's ends and must equal the 2D network's output for that image."""
    path = tmp_path / f"resnet{depth}.pth"
    net = _random_torchvision_resnet(depth, path)
    cfg = ModelConfig(arch="i3d", depth=depth, pretrained=str(path),
                      temporal=TemporalConfig(conv1_kernel=5, conv1_stride=1, pool1_stride=1, res2_pool_stride=1))
    backbone = build_model(cfg, 3).backbone.eval()
    image = torch.randn(1, 3, 32, 32)
    clip = image.unsqueeze(2).expand(-1, -1, 2 * radius + 1, -1, -1)
    with torch.no_grad():
        ours, theirs = backbone.stage_features(clip), _torchvision_stages(net, image)
    for stage in STAGES:  # float32 sums in another order: allow 1e-5 of the stage's largest activation
        scale = theirs[stage].abs().max().item()
        torch.testing.assert_close(ours[stage][:, :, radius], theirs[stage], rtol=1e-4, atol=1e-5 * scale)
    with torch.no_grad():  # and the clip's end frames do differ, so the test can see padding effects
        assert not torch.allclose(ours["res5"][:, :, 0], theirs["res5"], atol=1e-3)


def test_pretrained_errors_name_the_file_and_the_problem(tmp_path):
    backbone = ResNet3d(depth=18, width=0.25)
    with pytest.raises(UserError, match="file not found.*nope.pth"):
        load_2d_weights(backbone, str(tmp_path / "nope.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="junk.pth is corrupt or not a weight file"):
        load_2d_weights(backbone, str(tmp_path / "junk.pth"))
    torch.save(torchvision.models.resnet34().state_dict(), tmp_path / "r34.pth")
    with pytest.raises(UserError, match="r34.pth does not match.*unexpected res2.2"):
        load_2d_weights(ResNet3d(depth=18), str(tmp_path / "r34.pth"))
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    mismatch = r"'conv1.weight' has shape \(64, 3, 7, 7\), the model needs \(16, 3, 1, 7, 7\)"
    with pytest.raises(UserError, match=mismatch):
        load_2d_weights(backbone, str(tmp_path / "r18.pth"))


@pytest.mark.parametrize("override, culprit", [
    (dict(depth=26), "model.depth=26"),
    (dict(arch="c3d"), "unknown model.arch 'c3d'"),
    (dict(inflate=[[1, 1], [1]]), "model.inflate"),
    (dict(arch="c2d", inflate=[[1, 1], [1, 0], [1, 0], [0, 1]]), "model.inflate applies to arch i3d only"),
    (dict(temporal=TemporalConfig(conv1_kernel=4)), "conv1_kernel=4 must be odd"),
    (dict(temporal=TemporalConfig(pool1_stride=0)), "pool1_stride=0"),
])
def test_bad_backbone_settings_are_user_errors(override, culprit):
    cfg = ModelConfig(depth=18, width=0.25)
    for key, value in override.items():
        setattr(cfg, key, value)
    with pytest.raises(UserError, match=culprit):
        build_model(cfg, 3)
