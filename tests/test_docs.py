"""The documentation holds together: links lead somewhere, systemd snippets are valid.

Covers: every relative link of README.md and docs/*.md names a file that exists and,
with an anchor, a heading of that file (GitHub's anchor rules); every systemd snippet
(```ini blocks, and packaging/orchestrator.service) has no comment after a value,
which systemd would read as part of the value; the README's first screen says what
the product is and how to try it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as dashes."""
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    out = set()
    for line in text.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            title = re.sub(r"[^\w\- ]", "", title)
            out.add(title.replace(" ", "-"))
    return out


def _links(path: Path) -> list[str]:
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)  # code spans are not links
    return [m.group(1) for m in _LINK.finditer(text)]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_somewhere(doc: Path) -> None:
    broken = []
    for link in _links(doc):
        if re.match(r"^[a-z]+:", link):  # http:, https:, mailto:
            continue
        target, _, anchor = link.partition("#")
        path = (doc.parent / target).resolve() if target else doc
        if not path.exists():
            broken.append(f"{link}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(f"{link}: no such heading in {path.name}")
    assert broken == []


def _unit_lines() -> list[tuple[str, str]]:
    snippets = [
        (str(doc.relative_to(ROOT)), block)
        for doc in DOCS
        for kind, block in _FENCE.findall(doc.read_text(encoding="utf-8"))
        if kind == "ini"
    ]
    unit = ROOT / "packaging" / "orchestrator.service"
    snippets.append((str(unit.relative_to(ROOT)), unit.read_text(encoding="utf-8")))
    return [(where, line) for where, block in snippets for line in block.splitlines()]


def test_systemd_snippets_have_no_comment_after_a_value() -> None:
    assert _unit_lines(), "no systemd snippet found"
    bad = [
        f"{where}: {line}"
        for where, line in _unit_lines()
        if "=" in line and not line.lstrip().startswith(("#", ";")) and re.search(r"\s[#;]", line)
    ]
    assert bad == []


def test_the_first_screen_says_what_it_is_and_how_to_try_it() -> None:
    first = "\n".join(ROOT.joinpath("README.md").read_text(encoding="utf-8").splitlines()[:25])
    assert "Agora Cloud Recording" in first
    assert "make run" in first and "make test" in first
