"""README.md and the docs site: a README that fits a screen, links that lead somewhere, the set-up
commands written once, and configuration examples that load."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from amp_braze.config import load_config

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = sorted(DOCS.rglob("*.md"))

FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def prose(text: str) -> str:
    """The text outside code blocks and inline code (a link there is an example, not a link)."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def relative_links(path: Path) -> list[str]:
    targets = LINK.findall(prose(path.read_text()))
    return [t for t in targets if not re.match(r"^([a-z][a-z0-9+.-]*:|#)", t, re.I)]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, re.S | re.M)


def test_readme_fits_a_screen():
    lines = README.read_text().count("\n")
    assert lines <= 250, f"README.md has {lines} lines; move the detail into docs/"


def test_the_docs_site_has_pages():
    names = {p.relative_to(DOCS).as_posix() for p in PAGES}
    assert {"index.md", "configuration.md", "reference/configuration.md"} <= names
    assert (REPO / "mkdocs.yml").is_file()


@pytest.mark.parametrize("path", [README, *PAGES], ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_points_at_a_file(path):
    missing = [
        target
        for target in relative_links(path)
        if not (path.parent / target.split("#")[0]).exists()
    ]
    assert not missing, f"{path.relative_to(REPO)} links to files that do not exist: {missing}"


def test_the_link_finder_sees_links_and_skips_code():
    text = "[a](x.md) ![b](img/p.png) [c](https://e.org) [d](#here) `[e](no.md)`\n```\n[f](no.md)\n```\n"
    found = [t for t in LINK.findall(prose(text)) if not t.startswith(("https:", "#"))]
    assert found == ["x.md", "img/p.png"]


def test_the_set_up_commands_are_written_once():
    """Getting started shows README's two commands character for character, demo first."""
    readme = blocks(README.read_text(), "bash")
    start = blocks((DOCS / "index.md").read_text(), "bash")
    assert readme[0].strip().endswith("&& amp-braze demo")  # test_readme_demo runs it
    assert start[:2] == readme[:2]


def _examples() -> list:
    """README's YAML, and every whole file the configuration guide shows (marked so)."""
    found = blocks(README.read_text(), "yaml")
    guide = blocks((DOCS / "configuration.md").read_text(), "yaml")
    found += [b for b in guide if b.startswith("# amp_braze.yaml")]
    return [pytest.param(b, id=f"example{i}") for i, b in enumerate(found)]


@pytest.mark.parametrize("example", _examples())
def test_configuration_examples_load(example, tmp_path, monkeypatch):
    # The secrets an example reads from the environment, as a user would export them.
    for var in set(re.findall(r"\$\{([A-Z_]+)\}", example)) - {"AMP_BRAZE_HOME"}:
        monkeypatch.setenv(var, "postgresql://reader:pw@127.0.0.1:5432/crm")
    for sql in set(re.findall(r"[\w/]+\.sql", example)):
        (tmp_path / sql).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / sql).write_text("SELECT * FROM customer_profiles")
    path = tmp_path / "amp_braze.yaml"
    path.write_text(example)
    cfg = load_config(path)
    assert cfg.sources and cfg.syncs
