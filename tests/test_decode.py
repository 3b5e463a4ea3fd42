"""Decoding on real files: shared clips with both backends, frame-exact seeking, and bad inputs."""
import csv

import av
import numpy as np
import pytest

from errors import UserError
from tests.conftest import real_clips
from tests.video_helpers import barcode_frames, read_barcodes, write_barcode_video
from video.decode import BACKENDS, VideoDecodeError, open_video
from video.encode import write_video

BACKEND_NAMES = sorted(BACKENDS)
# Measured: decord's and PyAV's frames are bit-identical on every shared clip (mean abs diff 0.0).
# The bound leaves room for a different FFmpeg build's colour conversion, not for a wrong frame
# (neighbouring frames of these clips differ by 1 to 30 grey levels on average).
CROSS_BACKEND_MEAN_ABS_DIFF = 0.5


def _manifest(clips_dir) -> dict:
    with open(clips_dir / "MANIFEST.tsv") as file:
        return {row["file"]: row for row in csv.DictReader(file, delimiter="\t")}


def _sequential_frames(path, wanted) -> dict:
    """The reference: the i-th frame of a plain decode from the start, for each i in `wanted`."""
    frames, wanted = {}, set(wanted)
    with av.open(str(path)) as container:
        for ordinal, frame in enumerate(container.decode(video=0)):
            if ordinal in wanted:
                frames[ordinal] = frame.to_ndarray(format="rgb24")
    return frames


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", [p.name for p in real_clips()])
def test_shared_clip_decodes_exactly_with_both_backends(clips_dir, name):
    path = clips_dir / name
    expected_frames = int(_manifest(clips_dir)[name]["decoded_frames"])
    rng = np.random.default_rng(0)
    indices = np.concatenate([rng.integers(0, expected_frames, 5), [expected_frames - 1, 0]])
    reference = _sequential_frames(path, indices)
    decoded = {}
    for backend in BACKEND_NAMES:
        with open_video(path, backend) as reader:
            # header counts are wrong in the HMDB51 files and absent in the mkv: the count must not be
            assert reader.num_frames == expected_frames, backend
            assert reader.fps == pytest.approx(float(_manifest(clips_dir)[name]["fps"]), rel=1e-3)
            decoded[backend] = reader.get_frames(indices)
            assert decoded[backend].shape == (len(indices), reader.height, reader.width, 3)
            assert decoded[backend].dtype == np.uint8
        for slot, index in enumerate(indices):
            assert np.array_equal(decoded[backend][slot], reference[index]), (backend, index)
    diff = np.abs(decoded["pyav"].astype(np.int16) - decoded["decord"]).mean(axis=(1, 2, 3))
    assert diff.max() <= CROSS_BACKEND_MEAN_ABS_DIFF


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    """600 barcoded frames, a keyframe every 100: late frames are far from the start."""
    return write_barcode_video(tmp_path_factory.mktemp("videos") / "long.mp4", 600, keyframe_interval=100)


@pytest.mark.parametrize("backend", BACKEND_NAMES)
@pytest.mark.parametrize("indices", [
    [0, 1, 2, 3], [599], [598, 597, 3, 2], [450, 10, 590, 10, 101, 99, 100], list(range(599, 0, -37)),
])
def test_seeking_returns_the_requested_frame(long_video, backend, indices):
    with open_video(long_video, backend) as reader:
        assert reader.num_frames == 600
        assert read_barcodes(reader.get_frames(indices)) == indices


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_reader_can_be_reused_across_calls(long_video, backend):
    with open_video(long_video, backend) as reader:
        for indices in ([500, 520], [10, 12], [12, 599], [5]):
            assert read_barcodes(reader.get_frames(indices)) == indices


