"""The pages hang together: every page of docs/ is in the site's navigation, README.md
links only to files this repository has (a clone has nothing outside it), and the README
stays a front door: what rooms is, the two commands, an example, links into the docs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import yaml

from tests.docs.blocks import ROOT, blocks

LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def nav_pages(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from nav_pages(item)
    elif isinstance(node, dict):
        for value in node.values():
            yield from nav_pages(value)


def test_every_page_is_in_the_navigation() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    in_nav = set(nav_pages(config["nav"]))
    pages = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert pages - in_nav == set()
    assert in_nav - pages == set()


def test_the_readme_links_stay_in_the_repository() -> None:
    readme = (ROOT / "README.md").read_text()
    targets = [m["target"] for m in LINK.finditer(readme)]
    local = [t.split("#", 1)[0] for t in targets if not re.match(r"[a-z]+:", t)]
    assert local, "expected links into the docs"
    for target in local:
        path = (ROOT / target).resolve()
        assert path.is_relative_to(ROOT), f"{target} is outside the repository"
        assert path.exists(), f"{target} does not exist"


def test_the_readme_is_a_front_door() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    [example] = [b for b in blocks(ROOT / "README.md") if b.lang == "python"]
    assert len(example.code.splitlines()) <= 30
    assert len(readme.splitlines()) <= 70
