"""The configuration examples in the documentation can be copied as they are."""

from __future__ import annotations

import ast
import difflib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    # Not the READMEs pytest writes into the examples' .pytest_cache when they run.
    *sorted(path for path in (ROOT / "examples").rglob("*.md") if ".pytest_cache" not in path.parts),
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


# Each how-to page and the example suite it explains. The page shows the example's pytest.ini and
# tests/conftest.py whole, so that what a reader copies is what CI runs.
HOW_TOS = [
    ("fastapi.md", "fastapi_app"),
    ("fastapi-async.md", "fastapi_async"),
    ("flask.md", "flask_app"),
    ("flask-sqlalchemy.md", "flask_sqlalchemy_app"),
    ("raw-dbapi.md", "raw_dbapi_app"),
]
LIVE_SERVERS_PAGE = ROOT / "docs" / "live-servers.md"
LIVE_SERVER_TESTS = ROOT / "examples" / "flask_app" / "tests" / "test_live_server.py"


def code_blocks(page: Path, language: str) -> list[str]:
    """The fenced code blocks of ``language`` on ``page``, each as the text of a file (lines ending in \\n)."""
    blocks, lines, fence_language = [], [], None
    for line in page.read_text(encoding="utf-8").splitlines():
        fence = FENCE.match(line)
        if fence and fence_language is None:
            fence_language, lines = fence.group(1), []
        elif fence:
            if fence_language == language:
                blocks.append("".join(f"{text}\n" for text in lines))
            fence_language = None
        else:
            lines.append(line)
    return blocks


def drift(blocks: list[str], expected: str, name: str) -> str:
    """A diff from the page's block most like ``expected`` to ``expected``, for the failure message."""
    if not blocks:
        return f"the page has no such code block; show {name} whole"
    closest = max(blocks, key=lambda block: difflib.SequenceMatcher(None, block, expected).ratio())
    diff = difflib.unified_diff(
        closest.splitlines(keepends=True), expected.splitlines(keepends=True), "the page", name
    )
    return "the page's block differs from the example's file:\n" + "".join(diff)


INI_PAGES = [*HOW_TOS, ("quickstart.md", "quickstart")]


@pytest.mark.parametrize(("page", "example"), INI_PAGES, ids=[page for page, _ in INI_PAGES])
def test_a_how_to_page_shows_its_examples_pytest_ini_as_it_is(page: str, example: str) -> None:
    ini = (ROOT / "examples" / example / "pytest.ini").read_text(encoding="utf-8")
    blocks = code_blocks(ROOT / "docs" / page, "ini")
    assert ini in blocks, drift(blocks, ini, f"examples/{example}/pytest.ini")


@pytest.mark.parametrize(("page", "example"), HOW_TOS, ids=[page for page, _ in HOW_TOS])
def test_a_how_to_page_shows_its_examples_conftest_as_it_is(page: str, example: str) -> None:
    conftest = (ROOT / "examples" / example / "tests" / "conftest.py").read_text(encoding="utf-8")
    blocks = code_blocks(ROOT / "docs" / page, "python")
    assert conftest in blocks, drift(blocks, conftest, f"examples/{example}/tests/conftest.py")


def test_the_live_servers_page_shows_the_examples_fixture_as_it_is() -> None:
    source = LIVE_SERVER_TESTS.read_text(encoding="utf-8")
    [fixture] = [
        node
        for node in ast.parse(source).body
        if isinstance(node, ast.FunctionDef) and node.name == "live_server"
    ]
    first = min(decorator.lineno for decorator in fixture.decorator_list)
    assert fixture.end_lineno is not None
    code = "".join(source.splitlines(keepends=True)[first - 1 : fixture.end_lineno])
    blocks = code_blocks(LIVE_SERVERS_PAGE, "python")

    assert code in blocks, drift(blocks, code, "the live_server fixture of test_live_server.py")


# Pages whose every Python block is code of the example, as it is (the others also show sketches).
VERBATIM_PAGES = [
    ("fastapi.md", "fastapi_app"),
    ("fastapi-async.md", "fastapi_async"),
    ("flask.md", "flask_app"),
    ("live-servers.md", "flask_app"),
]


@pytest.mark.parametrize(("page", "example"), VERBATIM_PAGES, ids=[page for page, _ in VERBATIM_PAGES])
def test_every_python_block_of_the_page_is_in_a_file_of_the_example(page: str, example: str) -> None:
    sources = [path.read_text(encoding="utf-8") for path in (ROOT / "examples" / example).rglob("*.py")]
    blocks = code_blocks(ROOT / "docs" / page, "python")

    assert blocks
    assert [block for block in blocks if not any(block in source for source in sources)] == []


ASYNC_PAGE = ROOT / "docs" / "async.md"
ASYNC_TESTS = ROOT / "tests" / "contract" / "test_aio_api.py"


def test_every_python_block_of_the_async_page_is_an_example_its_tests_run() -> None:
    source = ASYNC_TESTS.read_text(encoding="utf-8")
    lines = source.splitlines(keepends=True)
    examples = [
        "".join(lines[node.lineno - 1 : node.end_lineno])
        for node in ast.parse(source).body
        if isinstance(node, ast.AsyncFunctionDef) and node.name.startswith("example_")
    ]
    blocks = code_blocks(ASYNC_PAGE, "python")
    assert len(blocks) == len(examples) == 3
    for block in blocks:
        assert block in examples, drift(examples, block, "the examples of tests/contract/test_aio_api.py")
