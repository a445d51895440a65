"""The docs pages as files: readable text whose links lead somewhere."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([*ROOT.glob("README*.md"), *(ROOT / "docs").rglob("*.md")])
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")  # markdown [text](target) and ![alt](target)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_page_holds_no_control_characters(page: Path) -> None:
    """A Python string that wrote "\\approx" or "\\big" unescaped leaves a BEL or a backspace in the formula."""
    text = page.read_text(encoding="utf-8")
    bad = [(n, repr(ch)) for n, line in enumerate(text.splitlines(), 1) for ch in line if ord(ch) < 32 and ch != "\t"]
    assert not bad, f"{page.name}: control characters at (line, char) {bad[:5]}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_to_files_that_exist(page: Path) -> None:
    targets = [t for t in LINK.findall(page.read_text(encoding="utf-8")) if "://" not in t and not t.startswith("mailto:")]
    missing = [t for t in targets if not (page.parent / t).exists()]
    assert not missing, f"{page.name}: links to missing files {missing}"
