"""The decord backend probes each file once per process; a rewritten file is probed again."""
import numpy as np

from tests.video_helpers import read_barcodes, write_barcode_video
from video import decode_decord
from video.decode import open_video
from video.encode import write_video


def test_probe_is_reused_and_renewed_when_the_file_changes(tmp_path):
    path = write_barcode_video(tmp_path / "clip.mp4", 30)  # 32x96 frames
    decode_decord._cached_probe.cache_clear()
    for _ in range(2):
        with open_video(path, "decord", short_side=16) as reader:
            assert (reader.height, read_barcodes(reader.get_frames([29]))) == (16, [29])
    assert decode_decord._cached_probe.cache_info().hits == 1
    write_video(path, np.zeros((5, 64, 64, 3), np.uint8), fps=25)  # another size, same path
    with open_video(path, "decord", short_side=16) as reader:
        assert (reader.num_frames, reader.height, reader.width) == (5, 16, 16)
