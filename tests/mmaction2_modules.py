"""mmaction2's own modules for equivalence tests (bench/mmaction2_modules.py), skipped where it is absent."""
from __future__ import annotations

from typing import Any, Dict

import pytest

from bench import mmaction2_modules


def require():
    """The mmaction package, or a pytest skip naming what is missing."""
    reason = mmaction2_modules.missing()
    if reason:
        pytest.skip(f"mmaction2 is not installed ({reason}); `make test` installs requirements-test.txt")
    return mmaction2_modules.load_mmaction2()


def published_config(relative: str):
    """An mmaction2 config shipped in the wheel, e.g. 'recognition/i3d/<name>.py', as an mmengine Config."""
    require()
    return mmaction2_modules.published_config(relative)


def build(section: Dict[str, Any]):
    """mmaction2's module for one `backbone=` or `cls_head=` dict of a config (weights left as initialised)."""
    require()
    return mmaction2_modules.build(section)
