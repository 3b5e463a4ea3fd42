"""The PyAV reader decodes less (unwanted non-reference frames skipped) and still returns the asked frames,
also in AVI files with B-frames once their display order is learned."""
import av
import numpy as np
import pytest

from tests.video_helpers import barcode_frames, read_barcodes
from video import display_order
from video.decode import open_video
from video.encode import write_video

FRAMES = 120


def _b_frame_video(folder, suffix: str):
    """Barcoded frames over a moving pattern, which x264 codes with non-reference B-frames."""
    x = np.arange(96)[None, None, :]
    motion = ((np.sin((x + 2 * np.arange(FRAMES)[:, None, None]) / 6.0) * 0.5 + 0.5) * 255).astype(np.uint8)
    motion = np.broadcast_to(motion[..., None], (FRAMES, 32, 96, 3))
    path = folder / f"bframes{suffix}"
    write_video(path, np.concatenate([barcode_frames(FRAMES), motion], axis=1), fps=25, keyframe_interval=60)
    return path


@pytest.fixture(scope="module")
def b_frame_video(tmp_path_factory):
    return _b_frame_video(tmp_path_factory.mktemp("videos"), ".mp4")


def _barcodes(frames):
    return read_barcodes(frames[:, :32])


def test_unwanted_non_reference_frames_are_not_decoded(b_frame_video):
    with open_video(b_frame_video, "pyav") as reader:
        assert _barcodes(reader.get_frames([59])) == [59]
        assert reader.frames_decoded < 50  # a decode of every frame from keyframe 0 gives 60


@pytest.mark.parametrize("calls", [
    [[3, 17, 31, 45, 59, 73, 87, 101]],  # TSN-like, one call
    [[10], [11], [12], [13], [14]],  # one frame per call: frames read ahead are decoded, not skipped
    [[40, 41], [39], [100, 119], [0, 60, 61]],  # backwards and across the keyframe
])
def test_skipping_returns_the_asked_frames(b_frame_video, calls):
    with open_video(b_frame_video, "pyav") as reader:
        for indices in calls:
            assert _barcodes(reader.get_frames(indices)) == indices


@pytest.fixture(scope="module")
def avi_b_frame_video(tmp_path_factory):
    """The same in AVI, whose timestamps FFmpeg can only guess."""
    return _b_frame_video(tmp_path_factory.mktemp("videos"), ".avi")


def test_avi_with_b_frames_learns_its_display_order_then_skips(avi_b_frame_video):
    with open_video(avi_b_frame_video, "pyav") as reader:
        assert _barcodes(reader.get_frames([59])) == [59]
        counted = reader.frames_decoded  # every frame decoded: the order is not known yet
        assert counted >= 60
        assert _barcodes(reader.get_frames([7, 33, 61, 95])) == [7, 33, 61, 95]  # ends in the last quarter: learns
    with open_video(avi_b_frame_video, "pyav") as reader:  # a new reader of the same file knows the order
        assert _barcodes(reader.get_frames([59])) == [59]
        assert reader.frames_decoded < counted
        for indices in ([40, 41], [39], [100, 119], [0, 60, 61], [3, 17, 31, 45, 59, 73, 87, 101]):
            assert _barcodes(reader.get_frames(indices)) == indices


@pytest.mark.parametrize("name", ["apply_eye_makeup_ucf101.avi", "hmdb51_punch.avi"])
def test_learned_display_order_gives_the_frames_of_a_plain_decode(clips_dir, name):
    """Real MPEG-4 part 2 AVI files with B-frames, with not-coded pictures (UCF101) and packed B-frames
    (HMDB51): once the order is learned, skipping reads return a plain decode's frames."""
    path = clips_dir / name
    with open_video(path, "pyav") as reader:
        count = reader.num_frames
        reader.get_frames([0, count - 1])  # decodes every frame: learns the order
    rng = np.random.default_rng(3)
    calls = [np.sort(rng.choice(count, 8, replace=False)) for _ in range(3)] + [np.arange(20, 40, 2)]
    wanted = set(np.concatenate(calls).tolist())
    with av.open(str(path)) as container:
        reference = {i: f.to_ndarray(format="rgb24") for i, f in enumerate(container.decode(video=0)) if i in wanted}
    decoded = []
    for learned in (True, False):
        if not learned:
            display_order.forget_order(display_order.file_key(str(path)))
        with open_video(path, "pyav") as reader:
            for indices in calls:
                frames = reader.get_frames(indices)
                assert all(np.array_equal(frame, reference[i]) for frame, i in zip(frames, indices.tolist()))
            decoded.append(reader.frames_decoded)
    assert decoded[0] < decoded[1]  # skipped with the learned order, counted without it
