"""Clip transforms: one set of parameters for all frames, label-aware flips, test views, normalize."""
import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as F

from errors import UserError
from video.config import TransformConfig
from video.transforms import (HorizontalFlip, RandomResizedCrop, ScaleJitterCrop, build_test_transform,
                              build_train_transform, normalize)


def _still_clip(frames=6, height=90, width=120, seed=0):
    """Identical frames: any per-frame difference after a transform means per-frame parameters."""
    image = torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (3, height, width), dtype=np.uint8))
    return image[None].repeat(frames, 1, 1, 1)


def _smooth_clip(frames=4, height=90, width=120):
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    image = torch.stack([xx * 2, yy * 2, (xx + yy)]).clamp(0, 255).to(torch.uint8)
    return image[None].repeat(frames, 1, 1, 1)


@pytest.mark.parametrize("rrc", [False, True])
def test_every_frame_gets_the_same_crop_and_flip(rrc):
    cfg = TransformConfig(train_scale=[64, 96], crop_size=48, random_resized_crop=rrc)
    transform = build_train_transform(cfg, num_classes=2)
    rng = np.random.default_rng(0)
    outputs = set()
    for _ in range(10):
        clip, _ = transform(_still_clip(), 0, rng)
        assert clip.shape == (6, 3, 48, 48) and clip.dtype == torch.uint8
        assert all(torch.equal(clip[0], frame) for frame in clip)
        outputs.add(clip[0].numpy().tobytes())
    assert len(outputs) == 10  # while the parameters do change from clip to clip


def test_same_generator_state_gives_the_same_clip():
    transform = build_train_transform(TransformConfig(train_scale=[64, 96], crop_size=48), num_classes=2)
    first = transform(_still_clip(), 1, np.random.default_rng(3))
    second = transform(_still_clip(), 1, np.random.default_rng(3))
    assert torch.equal(first[0], second[0]) and first[1] == second[1]


def test_crop_before_resize_matches_resize_then_crop():
    """The cheap order (crop in source pixels, resize only the crop) equals the textbook order."""
    clip = _smooth_clip(height=90, width=120)
    ours, _ = ScaleJitterCrop([60, 60], 40)(clip, 0, np.random.default_rng(1))
    rng = np.random.default_rng(1)  # the same draws: short side, then top and left in scaled pixels
    assert rng.integers(60, 61) == 60
    top, left = int(rng.integers(0, 60 - 40 + 1)), int(rng.integers(0, 80 - 40 + 1))
    textbook = F.crop(F.resize(clip, [60, 80], antialias=True), top, left, 40, 40)
    assert (ours.float() - textbook.float()).abs().mean() < 2.0


def test_flip_mirrors_and_swaps_only_paired_labels():
    flip = HorizontalFlip(num_classes=4, pairs=[(0, 1)], p=1.0)
    clip = _still_clip()
    flipped, label = flip(clip, 0, np.random.default_rng(0))
    assert torch.equal(flipped, clip.flip(-1)) and label == 1
    assert flip(clip, 1, np.random.default_rng(0))[1] == 0
    assert flip(clip, 3, np.random.default_rng(0))[1] == 3
    assert HorizontalFlip(num_classes=4, p=0.0)(clip, 0, np.random.default_rng(0)) == (clip, 0)


def test_flip_happens_about_half_the_time():
    flip = HorizontalFlip(num_classes=2, pairs=[(0, 1)])
    rng = np.random.default_rng(0)
    labels = [flip(_still_clip(frames=1), 0, rng)[1] for _ in range(400)]
    assert 150 < sum(labels) < 250


def test_random_resized_crop_boxes_stay_inside():
    crop = RandomResizedCrop(32, [0.2, 1.0], [0.75, 1.333])
    rng = np.random.default_rng(0)
    for _ in range(300):
        top, left, height, width = crop.box(90, 120, rng)
        assert top >= 0 and left >= 0 and top + height <= 90 and left + width <= 120
        assert 0.2 * 90 * 120 * 0.9 <= height * width <= 90 * 120


@pytest.mark.parametrize("crops, views", [(1, 1), (3, 3), (10, 10)])
def test_test_views_have_the_crop_size(crops, views):
    transform = build_test_transform(TransformConfig(test_scale=64, crop_size=56), crops)
    out = transform(_still_clip(height=90, width=120))
    assert out.shape == (views, 6, 3, 56, 56) and out.dtype == torch.uint8
    assert all(torch.equal(view[0], view[-1]) for view in out)


def test_three_crop_runs_along_the_long_side():
    clip = _smooth_clip(height=64, width=128)  # red grows left to right
    views = build_test_transform(TransformConfig(test_scale=64, crop_size=64), 3)(clip)
    reds = [view[0, 0].float().mean().item() for view in views]
    assert reds[0] < reds[1] < reds[2]
    tall = build_test_transform(TransformConfig(test_scale=64, crop_size=64), 3)(_smooth_clip(height=128, width=64))
    greens = [view[0, 1].float().mean().item() for view in tall]
    assert greens[0] < greens[1] < greens[2]


def test_centre_crop_is_central():
    clip = _smooth_clip(height=64, width=128)
    view = build_test_transform(TransformConfig(test_scale=64, crop_size=64), 1)(clip)[0]
    assert torch.equal(view, clip[:, :, :, 32:96])


def test_ten_crop_refuses_datasets_with_direction_sensitive_classes():
    with pytest.raises(UserError, match="flip_pairs"):
        build_test_transform(TransformConfig(), 10, flip_pairs=[(0, 1)])


@pytest.mark.parametrize("overrides, key", [(dict(crop_size=80, test_scale=64), "crop_size"),
                                            (dict(train_scale=[90, 80]), "train_scale")])
def test_bad_sizes_name_the_key(overrides, key):
    with pytest.raises(UserError, match=key):
        build_train_transform(TransformConfig(**overrides), num_classes=2)


def test_normalize_maps_uint8_to_standardized_float():
    clip = torch.full((2, 3, 4, 8, 8), 255, dtype=torch.uint8)
    clip[:, 1] = 0
    out = normalize(clip, [0.5, 0.5, 0.25], [0.25, 0.5, 0.5])
    assert out.dtype == torch.float32 and out.shape == clip.shape
    assert torch.allclose(out[:, 0], torch.tensor(2.0)) and torch.allclose(out[:, 1], torch.tensor(-1.0))
    assert torch.allclose(out[:, 2], torch.tensor(1.5))


def test_each_transform_says_how_large_its_source_frames_need_to_be():
    cfg = TransformConfig(train_scale=[64, 80], crop_size=56, test_scale=72, area_range=[0.25, 1.0],
                          aspect_range=[1.0, 1.0])
    assert build_train_transform(cfg, 2).source_short_side == 80
    assert build_train_transform(TransformConfig(**{**cfg.__dict__, "random_resized_crop": True}), 2).source_short_side == 112
    assert build_test_transform(cfg, 3).source_short_side == 72
