"""The decord backend probes each file once per process (a rewritten file is probed again) and reads
some unscaled files with the PyAV reader, returning decord's own frames."""
import numpy as np
import pytest

from tests.conftest import real_clips
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


@pytest.mark.parametrize("name", [path.name for path in real_clips()
                                  if path.suffix == ".mp4" or path.name.startswith("kth_")])
def test_files_read_by_pyav_return_decords_own_frames(clips_dir, name):
    """Unscaled, the decord backend reads these B-frame streams (mp4) and AVI files (KTH) with the PyAV
    reader and returns exactly what decord itself returns; scaled, decord reads them."""
    import decord

    path = clips_dir / name
    with open_video(path, "decord", short_side=256) as reader:
        assert reader.via_pyav
        indices = np.linspace(0, reader.num_frames - 1, 8).round().astype(np.int64)
        ours = reader.get_frames(indices)
    theirs = decord.VideoReader(str(path), num_threads=1).get_batch(indices.tolist()).asnumpy()
    assert np.array_equal(ours, theirs)
    with open_video(path, "decord", short_side=64) as reader:
        assert not reader.via_pyav
