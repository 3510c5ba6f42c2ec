"""The README is a user's first page (short, the two commands and a picture on the first screen), and every
relative link in the README and docs/ leads to a file of the repository."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted([README, *(ROOT / "docs").glob("*.md")])
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def links(path: Path) -> list[str]:
    text = INLINE_CODE.sub("", FENCE.sub("", path.read_text(encoding="utf-8")))
    return LINK.findall(text)


def test_readme_is_at_most_150_lines():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 150


def test_first_screen_has_the_two_commands_and_a_picture():
    first = "\n".join(README.read_text(encoding="utf-8").splitlines()[:40])
    assert "make demo" in first and "make test" in first
    assert re.search(r"!\[[^\]]*\]\([^)]+\.(png|gif|jpg|svg)\)", first), "no image in the first 40 lines"


def test_link_parser_finds_links_and_images_but_not_code(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text(
        "[a](b.md) ![p](img/c.png) [`d`](e.md#part) [w](https://x.org)\n`[no](f.md)`\n```\n[no](g.md)\n```\n"
    )
    assert links(doc) == ["b.md", "img/c.png", "e.md#part", "https://x.org"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc):
    missing = []
    for target in links(doc):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue  # http(s), mailto: not checked here; an anchor in the same document
        path = (doc.parent / target.split("#", 1)[0]).resolve()
        if not path.exists():
            missing.append(target)
    assert not missing, f"{doc.relative_to(ROOT)}: links to missing files: {missing}"


def test_docs_are_linked_from_the_readme():
    linked = {(ROOT / t.split("#", 1)[0]).resolve() for t in links(README)}
    assert {p.resolve() for p in DOCS if p != README} <= linked
