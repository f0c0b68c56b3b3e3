"""The README stays a front page and every page it points to exists: it is under 10 KB, it
links every page of docs/, and every relative link in the README and in docs/ reaches a file
(and, with a #fragment, a heading of that file, by GitHub's anchor rule)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def links(path: Path) -> list[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)   # not in code
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]  # relative only


def anchors(path: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#{1,6} (.*)$", text, flags=re.M)}


def test_the_readme_is_a_front_page():
    assert len(README.read_bytes()) < 10_000


def test_the_readme_links_every_docs_page():
    linked = {(README.parent / t.split("#")[0]).resolve() for t in links(README)}
    missing = [p.name for p in PAGES if p.resolve() not in linked]
    assert not missing, f"README.md does not link {missing}"


def test_the_link_checker_sees_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[a](other.md) [b](#title) [c](https://example.org)\n"
                    "```\n[not a link](inside-code.md)\n```\n")
    assert links(page) == ["other.md", "#title"] and anchors(page) == {"title"}


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: p.name)
def test_every_relative_link_reaches_its_target(page):
    broken = []
    for target in links(page):
        file, _, fragment = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            broken.append(target)
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            broken.append(target)
    assert not broken, f"{page.name}: links that reach nothing: {broken}"
