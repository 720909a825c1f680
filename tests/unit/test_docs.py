"""The configuration examples in the documentation can be copied as they are."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "examples").rglob("*.md")),
]
FENCE = re.compile(r"^\s*```(\S*)\s*$")
# After a value: whitespace, then "#" (or ";", a comment sign of INI files). pytest keeps such a comment in
# the value of an ini key (txscope_url = ...  # the default), and the copied example fails.
INLINE_COMMENT = re.compile(r"\S\s+[#;]")


def config_lines(page: Path) -> list[tuple[int, str]]:
    """The lines of ``page``'s ini and toml code blocks, with their line numbers."""
    found, language = [], None
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        fence = FENCE.match(line)
        if fence:
            language = fence.group(1) if language is None else None
        elif language in ("ini", "toml", "cfg"):
            found.append((number, line))
    return found


def test_the_pages_have_ini_and_toml_examples() -> None:
    assert len([page for page in PAGES if config_lines(page)]) >= 5


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_no_ini_or_toml_example_has_a_comment_after_a_value(page: Path) -> None:
    bad = [
        f"{page.relative_to(ROOT)}:{number}: {line.strip()}"
        for number, line in config_lines(page)
        if not line.lstrip().startswith(("#", ";")) and INLINE_COMMENT.search(line)
    ]
    assert bad == [], "put the comment on a line of its own:\n" + "\n".join(bad)