def test_pyav_seeks_to_the_nearest_keyframe_not_the_start(long_video):
    with open_video(long_video, "pyav") as reader:
        assert read_barcodes(reader.get_frames([590])) == [590]
        # from keyframe 500 to 590; a few more may leave the decoder's reorder buffer
        assert 91 <= reader.frames_decoded <= 100
        reader.get_frames([595, 598])  # forward within the same GOP: no new seek
        assert reader.frames_decoded <= 110


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_mkv_without_frame_count_in_header(tmp_path, backend):
    path = write_barcode_video(tmp_path / "clip.mkv", 45, keyframe_interval=10)
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0  # matroska stores no count
    with open_video(path, backend) as reader:
        assert reader.num_frames == 45 and reader.fps == pytest.approx(25)
        assert read_barcodes(reader.get_frames([44, 0, 23])) == [44, 0, 23]


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_one_frame_video(tmp_path, backend):
    path = tmp_path / "one.mp4"
    write_video(path, np.full((1, 32, 64, 3), 200, np.uint8), fps=25)
    with open_video(path, backend) as reader:
        assert (reader.num_frames, reader.height, reader.width) == (1, 32, 64)
        frames = reader.get_frames([0, 0])
        assert frames.shape == (2, 32, 64, 3) and abs(frames.mean() - 200) < 3


def _write_audio_only(path):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def _bad_input(kind, tmp_path):
    """Create one kind of undecodable input; return its path and a word the error must contain."""
    good = write_barcode_video(tmp_path / "good.mp4", 60)
    path = tmp_path / f"{kind}.mp4"
    if kind == "zero_bytes":
        path.write_bytes(b"")
        return path, "empty"
    if kind == "truncated":  # half a file: frames listed in the header are missing
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
        return path, ""
    if kind == "truncated_index":  # index written at the end (no faststart): lost with the tail
        plain = tmp_path / "plain.mp4"
        write_video(plain, barcode_frames(60), fps=25, faststart=False)
        path.write_bytes(plain.read_bytes()[: plain.stat().st_size // 2])
        return path, ""
    if kind == "random_bytes":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
        return path, ""
    if kind == "text":
        path.write_text("this is a text file, not a video\n" * 20)
        return path, ""
    if kind == "audio_only":
        path = tmp_path / "audio.m4a"
        _write_audio_only(path)
        return path, "video stream"
    if kind == "missing":
        return tmp_path / "nope.mp4", "no such file"
    if kind == "directory":
        path.mkdir()
        return path, "directory"
    raise ValueError(kind)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("backend", BACKEND_NAMES)
@pytest.mark.parametrize("kind", ["zero_bytes", "truncated", "truncated_index", "random_bytes", "text",
                                  "audio_only", "missing", "directory"])
def test_bad_input_raises_a_named_decode_error(tmp_path, backend, kind):
    path, word = _bad_input(kind, tmp_path)
    with pytest.raises(VideoDecodeError) as info:
        with open_video(path, backend) as reader:
            reader.get_frames([reader.num_frames - 1])
    assert isinstance(info.value, UserError)
    assert str(path) in str(info.value) and word in str(info.value)


def test_truncated_mp4_reports_the_missing_frames(tmp_path):
    path, _ = _bad_input("truncated", tmp_path)
    with pytest.raises(VideoDecodeError, match="truncated: the header lists 60 frames"):
        open_video(path, "pyav")


def test_unknown_backend_names_the_config_key(long_video):
    with pytest.raises(UserError, match="data.backend"):
        open_video(long_video, "opencv")


def test_index_outside_the_video_is_a_caller_error(long_video):
    with open_video(long_video) as reader, pytest.raises(IndexError, match="600"):
        reader.get_frames([600])


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_frames_scaled_down_by_the_decoder_keep_their_content(long_video, backend):
    with open_video(long_video, backend, short_side=16) as reader:  # 32x96 frames become 16x48
        frames = reader.get_frames([7, 300])
        assert frames.shape[1:3] == (reader.height, reader.width)
        assert reader.height == 16 and reader.width in (48, 50)  # decord cannot output width 48
        assert read_barcodes(frames) == [7, 300]
    with open_video(long_video, backend, short_side=64) as reader:  # never enlarged
        assert reader.get_frames([0]).shape == (1, 32, 96, 3)


def test_a_closed_pyav_reader_is_freed_without_the_garbage_collector(long_video):
    """No reference cycle keeps a reader (and its decoder's buffers) alive: predict opens one per batch."""
    import gc
    import weakref

    gc.disable()
    try:
        with open_video(long_video, "pyav") as reader:
            reader.get_frames([5, 250])
        freed = weakref.ref(reader)
        del reader
        assert freed() is None
    finally:
        gc.enable()
