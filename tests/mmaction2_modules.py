"""mmaction2 1.2.0's own backbones and heads, built from its published configs, for equivalence tests
(models/converters/reference.py builds them, as `convert --verify` does). Absent mmaction2 (a test-only
dependency), `require()` skips with the reason."""
from __future__ import annotations

import pytest

from errors import UserError
from models.converters import reference
from models.converters.reference import Mmaction2Recognizer, import_mmaction2

__all__ = ["Mmaction2Recognizer", "published_config", "require"]


def require():
    """The mmaction package, or a pytest skip naming what is missing."""
    try:
        return import_mmaction2()
    except UserError as exc:
        pytest.skip(f"{exc}; `make test` installs requirements-test.txt")


def published_config(relative: str):
    """An mmaction2 config shipped in the wheel, e.g. 'recognition/i3d/<name>.py', as an mmengine Config."""
    require()
    return reference.published_config(relative)
