"""Imports flow one way. At the bottom, video and models import nothing of ours but themselves; data_prep
reads video; the engine trains and evaluates with video and models. Above them, the rooms a user asks for:
inference (predict, Grad-CAM), analysis (relations, profiling), bench. The config composition sits over
every package's schema, and the command layer (thin glue, no command importing another) on top."""
import ast

import pytest

from tests.conftest import ROOT

BASE = {"errors"}
ALLOWED = {
    "video": {"video"},
    "models": {"models"},
    "data_prep": {"data_prep", "video"},
    "engine": {"engine", "video", "models"},
    "inference": {"inference", "engine", "video", "models"},
    "analysis": {"analysis", "inference", "engine", "video", "models"},
    "bench": {"bench", "analysis", "inference", "engine", "video", "models", "data_prep"},
    "configs": {"configs", "analysis", "inference", "engine", "video", "models", "data_prep"},
    "zoo.py": {"configs", "engine", "models"},
    "commands": {"commands", "configs", "bench", "analysis", "inference", "engine", "video", "models", "data_prep"},
}
OURS = {name.removesuffix(".py") for name in ALLOWED} | BASE | {"run"}


def imported(path) -> set:
    """The dotted names of our modules that a file imports (anywhere in it, function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
        found |= {name for name in names if name.split(".")[0] in OURS}
    return found


def files_of(place: str):
    path = ROOT / place
    return [path] if path.is_file() else sorted(path.rglob("*.py"))


@pytest.mark.parametrize("place", sorted(ALLOWED))
def test_imports_flow_one_way(place):
    allowed = {name.removesuffix(".py") for name in ALLOWED[place]} | BASE
    wrong = {str(path.relative_to(ROOT)): sorted(n for n in imported(path) if n.split(".")[0] not in allowed)
             for path in files_of(place)}
    assert {path: names for path, names in wrong.items() if names} == {}


def test_no_command_imports_another():
    """What two commands share lives below the command layer."""
    wrong = {str(path.relative_to(ROOT)): sorted(n for n in imported(path) if n.startswith("commands."))
             for path in files_of("commands")}
    assert {path: names for path, names in wrong.items() if names} == {}


def test_every_package_is_a_room_of_the_layering():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages <= {name for name in ALLOWED if not name.endswith(".py")}


def test_the_configs_folder_is_found_in_one_place():
    mentions = [str(p.relative_to(ROOT)) for place in ALLOWED for p in files_of(place) if '/ "configs"' in p.read_text()]
    assert mentions == []
    assert "CONFIG_DIR = Path(__file__).resolve().parent" in (ROOT / "configs" / "compose.py").read_text()
