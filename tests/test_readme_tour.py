"""The README's ten-minute tour, command for command, on a fresh clone with nothing beside it, at tiny
sizes: the commands are read from README.md, so the page cannot drift from what works."""
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

# what each command gets on top of the README's text so that the tour runs in a minute on a CPU
TINY = {
    "demo": ["prep.synthetic.train_per_class=2", "prep.synthetic.val_per_class=1", "trainer.epochs=1",
             "trainer.eval_every=1", "data.num_workers=0", "logger.wandb.mode=disabled", "profile.frames=[4]",
             "profile.sizes=[32]", "profile.implementations=[fused]"],
    "predict": ["test.clips=1", "test.crops=1", "predict.window_stride=2"],
    "export": ["--frames", "8", "--size", "64"],
    "profile": ["profile.device=fake", "profile.frames=[4]", "profile.sizes=[32]", "profile.batch=[2]",
                "profile.implementations=[fused]", "profile.subsample=[true]"],
}


def tour_commands(readme: str) -> list:
    """The shell commands of the first bash block after '## A ten-minute tour' (continuations joined)."""
    section = readme.split("## A ten-minute tour", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    joined = re.sub(r"\\\n\s*", " ", block)
    return [shlex.split(line) for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


R50_VIEW = ["data.sampling.num_frames=8", "data.transforms.test_scale=64", "data.transforms.crop_size=64"]


def as_run(words: list, videos: Path) -> list:
    """`make demo` / `python run.py ...` as this interpreter's command, at tiny sizes (the converted R50
    also sees small clips)."""
    if words == ["make", "demo"]:
        words = ["python", "run.py", "demo", "--out", "runs/demo"]
    assert words[:2] == ["python", "run.py"], words
    words = [str(videos) if w == "YOUR_VIDEOS/" else w for w in words]
    r50 = words[2] == "predict" and "checkpoint=zoo/nl_i3d_r50.pt" in words
    return [sys.executable, *words[1:], *TINY.get(words[2], []), *(R50_VIEW if r50 else [])]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_readme_tour_runs_on_a_fresh_clone(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    commands = tour_commands((clone / "README.md").read_text())
    assert [c[:3] for c in commands][:4] == [["make", "demo"], ["python", "run.py", "predict"],
                                             ["python", "run.py", "visualize"], ["python", "run.py", "profile"]]
    videos = tmp_path / "your_videos"
    for words in commands:
        command = as_run(words, videos)
        if command[2] == "convert":  # the published file, as mmaction2 saves it (its own modules, random weights)
            pytest.importorskip("mmaction")
            from tests.test_convert_mmaction2 import mmaction2_file

            path, _, _ = mmaction2_file(clone, "nl_dot_product")
            assert path.name == command[command.index("--checkpoint") + 1]
        done = subprocess.run(command, cwd=clone, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{shlex.join(words)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        if command[2] == "demo":  # YOUR_VIDEOS/: one of the demo's own videos
            videos.mkdir()
            shutil.copy(clone / "data" / "synthetic_demo" / "val" / "cue_event_opposite_0000.mp4", videos)
    assert (clone / "runs" / "demo" / "summary.json").is_file()
    assert (clone / "runs" / "predict" / "predictions.json").is_file()
    assert (clone / "runs" / "relations" / "relations.png").is_file()
    assert (clone / "runs" / "profile" / "profile.json").is_file()
    assert (clone / "runs" / "k400" / "predictions.json").is_file() and (clone / "zoo" / "nl_i3d_r50.onnx").is_file()
