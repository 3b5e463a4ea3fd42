"""Imports flow one way: video and models import nothing of ours above them, data_prep only video, the
engine only video and models; analysis everything but the command layer, which sits on top."""
import ast

import pytest

from tests.conftest import ROOT

ALLOWED = {
    "video": {"video", "errors"},
    "models": {"models", "errors"},
    "data_prep": {"data_prep", "video", "errors"},
    "engine": {"engine", "video", "models", "errors"},
    "analysis": {"analysis", "engine", "video", "models", "data_prep", "errors"},
    "bench": {"bench", "analysis", "engine", "video", "models", "data_prep", "errors"},
    "commands": {"commands", "analysis", "bench", "engine", "video", "models", "data_prep", "errors"},
}
OURS = set(ALLOWED) | {"errors", "run"}


def imported_packages(path) -> set:
    """Our top-level packages that a file imports (anywhere in it, function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
        found |= {name.split(".")[0] for name in names} & OURS
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_flow_one_way(package):
    wrong = {str(path.relative_to(ROOT)): sorted(imported_packages(path) - ALLOWED[package])
             for path in sorted((ROOT / package).rglob("*.py"))}
    assert {path: names for path, names in wrong.items() if names} == {}


def test_the_configs_folder_is_named_in_one_place():
    mentions = [str(p.relative_to(ROOT)) for folder in ALLOWED for p in (ROOT / folder).rglob("*.py")
                if '/ "configs"' in p.read_text()]
    assert mentions == ["commands/config.py"]
