"""``async def`` tests under the plugin, run as users run them: pytest-asyncio (auto and strict modes) and anyio's
pytest plugin on a generated project, on every backend.

Every generated sandboxed test writes the same row (a unique name) and expects to see it once: a row that
survived an earlier test fails the next one, whatever the order (the runs are shuffled by pytest-randomly). A
last check from an engine of its own finds only the seed.
"""

from __future__ import annotations

import pytest

from ..backends import Backend, sibling_url

pytestmark = pytest.mark.backends("sqlite-file", "postgresql", "mysql")

SCHEMA = """
CREATE TABLE users (id INTEGER PRIMARY KEY, name VARCHAR(50) NOT NULL UNIQUE);
INSERT INTO users (id, name) VALUES (1, 'seed');
"""

APP = '''
"""The application under test: its own engine, its own commits."""
import os
from pytest_txscope import Engine

engine = Engine.from_url(os.environ["APP_DB_URL"]) if os.environ.get("APP_DB_URL") else None


def add_user(uid, name):
    with engine as tx:
        tx.execute("INSERT INTO users (id, name) VALUES (:id, :name)", {"id": uid, "name": name})


def count_users():
    with engine.session() as s:
        return s.fetchscalar("SELECT count(*) FROM users")
'''

SQLITE_APP = """
import pytest

@pytest.fixture(scope="session", autouse=True)
def _app_url(db_engine):
    import app
    from pytest_txscope import Engine
    app.engine = Engine.from_url(db_engine.url)
"""

OUTSIDE_CHECK = """

def test_zz_nothing_survived(db_engine):
    from pytest_txscope import Engine
    outside = Engine.from_url(db_engine.url)
    with outside.session() as s:
        assert s.fetchall("SELECT id, name FROM users ORDER BY id") == [(1, "seed")]
    outside.dispose()
"""

# The same tests in both modes of pytest-asyncio: strict mode needs the marker on each of them ({mark}).
ASYNC_TESTS = """
import asyncio
import pytest
import app

INSERT = "INSERT INTO users (id, name) VALUES (2, 'test')"
COUNT = "SELECT count(*) FROM users"
MODULE_LOOPS = []
FUNCTION_LOOPS = []


@pytest.mark.txscope
{mark}
async def test_marker_sandboxes_the_app():
    app.add_user(2, "test")                                  # the app commits: a savepoint release
    await asyncio.sleep(0)
    assert app.count_users() == 2


{mark}
async def test_db_session(db_session):
    db_session.execute(INSERT)
    assert app.count_users() == 2                            # the app's engine sees the test's rows


{mark}
async def test_db_sandbox(db_sandbox):
    raw = db_sandbox.connection()
    cur = raw.cursor()
    cur.execute(INSERT)
    raw.commit()                                             # a savepoint release too
    cur.execute(COUNT)
    assert cur.fetchone()[0] == 2


@pytest.mark.asyncio(loop_scope="module")
async def test_module_loop_first(db_session):
    MODULE_LOOPS.append(asyncio.get_running_loop())
    assert all(loop is MODULE_LOOPS[0] for loop in MODULE_LOOPS)
    app.add_user(2, "test")
    assert db_session.fetchscalar(COUNT) == 2


@pytest.mark.asyncio(loop_scope="module")
async def test_module_loop_second(db_session):
    MODULE_LOOPS.append(asyncio.get_running_loop())
    assert all(loop is MODULE_LOOPS[0] for loop in MODULE_LOOPS)
    db_session.execute(INSERT)
    assert app.count_users() == 2


@pytest.mark.asyncio(loop_scope="function")
async def test_function_loop(db_session):
    loop = asyncio.get_running_loop()
    assert loop not in MODULE_LOOPS and loop not in FUNCTION_LOOPS
    FUNCTION_LOOPS.append(loop)
    app.add_user(2, "test")
    assert db_session.fetchscalar(COUNT) == 2


{mark}
async def test_async_db_session(async_db_session, db_session):
    from pytest_txscope import current_async_session

    async with async_db_session as tx:                       # a savepoint, released on a clean exit
        assert current_async_session() is async_db_session
        await tx.execute(INSERT)
    try:
        async with async_db_session as tx:
            await tx.execute("INSERT INTO users (id, name) VALUES (3, 'undone')")
            raise RuntimeError("rolled back to its savepoint")
    except RuntimeError:
        pass
    assert await async_db_session.fetchall("SELECT id FROM users ORDER BY id") == [(1,), (2,)]
    assert db_session.fetchscalar(COUNT) == 2 == app.count_users()  # one session, two faces


@pytest.mark.asyncio(loop_scope="module")
async def test_async_db_session_on_the_module_loop(async_db_session):
    MODULE_LOOPS.append(asyncio.get_running_loop())
    assert all(loop is MODULE_LOOPS[0] for loop in MODULE_LOOPS)
    cursor = await async_db_session.execute(INSERT)
    await cursor.close()
    assert await async_db_session.fetchscalar(COUNT) == 2


{mark}
async def test_tasks_share_the_sandbox(db_session):
    async def add():
        app.add_user(2, "test")

    await asyncio.gather(asyncio.create_task(add()))
    assert db_session.fetchscalar(COUNT) == 2
"""

