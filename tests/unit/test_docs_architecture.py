"""The docs stay true to the tree: every module is named in docs/architecture.md, every path the
docs name exists, every relative link and ``#anchor`` leads somewhere, and the README stays a
short front door whose map names every page.

Anchors follow GitHub's rule for headings: the heading's text (code spans and link texts kept,
their markup dropped), lowercased, every character but letters, digits, spaces, ``-`` and ``_``
dropped, spaces turned into ``-``; a repeated heading gets ``-1``, ``-2``, ...
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from tests.support.project import PACKAGES, ROOT

README = ROOT / "README.md"
DOCS = ROOT / "docs"
ARCHITECTURE = DOCS / "architecture.md"
README_MAX_LINES = 200
MAP_HEADING = "## The docs"

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def prose(text: str) -> str:
    """The text outside fenced code blocks."""
    return FENCE.sub("", text)


def code_spans(text: str) -> set[str]:
    return {span.strip() for span in CODE_SPAN.findall(prose(text))}


def links(text: str) -> list[str]:
    """Every link and image target outside code (fenced blocks and code spans)."""
    return [target for _, target in LINK.findall(CODE_SPAN.sub("", prose(text)))]


def slug(heading: str) -> str:
    text = LINK.sub(lambda m: m.group(1), heading)
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: Counter[str] = Counter()
    found = set()
    for _, heading in HEADING.findall(prose(path.read_text())):
        base = slug(heading)
        found.add(f"{base}-{seen[base]}" if seen[base] else base)
        seen[base] += 1
    return found


def modules() -> list[Path]:
    return sorted(p.relative_to(ROOT) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def test_every_module_is_named_in_the_architecture_page() -> None:
    named = code_spans(ARCHITECTURE.read_text())
    missing = [
        str(module)
        for module in modules()
        if module.as_posix() not in named
        and not (module.name == "__init__.py" and f"{module.parent.as_posix()}/" in named)
    ]
    assert missing == [], (
        "modules docs/architecture.md does not name (add a line for each, as `path/to/module.py`,"
        f" or `package/` for an __init__.py): {missing}"
    )


def test_every_path_the_docs_name_exists() -> None:
    stale = []
    for page in pages():
        for span in code_spans(page.read_text()):
            python_file = span.endswith(".py") and "/" in span
            package = page == ARCHITECTURE and span.endswith("/") and span.split("/")[0] in PACKAGES
            if (python_file or package) and not (ROOT / span).exists():
                stale.append(f"{page.relative_to(ROOT)}: `{span}`")
    assert stale == [], "paths named in the docs that do not exist:\n" + "\n".join(stale)


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_exists(page: Path) -> None:
    broken = []
    for target in links(page.read_text()):
        if SCHEME.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with the anchor #{anchor} in {dest.name}")
    assert broken == [], f"broken links in {page.relative_to(ROOT)}:\n" + "\n".join(broken)


def test_the_slug_rule_matches_githubs() -> None:
    assert slug("Price ranges: `?coverage=`") == "price-ranges-coverage"
    assert slug("Drift: `python -m app.drift`") == "drift-python--m-appdrift"
    assert (
        slug("On a Ray cluster: `--engine ray INPUT_DIR`")
        == "on-a-ray-cluster---engine-ray-input_dir"
    )
    assert slug("See [the API](api.md) (HTTP)") == "see-the-api-http"


def test_the_readme_is_a_short_front_door() -> None:
    lines = README.read_text().count("\n")
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines; keep it under {README_MAX_LINES} and move detail to docs/"
    )


def test_the_readmes_map_names_every_page() -> None:
    text = prose(README.read_text())
    assert MAP_HEADING in text, f"README.md has no {MAP_HEADING!r} section (the map of docs/)"
    section = text.split(MAP_HEADING, 1)[1].split("\n## ", 1)[0]
    mapped = {(ROOT / target.partition("#")[0]).resolve() for target in links(section)}
    unmapped = [p.name for p in sorted(DOCS.glob("*.md")) if p.resolve() not in mapped]
    assert unmapped == [], f"pages missing from the README's map ({MAP_HEADING}): {unmapped}"
