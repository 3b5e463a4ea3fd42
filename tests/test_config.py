"""The config system: composition, typed overrides, and one-line errors naming the key or file."""
import subprocess
import sys

import pytest

from configs.compose import load_config
from engine.config import run_dir, save_config
from errors import UserError
from tests.conftest import ROOT


def test_override_is_typed():
    cfg = load_config(None, ["data.batch_size=4", "trainer.amp=bf16"])
    assert cfg.data.batch_size == 4 and cfg.trainer.amp == "bf16"


@pytest.mark.parametrize(
    "override, culprit",
    [("data.batch_size=abc", "data.batch_size"), ("data.no_such_key=1", "no_such_key"),
     ("nonsense", "nonsense")],
)
def test_bad_override_names_the_key(override, culprit):
    with pytest.raises(UserError, match=culprit):
        load_config(None, [override])


def test_defaults_are_composed_in_order(tmp_path):
    (tmp_path / "a.yaml").write_text("data:\n  batch_size: 3\n  num_workers: 1\n")
    (tmp_path / "b.yaml").write_text("defaults: [a.yaml]\ndata:\n  batch_size: 5\n")
    cfg = load_config(str(tmp_path / "b.yaml"), ["data.num_workers=0"])
    assert (cfg.data.batch_size, cfg.data.num_workers) == (5, 0)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(UserError, match="nope.yaml"):
        load_config(str(tmp_path / "nope.yaml"))


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, ["run.name=x", "model.depth=18"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(str(tmp_path / "config.yaml"))
    assert again == cfg and run_dir(cfg).name == "x"


@pytest.mark.slow
def test_cli_error_is_one_line_and_exit_2():
    proc = subprocess.run([sys.executable, "run.py", "profile", "--out", "unused", "model.no_such=1"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error:")
    assert "no_such" in proc.stderr


def test_list_item_override_reaches_the_placement():
    cfg = load_config(None, ["model.attention=[{type: nonlocal, stages: [3]}]", "model.attention.0.subsample=false"])
    assert cfg.model.attention[0]["subsample"] is False


def test_override_past_the_end_of_a_list_is_named():
    with pytest.raises(UserError, match="model.attention.3"):
        load_config(None, ["model.attention.3.mode=gaussian"])