NAMES = [
    "test_marker_sandboxes_the_app",
    "test_db_session",
    "test_db_sandbox",
    "test_module_loop_first",
    "test_module_loop_second",
    "test_function_loop",
    "test_async_db_session",
    "test_async_db_session_on_the_module_loop",
    "test_tasks_share_the_sandbox",
]


def plugin_url(backend: Backend) -> str | None:
    """The generated projects' database: the embedded default for SQLite, a database of its own else."""
    if backend.family == "sqlite":
        return None
    return sibling_url(backend, "aio").partition("?")[0]


def make_project(
    pytester: pytest.Pytester, backend: Backend, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """A project with a schema, an app with its own engine, and pytest-asyncio in ``mode``."""
    url = plugin_url(backend)
    pytester.makefile(".sql", schema=SCHEMA)
    pytester.makepyfile(app=APP)
    ini = [
        "[pytest]",
        "txscope_schema = schema.sql",
        "txscope_engines = app:engine",
        f"asyncio_mode = {mode}",
        "asyncio_default_fixture_loop_scope = function",
    ]
    if url:
        ini.append(f"txscope_url = {url}")
        monkeypatch.setenv("APP_DB_URL", url)
    else:
        monkeypatch.delenv("APP_DB_URL", raising=False)
        pytester.makeconftest(SQLITE_APP)
    pytester.makefile(".ini", pytest="\n".join(ini))


@pytest.mark.parametrize("mode", ["auto", "strict"])
def test_async_tests_are_sandboxed(
    pytester: pytest.Pytester, backend: Backend, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    make_project(pytester, backend, monkeypatch, mode)
    mark = "@pytest.mark.asyncio" if mode == "strict" else ""
    pytester.makepyfile(test_async=ASYNC_TESTS.format(mark=mark) + OUTSIDE_CHECK)
    for seed in ("1", "2"):  # two orders: a surviving row fails whichever test comes after it
        result = pytester.runpytest("-v", "-p", "randomly", f"--randomly-seed={seed}")
        result.stdout.fnmatch_lines_random([f"test_async.py::{name} PASSED*" for name in NAMES])
        result.assert_outcomes(passed=len(NAMES) + 1)


# A ContextVar and the current session, both set in an async fixture, seen by the test (pytest-asyncio#127,
# anyio#544: each was once lost between an async fixture's task and the test's).
CONTEXT_TESTS = """
import contextvars
import pytest
{imports}
from pytest_txscope import current_session

TENANT = contextvars.ContextVar("tenant", default=None)


{fixture}
async def tenant(db_session):
    token = TENANT.set("acme")
    with db_session:                                         # current in this task from here on
        db_session.execute("INSERT INTO users (id, name) VALUES (2, 'test')")
        yield "acme"
    TENANT.reset(token)


{mark}
async def test_fixture_context_reaches_the_test(tenant, db_session):
    assert TENANT.get() == tenant
    assert current_session() is db_session
    assert db_session.fetchscalar("SELECT count(*) FROM users") == 2


{mark}
async def test_and_is_gone_in_the_next(db_session):
    assert TENANT.get() is None
    assert current_session() is None
    db_session.execute("INSERT INTO users (id, name) VALUES (2, 'test')")


{fixture}
async def in_a_block(async_db_session):
    async with async_db_session as tx:                      # current in this task from here on
        await tx.execute("INSERT INTO users (id, name) VALUES (2, 'test')")
        yield tx


{mark}
async def test_async_block_of_a_fixture_is_current(in_a_block, async_db_session):
    from pytest_txscope import current_async_session

    assert current_async_session() is async_db_session
    assert async_db_session.transaction is in_a_block
    assert await async_db_session.fetchscalar("SELECT count(*) FROM users") == 2
"""


@pytest.mark.parametrize("mode", ["auto", "strict"])
def test_async_fixture_context_reaches_the_test(
    pytester: pytest.Pytester, backend: Backend, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    make_project(pytester, backend, monkeypatch, mode)
    strict = mode == "strict"
    pytester.makepyfile(
        test_context=CONTEXT_TESTS.format(
            imports="import pytest_asyncio" if strict else "",
            fixture="@pytest_asyncio.fixture" if strict else "@pytest.fixture",
            mark="@pytest.mark.asyncio" if strict else "",
        )
        + OUTSIDE_CHECK
    )
    for seed in ("1", "2"):
        result = pytester.runpytest("-v", "-p", "randomly", f"--randomly-seed={seed}")
        result.stdout.fnmatch_lines_random(
            [
                "test_context.py::test_fixture_context_reaches_the_test PASSED*",
                "test_context.py::test_and_is_gone_in_the_next PASSED*",
                "test_context.py::test_async_block_of_a_fixture_is_current PASSED*",
            ]
        )
        result.assert_outcomes(passed=4)


ANYIO_TESTS = (
    """
import pytest
import app

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"
"""
    + CONTEXT_TESTS.format(imports="", fixture="@pytest.fixture", mark="")
    + """

@pytest.mark.txscope
async def test_marker_sandboxes_the_app():
    app.add_user(2, "test")
    assert app.count_users() == 2


class TestOnTrio:
    @pytest.fixture
    def anyio_backend(self):
        return "trio"

    async def test_refused(self, db_session):
        raise AssertionError("never runs")
"""
)


def test_anyio_plugin(pytester: pytest.Pytester, backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    # pytest-asyncio in strict mode leaves the anyio-marked tests to anyio's plugin.
    make_project(pytester, backend, monkeypatch, "strict")
    pytester.makepyfile(test_anyio=ANYIO_TESTS + OUTSIDE_CHECK)
    result = pytester.runpytest("-v", "-p", "randomly", "--randomly-seed=3")
    result.stdout.fnmatch_lines_random(
        [
            "test_anyio.py::test_fixture_context_reaches_the_test PASSED*",
            "test_anyio.py::test_and_is_gone_in_the_next PASSED*",
            "test_anyio.py::test_async_block_of_a_fixture_is_current PASSED*",
            "test_anyio.py::test_marker_sandboxes_the_app PASSED*",
            "test_anyio.py::TestOnTrio::test_refused ERROR*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR at setup of TestOnTrio.test_refused _*",
            "pytest_txscope.errors.UnsupportedAsyncBackendError: this test runs on anyio's 'trio' backend; "
            "pytest-txscope's sandbox supports asyncio only (SQLAlchemy's async engines and the async API run on "
            'asyncio); run it on asyncio: return "asyncio" from the anyio_backend fixture, or leave out the '
            "test's other backends",
        ]
    )
    result.assert_outcomes(passed=5, errors=1)


FAULTS = """
import pytest


@pytest.mark.txscope(threads="bogus")
@pytest.mark.asyncio
async def test_bad_marker():
    raise AssertionError("never runs")


@pytest.mark.asyncio
async def test_left_open(db_session):
    db_session.__enter__()
    db_session.execute("INSERT INTO users (id, name) VALUES (2, 'test')")


@pytest.mark.asyncio
async def test_after_it(db_session):
    assert db_session.fetchscalar("SELECT count(*) FROM users") == 1
"""


def test_async_faults_are_reported_with_our_messages(
    pytester: pytest.Pytester, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_project(pytester, backend, monkeypatch, "strict")
    pytester.makepyfile(test_faults=FAULTS)
    # The warning shown as users see it (this suite turns warnings into errors).
    shown = "default::pytest_txscope.errors.TransactionLeftOpenWarning"
    result = pytester.runpytest("-v", "-p", "no:randomly", "-W", shown)
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR at setup of test_bad_marker _*",
            "test_faults.py::test_bad_marker: threads must be one of 'shared', 'strict', not 'bogus'; valid "
            "arguments: commit=False, threads='shared' or 'strict', databases=[[]'default', ...], "
            "reset_sequences=False",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "test_faults.py::test_left_open",
            "*TransactionLeftOpenWarning: the test ended with 1 transaction(s) still open, which were rolled back "
            "(with the sandbox, if they were in one): transaction #2 (root, as a savepoint) of db_session, whose "
            "'with' block was entered and never left.*",
        ]
    )
    result.assert_outcomes(passed=2, errors=1)


AIO_APP = '''
"""An application on pytest-txscope's asyncio API: an AsyncEngine made at import, its own commits."""
import os
from pytest_txscope import AsyncEngine

engine = AsyncEngine.from_url(os.environ["APP_DB_URL"]) if os.environ.get("APP_DB_URL") else None


async def add_user(uid, name):
    async with engine as tx:
        await tx.execute("INSERT INTO users (id, name) VALUES (:id, :name)", {"id": uid, "name": name})


async def count_users():
    async with engine.session() as s:
        return await s.fetchscalar("SELECT count(*) FROM users")
'''

SQLITE_AIO_APP = """
import pytest

@pytest.fixture(scope="session", autouse=True)
def _app_url(db_engine):
    import aio_app
    from pytest_txscope import AsyncEngine
    aio_app.engine = AsyncEngine.from_url(db_engine.url)
"""

AIO_APP_TESTS = """
import asyncio
import pytest
import aio_app

LOOPS = []


@pytest.mark.txscope
@pytest.mark.asyncio(loop_scope="function")
async def test_on_a_function_loop():
    LOOPS.append(asyncio.get_running_loop())
    await aio_app.add_user(2, "test")                        # a savepoint release
    assert await aio_app.count_users() == 2


@pytest.mark.asyncio(loop_scope="module")
async def test_on_the_module_loop(async_db_session):
    assert asyncio.get_running_loop() not in LOOPS
    await aio_app.add_user(2, "test")
    with pytest.raises(RuntimeError):
        async with aio_app.engine as tx:
            await tx.execute("INSERT INTO users (id, name) VALUES (3, 'undone')")
            raise RuntimeError("rolled back to its savepoint")
    assert await async_db_session.fetchall("SELECT id FROM users ORDER BY id") == [(1,), (2,)]
"""


@pytest.mark.backends("sqlite-file", "postgresql", "mysql", exact=True)  # drivers with an asyncio twin
def test_an_async_engine_of_the_app_is_pinned(
    pytester: pytest.Pytester, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_project(pytester, backend, monkeypatch, "strict")
    pytester.makepyfile(aio_app=AIO_APP)
    ini = pytester.path.joinpath("pytest.ini")
    ini.write_text(
        ini.read_text().replace("txscope_engines = app:engine", "txscope_engines = aio_app:engine")
    )
    if backend.family == "sqlite":
        pytester.makeconftest(SQLITE_AIO_APP)
    pytester.makepyfile(test_aio_app=AIO_APP_TESTS + OUTSIDE_CHECK)
    for seed in ("1", "2"):
        result = pytester.runpytest("-v", "-p", "randomly", f"--randomly-seed={seed}")
        result.stdout.fnmatch_lines_random(
            [
                "test_aio_app.py::test_on_a_function_loop PASSED*",
                "test_aio_app.py::test_on_the_module_loop PASSED*",
            ]
        )
        result.assert_outcomes(passed=3)
