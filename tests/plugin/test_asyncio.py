"""``async def`` tests under pytest-asyncio (auto and strict modes) whose application uses a SQLAlchemy
``AsyncEngine`` made at import, listed in ``txscope_engines`` and pointed at the test database by
``txscope_env`` (``{sqlalchemy_async_url}``): ``@pytest.mark.txscope`` sandboxes the test, the app's
``AsyncSession`` commits stay inside it, and the next test (and a check from outside) sees nothing.

The sandbox's connection is a sync one (the async driver's twin) and has no event loop of its own: tests on a
function-scoped loop and on a module-scoped loop both work.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pytest_txscope import BackendUnavailableError, DatabaseURL
from pytest_txscope.provision import drop, drop_templates

from ..backends import Backend, sibling_url

pytestmark = pytest.mark.backends("sqlite-file", "postgresql", "mysql", exact=True)

SCHEMA = "CREATE TABLE users (id INTEGER PRIMARY KEY, name VARCHAR(50) NOT NULL);\n"
APP = """
import os

from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

# The application's engine, made at import from its setting: txscope_env points it at the test database.
engine = create_async_engine(os.environ["APP_ASYNC_URL"])
Session = async_sessionmaker(engine, expire_on_commit=False)
"""
TESTS = """
import pytest
from sqlalchemy import text

import app


async def count():
    async with app.Session() as session:
        return (await session.execute(text("SELECT count(*) FROM users"))).scalar()


async def write(user_id):
    async with app.Session() as session:
        await session.execute(text("INSERT INTO users (id, name) VALUES (:id, 'ada')"), {{"id": user_id}})
        await session.commit()
        async with session.begin_nested():
            await session.execute(text("INSERT INTO users (id, name) VALUES (:id, 'nested')"), {{"id": user_id + 1}})
        await session.commit()


{mark}
async def test_1_commits_stay_in_the_sandbox():
    await write(1)
    assert await count() == 2


{mark}
async def test_2_the_next_test_sees_nothing():
    assert await count() == 0
    await write(3)


{module_mark}
async def test_3_on_a_module_scoped_loop():
    assert await count() == 0
    await write(5)
    assert await count() == 2


{module_mark}
async def test_4_on_the_same_module_loop():
    assert await count() == 0


def test_5_nothing_survived(db_session):
    assert db_session.fetchscalar("SELECT count(*) FROM users") == 0
"""


@pytest.fixture(scope="module", autouse=True)
def _drop_databases_at_the_end(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    for name in ("postgresql", "mysql"):
        url = request.config.stash.get(_MADE, {}).get(name)
        if url:
            target = DatabaseURL.parse(url)
            try:
                drop(target, allow=())
                drop_templates(target, allow=())
            except BackendUnavailableError:
                pass


_MADE = pytest.StashKey[dict[str, str]]()


def make_project(
    pytester: pytest.Pytester, backend: Backend, request: pytest.FixtureRequest, mode: str
) -> None:
    pytester.makefile(".sql", schema=SCHEMA)
    pytester.makepyfile(app=APP)
    ini = [
        "[pytest]",
        "addopts = -p no:randomly",
        "txscope_schema = schema.sql",
        "txscope_engines = app:engine",
        "txscope_env =",
        "    APP_ASYNC_URL={sqlalchemy_async_url}",
        f"asyncio_mode = {mode}",
        # pytest-asyncio warns while this is unset; an error under filterwarnings = error.
        "asyncio_default_fixture_loop_scope = function",
        "filterwarnings = error",
    ]
    if backend.family != "sqlite":
        url = sibling_url(backend, "aio").partition("?")[0]
        request.config.stash.setdefault(_MADE, {})[backend.family] = url
        ini += [f"txscope_url = {url}", "txscope_reuse_db = true"]
    pytester.makefile(".ini", pytest="\n".join(ini))


@pytest.mark.parametrize("mode", ["auto", "strict"])
def test_async_tests_marked_txscope_roll_back_the_app_async_session(
    pytester: pytest.Pytester, backend: Backend, request: pytest.FixtureRequest, mode: str
) -> None:
    make_project(pytester, backend, request, mode)
    # Strict mode runs only the coroutines marked asyncio; auto mode runs them all, and takes the marker for
    # the loop's scope.
    asyncio = "@pytest.mark.asyncio\n" if mode == "strict" else ""
    pytester.makepyfile(
        test_app=TESTS.format(
            mark=f"{asyncio}@pytest.mark.txscope",
            module_mark='@pytest.mark.asyncio(loop_scope="module")\n@pytest.mark.txscope',
        )
    )
    # In a subprocess: a fresh interpreter, as a user runs it (pytest-asyncio and the plugin imported there).
    result = pytester.runpytest_subprocess("-v")
    result.stdout.fnmatch_lines(
        [
            f"asyncio: mode=Mode.{mode.upper()}, *",
            "test_app.py::test_1_commits_stay_in_the_sandbox PASSED *",
            "test_app.py::test_2_the_next_test_sees_nothing PASSED *",
            "test_app.py::test_3_on_a_module_scoped_loop PASSED *",
            "test_app.py::test_4_on_the_same_module_loop PASSED *",
            "test_app.py::test_5_nothing_survived PASSED *",
            "*= 5 passed in *",
        ]
    )


@pytest.mark.backends("sqlite-file", exact=True)  # the blocker refuses before any driver is reached
def test_an_async_test_without_a_sandbox_is_blocked_from_the_app_engine(
    pytester: pytest.Pytester, backend: Backend, request: pytest.FixtureRequest
) -> None:
    make_project(pytester, backend, request, "auto")
    with (pytester.path / "pytest.ini").open("a") as ini:
        ini.write("\ntxscope_block = true\n")
    pytester.makepyfile(
        test_app=TESTS.format(mark="@pytest.mark.txscope", module_mark="@pytest.mark.txscope")
        + """

async def test_6_forgot_the_sandbox():
    await write(7)
"""
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(
        [
            "E *pytest_txscope.errors.DatabaseAccessError: test_app.py::test_6_forgot_the_sandbox used "
            "AsyncEngine(sqlite+aiosqlite:///*txscope_test.db), but it asked for no database sandbox and "
            "txscope_block is on; request the db_session or db_sandbox fixture, or mark it @pytest.mark.txscope "
            "(or @pytest.mark.txscope(commit=True) for real commits)"
        ]
    )


ANYIO_CONFTEST = """
import pytest


@pytest.fixture
def anyio_backend():
    return "asyncio"
"""


def test_anyio_tests_marked_txscope_roll_back_the_app_async_session(
    pytester: pytest.Pytester, backend: Backend, request: pytest.FixtureRequest
) -> None:
    # anyio's pytest plugin runs the coroutines marked anyio (pytest-asyncio, installed too, in strict mode
    # leaves them alone); its loop is the test's own, and the sandbox needs none.
    make_project(pytester, backend, request, "strict")
    pytester.makeconftest(ANYIO_CONFTEST)
    marks = "@pytest.mark.anyio\n@pytest.mark.txscope"
    pytester.makepyfile(test_app=TESTS.format(mark=marks, module_mark=marks))
    result = pytester.runpytest_subprocess("-v")
    result.stdout.fnmatch_lines(
        [
            "test_app.py::test_1_commits_stay_in_the_sandbox PASSED *",
            "test_app.py::test_2_the_next_test_sees_nothing PASSED *",
            "test_app.py::test_3_on_a_module_scoped_loop PASSED *",
            "test_app.py::test_4_on_the_same_module_loop PASSED *",
            "test_app.py::test_5_nothing_survived PASSED *",
            "*= 5 passed in *",
        ]
    )
