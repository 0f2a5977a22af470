"""The README and docs/ as a reader meets them: links that resolve, a README short enough to be a
front page, no commit hashes in it, and no pointer to a file outside the repository."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250

# [text](target) and ![alt](target); the target ends at whitespace or the closing parenthesis.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")
# A hex word of 7 to 40 characters with both a digit and a letter: how git abbreviates a commit.
COMMIT = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b")
# Files that a clone of the repository does not have.
OUTSIDE = re.compile(r"MAGISTRAL\.md|ENVIRONMENT\.md|DESIGN\.md|\.\./shared")


def prose(text: str) -> str:
    """``text`` without its fenced code blocks (a link inside one is shown, not followed)."""
    kept, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            kept.append(line)
    return "\n".join(kept)


def links(page: Path) -> list[str]:
    """Every relative link target of ``page`` (web and mail addresses left out)."""
    targets = LINK.findall(prose(page.read_text(encoding="utf-8")))
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.IGNORECASE)]


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = unicodedata.normalize("NFKC", heading).strip().lower()
    text = re.sub(r"[`*_]", "", text)
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of ``page``'s headings, repeated ones numbered as GitHub does."""
    seen: dict[str, int] = {}
    found = set()
    for line in prose(page.read_text(encoding="utf-8")).splitlines():
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        base = slug(heading.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """The links of ``page`` that name no file under ``root``, or no heading of a page."""
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists() or root not in (resolved, *resolved.parents):
            broken.append(f"{target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target} (no heading #{anchor} in {resolved.relative_to(root)})")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert broken_links(page) == [], f"{page.relative_to(ROOT)} has broken links"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_page_points_outside_the_repository(page):
    text = page.read_text(encoding="utf-8")
    assert OUTSIDE.findall(text) == [], f"{page.relative_to(ROOT)} cites files a clone lacks"


def test_readme_is_a_front_page():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) < README_MAX_LINES, f"README.md has {len(lines)} lines"


def test_readme_names_no_commit():
    hashes = COMMIT.findall(README.read_text(encoding="utf-8"))
    assert hashes == [], f"README.md names commits: {hashes}"


def test_the_checks_catch_what_they_look_for(tmp_path):
    """The link, anchor and hash checks fire on a page built to fail them."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "real.md").write_text("# A heading, with `code`\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](docs/real.md#a-heading-with-code) [gone](docs/missing.md) "
        "[bad anchor](docs/real.md#nowhere) [web](https://example.org/x.md)\n"
        "```\n[in code](docs/also-missing.md)\n```\ncode at 5c9c56f, not at 2026 or 1234567\n",
        encoding="utf-8",
    )
    assert links(page) == [
        "docs/real.md#a-heading-with-code",
        "docs/missing.md",
        "docs/real.md#nowhere",
    ]
    assert broken_links(page, root=tmp_path) == [
        "docs/missing.md (no such file)",
        "docs/real.md#nowhere (no heading #nowhere in docs/real.md)",
    ]
    assert COMMIT.findall(page.read_text(encoding="utf-8")) == ["5c9c56f"]
