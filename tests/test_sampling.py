"""Frame sampling: bounds, order, determinism, coverage of test views, fps resampling, short videos."""
import numpy as np
import pytest

from errors import UserError
from video.config import SamplingConfig
from video.sampling import SHORT_VIDEO_RULES, sample_clips

DENSE = SamplingConfig(mode="dense", num_frames=8, stride=4, short_video="repeat_last")
SEGMENTS = SamplingConfig(mode="segments", num_segments=8)
LENGTHS = [1, 2, 7, 8, 29, 30, 31, 100, 333]


@pytest.mark.parametrize("cfg", [DENSE, SEGMENTS], ids=["dense", "segments"])
@pytest.mark.parametrize("short_video", sorted(SHORT_VIDEO_RULES))
def test_indices_stay_inside_the_video(cfg, short_video):
    cfg = SamplingConfig(**{**cfg.__dict__, "short_video": short_video})
    rng = np.random.default_rng(0)
    for length in LENGTHS:
        for indices in (sample_clips(length, cfg, rng), sample_clips(length, cfg, clips=5)):
            assert indices.shape[1] == 8 and indices.dtype == np.int64
            assert indices.min() >= 0 and indices.max() < length


@pytest.mark.parametrize("cfg", [DENSE, SEGMENTS, SamplingConfig(num_frames=8, stride=4, short_video="loop")],
                         ids=["dense", "segments", "dense_loop"])
def test_frames_of_a_clip_are_in_time_order(cfg):
    rng = np.random.default_rng(1)
    span = (cfg.num_frames - 1) * cfg.stride + 1
    for length in LENGTHS:
        if cfg.short_video == "loop" and length < span:
            continue  # looping wraps around by design
        for indices in (sample_clips(length, cfg, rng), sample_clips(length, cfg, clips=4)):
            assert np.all(np.diff(indices, axis=1) >= 0)


@pytest.mark.parametrize("cfg", [DENSE, SEGMENTS], ids=["dense", "segments"])
def test_training_draws_repeat_under_a_seed_and_vary_without(cfg):
    first = [sample_clips(100, cfg, np.random.default_rng(5)) for _ in range(2)]
    assert np.array_equal(*first)
    draws = {sample_clips(100, cfg, np.random.default_rng(seed)).tobytes() for seed in range(20)}
    assert len(draws) > 10
    assert np.array_equal(sample_clips(100, cfg), sample_clips(100, cfg))  # test views: no randomness


def test_dense_clip_has_the_stride_and_random_starts_cover_the_range():
    starts = set()
    rng = np.random.default_rng(0)
    for _ in range(400):
        clip = sample_clips(40, DENSE, rng)[0]
        assert np.all(np.diff(clip) == 4)
        starts.add(int(clip[0]))
    assert starts == set(range(40 - 29 + 1))  # span (8-1)*4+1 = 29


def test_single_test_clip_is_centred():
    clip = sample_clips(41, DENSE)[0]
    assert clip[0] == (41 - 29) // 2 and clip[-1] == clip[0] + 28


@pytest.mark.parametrize("length", [29, 30, 64, 290, 333])
def test_multi_view_dense_clips_span_the_whole_video_evenly(length):
    clips = sample_clips(length, DENSE, clips=10)
    assert clips[0, 0] == 0 and clips[-1, -1] == length - 1
    gaps = np.diff(clips[:, 0])
    assert gaps.max() - gaps.min() <= 1
    covered = np.zeros(length, bool)
    for start, stop in zip(clips[:, 0], clips[:, -1]):
        covered[start: stop + 1] = True
    assert covered.all() == (10 * 29 >= length)  # every frame is in some view when the views can cover it


@pytest.mark.parametrize("length", [8, 9, 30, 333])
def test_segments_give_one_frame_per_segment(length):
    edges = np.arange(9) * length / 8  # segment k holds the frames whose index lies in [edge k, edge k+1)
    rng = np.random.default_rng(0)
    for indices in (sample_clips(length, SEGMENTS, rng)[0], *sample_clips(length, SEGMENTS, clips=3)):
        assert np.all((indices >= np.floor(edges[:-1])) & (indices < edges[1:]))


def test_single_test_view_of_segments_is_each_centre():
    assert sample_clips(80, SEGMENTS)[0].tolist() == [5, 15, 25, 35, 45, 55, 65, 75]


def test_target_fps_keeps_the_time_span():
    cfg = SamplingConfig(mode="dense", num_frames=4, stride=2, target_fps=10)
    clip_30fps = sample_clips(300, cfg, fps=30)[0]
    clip_10fps = sample_clips(100, cfg, fps=10)[0]
    assert np.all(np.diff(clip_30fps) == 6) and np.all(np.diff(clip_10fps) == 2)
    assert clip_30fps[0] // 3 == pytest.approx(clip_10fps[0], abs=1)


@pytest.mark.parametrize("rule, expected", [("loop", [0, 3, 6, 2, 5, 1, 4, 0]),
                                            ("repeat_last", [0, 3, 6, 6, 6, 6, 6, 6]),
                                            ("stretch", [0, 1, 2, 3, 3, 4, 5, 6])])
def test_short_video_rules(rule, expected):
    cfg = SamplingConfig(mode="dense", num_frames=8, stride=3, short_video=rule)
    assert sample_clips(7, cfg, np.random.default_rng(0))[0].tolist() == expected


@pytest.mark.parametrize("key, value", [("mode", "random"), ("short_video", "pad"), ("stride", 0),
                                        ("num_frames", 0), ("target_fps", -1.0)])
def test_bad_sampling_values_name_the_key(key, value):
    cfg = SamplingConfig(**{key: value})
    with pytest.raises(UserError, match=f"data.sampling.{key}"):
        sample_clips(100, cfg)
