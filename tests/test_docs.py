"""The front door stays a front door: README.md is short, shows every command, its links and the docs'
links resolve, and the docs speak to users (no paths to files a user lacks, no word of how the
repository is worked on)."""
import re

import pytest

import run
from tests.conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FORBIDDEN = re.compile(r"\.\./shared|DESIGN\.md|lent GPU|device run|carry =|this (2-core )?machine|load average")


def test_readme_is_a_front_door_that_shows_every_command():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 220
    missing = [" ".join(words) for words in run.COMMANDS if f"run.py {' '.join(words)}" not in readme]
    assert missing == []
    assert "make demo" in readme and "make test" in readme


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_resolve(page):
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text())
    missing = [t for t in targets if not t.startswith(("http://", "https://")) and not (page.parent / t).exists()]
    assert missing == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_docs_speak_to_users(page):
    hits = [line for line in page.read_text().splitlines() if FORBIDDEN.search(line)]
    assert hits == []
