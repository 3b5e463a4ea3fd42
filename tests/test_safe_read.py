"""Decoder faults on real files and real processes: a decoder that really spins holding the GIL is
abandoned after data.decode_timeout and the loader goes on; a crashing decoder and a frame-size change
mid-stream become counted skips; truncated videos are used when long enough and skipped when too short."""
import ctypes
import io
import re

import av
import numpy as np
import pytest
import torch

from configs.compose import CONFIG_DIR, load_config
from tests.video_helpers import faststart_copy, write_barcode_video
from video.dataset import VideoDataset
from video.decode import BACKENDS, VideoDecodeError
from video.decode_base import register_backend
from video.decode_pyav import PyAVReader
from video.loader import build_loader
from video.safe_read import read_clips, read_frames


class FaultyReader(PyAVReader):
    """PyAV, except on files named *hang*: a regular expression with catastrophic backtracking, a loop in
    C that holds the GIL (as decord does on some files); and on *crash*: a read of address 0 (SIGSEGV)."""

    def __init__(self, path, num_threads=1, short_side=None, **options):
        if "hang" in path:
            re.match(r"(a+)+$", "a" * 64 + "b")  # 2^64 steps
        if "crash" in path:
            ctypes.string_at(0)
        super().__init__(path, num_threads, short_side, **options)


@pytest.fixture
def faulty_backend():
    """`data.backend=test_faulty` for one test (forked loader workers inherit the registry)."""
    register_backend("test_faulty")(FaultyReader)
    yield "test_faulty"
    del BACKENDS["test_faulty"]


def data_config(*overrides):
    return load_config(str(CONFIG_DIR / "experiments" / "demo.yaml"), list(overrides)).data


def dataset_folder(root, names):
    """A dataset folder of 40-frame barcode videos (one class) under the given file names."""
    root.mkdir()
    (root / "labels.txt").write_text("a\n")
    for name in names:
        write_barcode_video(root / name, 40)
    (root / "train.csv").write_text("path,label\n" + "".join(f"{name},a\n" for name in names))
    return root


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_spinning_decoder_times_out_and_the_worker_goes_on(tmp_path, faulty_backend):
    root = dataset_folder(tmp_path / "data", [f"clip{i}.mp4" for i in range(5)] + ["hang.mp4", "crash.mp4"])
    cfg = data_config("data.backend=test_faulty", "data.decode_timeout=2", "data.batch_size=7", "data.num_workers=1")
    dataset = VideoDataset(root, "train", cfg, train=True)
    batches = list(build_loader(dataset, cfg, train=True))
    assert len(batches) == 1 and batches[0]["clip"].shape[0] == 7  # every item delivered
    assert set(batches[0]["failed"]) == {f"{root / 'hang.mp4'}: timed out after 2 s",
                                         f"{root / 'crash.mp4'}: the decoder crashed (SIGSEGV)"}
    assert set(batches[0]["index"].tolist()) <= set(range(5))


def _transport_stream(width, height, value):
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for _ in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), value, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def test_a_frame_size_change_mid_stream_is_a_decode_error(tmp_path):
    """Two H.264 segments of different sizes in one transport stream: PyAV's frames change shape."""
    path = tmp_path / "resized.ts"
    path.write_bytes(_transport_stream(32, 32, 60) + _transport_stream(48, 64, 200))
    cfg = data_config("data.backend=pyav", "data.sampling.num_frames=20")
    with pytest.raises(VideoDecodeError, match="ValueError: could not broadcast"):
        read_clips(str(path), cfg, None)


@pytest.mark.slow
@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("timeout", [0, 5])
def test_truncated_videos_are_used_when_long_enough_and_skipped_when_too_short(clips_dir, tmp_path, backend, timeout):
    """A real Kinetics clip (280 frames) with its index first: half the file keeps 140 packets, of which
    the last few depend on the cut one (used with the frames that decode, reported truncated); 5% keeps
    too few for a 16-frame clip (skipped, saying so). decord refuses such files: PyAV reads them."""
    whole = faststart_copy(clips_dir / "arm_wrestling_k400.mp4", tmp_path / "whole.mp4").read_bytes()
    cfg = data_config(f"data.backend={backend}", f"data.decode_timeout={timeout}")
    half, tiny = tmp_path / "half.mp4", tmp_path / "tiny.mp4"
    half.write_bytes(whole[: len(whole) // 2])
    tiny.write_bytes(whole[: len(whole) // 20])
    read = read_clips(str(half), cfg, np.random.default_rng(0), short_side=64)
    assert read.frames.shape[:3] == (1, 16, 3) and 120 <= read.num_frames < 140
    assert read.truncated == f"{half}: truncated: the header lists 280 frames but only {read.num_frames} decode"
    with pytest.raises(VideoDecodeError, match="the header lists 280 frames but only [0-9] decode, fewer than the 16"):
        read_clips(str(tiny), cfg, np.random.default_rng(0), short_side=64)


@pytest.mark.slow
def test_a_timed_read_draws_the_same_random_clip_as_an_untimed_one(tmp_path):
    """The child's draws come back: the augmentation after a timed read sees the same generator."""
    path = write_barcode_video(tmp_path / "v.mp4", 60)
    rngs = [np.random.default_rng(7), np.random.default_rng(7)]
    plain = read_clips(str(path), data_config(), rngs[0])
    timed = read_clips(str(path), data_config("data.decode_timeout=5"), rngs[1])
    assert np.array_equal(plain.indices, timed.indices) and bool((plain.frames == timed.frames).all())
    assert rngs[0].random() == rngs[1].random()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_predict_windows_get_the_guards_of_training_reads(clips_dir, tmp_path, faulty_backend):
    """`read_frames` (predict's sliding windows): a spinning decoder times out with training's message,
    a truncated file gives the frames that decode, and a window past them is skipped as too short."""
    root = dataset_folder(tmp_path / "data", ["hang.mp4"])
    windows = np.array([[0, 2, 4, 6], [4, 6, 8, 10]])
    with pytest.raises(VideoDecodeError, match="timed out after 2 s"):
        read_frames(str(root / "hang.mp4"), data_config("data.backend=test_faulty", "data.decode_timeout=2"), windows)
    whole = faststart_copy(clips_dir / "arm_wrestling_k400.mp4", tmp_path / "whole.mp4").read_bytes()
    half = tmp_path / "half.mp4"
    half.write_bytes(whole[: len(whole) // 2])
    cfg = data_config("data.decode_timeout=5")
    read = read_frames(str(half), cfg, windows, short_side=64)
    assert read.frames.shape[:3] == (2, 4, 3) and read.truncated and 120 <= read.num_frames < 140
    assert torch.equal(read.frames[0, 2], read.frames[1, 0])  # frame 4, shared by both windows, decoded once
    with pytest.raises(VideoDecodeError, match="frame 200 asked for, but only 1[23][0-9] frames decode"):
        read_frames(str(half), cfg, np.array([[100, 200]]), short_side=64)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_placeholder_packets_do_not_make_a_video_truncated(clips_dir, backend):
    """An HMDB51 AVI's header counts its 1-byte placeholder chunk (243 for 242 frames): not truncated,
    so it is neither reported nor probed again for its decodable end."""
    cfg = data_config(f"data.backend={backend}", "data.sampling.mode=segments")
    read = read_clips(str(clips_dir / "hmdb51_climb.avi"), cfg, np.random.default_rng(0), short_side=64)
    assert read.truncated is None and read.num_frames == 242
