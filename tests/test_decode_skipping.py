"""The PyAV reader decodes less (unwanted non-reference frames skipped) and still returns the asked frames."""
import numpy as np
import pytest

from tests.video_helpers import barcode_frames, read_barcodes
from video.decode import open_video
from video.encode import write_video

FRAMES = 120


@pytest.fixture(scope="module")
def b_frame_video(tmp_path_factory):
    """Barcoded frames over a moving pattern, which x264 codes with non-reference B-frames."""
    x = np.arange(96)[None, None, :]
    motion = ((np.sin((x + 2 * np.arange(FRAMES)[:, None, None]) / 6.0) * 0.5 + 0.5) * 255).astype(np.uint8)
    motion = np.broadcast_to(motion[..., None], (FRAMES, 32, 96, 3))
    path = tmp_path_factory.mktemp("videos") / "bframes.mp4"
    write_video(path, np.concatenate([barcode_frames(FRAMES), motion], axis=1), fps=25, keyframe_interval=60)
    return path


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
