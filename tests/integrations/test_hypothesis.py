"""Hypothesis under the plugin: every example and every state-machine run rolled back, on every backend.

Each test generates a project whose ``things`` table has a unique name: a ``@given`` test inserting the same row
in every example passes only if each example is rolled back (else the second example fails on the unique key,
or counts two rows). A last generated test checks, from an engine of its own, that nothing survived.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

# Imported in this process before any generated run: pytester forgets the modules a run imported first, and
# SQLAlchemy warns (an error here) when a dialect imported again registers its SQL functions a second time.
import sqlalchemy.dialects.mysql
import sqlalchemy.dialects.postgresql
import sqlalchemy.dialects.sqlite  # noqa: F401
from hypothesis import settings

from pytest_txscope import DatabaseURL
from pytest_txscope.sqlalchemy import sqlalchemy_url

from ..backends import Backend, sibling_url

pytestmark = pytest.mark.backends("sqlite-file", "postgresql", "mysql")

DATABASE = "hyp"
SCHEMA = "CREATE TABLE things (id INTEGER PRIMARY KEY, name VARCHAR(50) NOT NULL UNIQUE, qty INTEGER);\n"

MODELS = """
import os

from sqlalchemy import String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker


class Base(DeclarativeBase):
    pass


class Thing(Base):
    __tablename__ = "things"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    qty: Mapped[int]


# The application's SQLAlchemy engine (SQLite: the conftest rebinds it to the embedded database).
engine = create_engine(os.environ.get("APP_SA_URL", "sqlite://"))
SessionLocal = sessionmaker(bind=engine)
"""

APP = '''
"""The application under test: its own engine, its own commits."""
import os
from pytest_txscope import Engine

engine = Engine.from_url(os.environ["APP_DB_URL"]) if os.environ.get("APP_DB_URL") else None


def add_thing(qty):
    with engine as tx:
        tx.execute("INSERT INTO things (id, name, qty) VALUES (1, 'same', :qty)", {"qty": qty})
'''

# Deterministic runs; the plugin itself isolates the examples (no hooks here).
CONFTEST = """
import pytest
from hypothesis import settings

settings.register_profile("txscope-hyp", derandomize=True, database=None, deadline=None, max_examples=20)
settings.load_profile("txscope-hyp")
"""

SQLITE_APP = """

@pytest.fixture(scope="session", autouse=True)
def _app_url(db_engine):
    import app
    from pytest_txscope import Engine
    app.engine = Engine.from_url(db_engine.url)
"""

SQLITE_SA_APP = """

@pytest.fixture(scope="session", autouse=True)
def _sa_app_url(db_engine):
    from sqlalchemy import create_engine
    from pytest_txscope.sqlalchemy import sqlalchemy_url
    import models
    models.engine = create_engine(sqlalchemy_url(db_engine.url))
    models.SessionLocal.configure(bind=models.engine)
"""

OUTSIDE_CHECK = """


def test_zz_nothing_survived(db_engine):
    from pytest_txscope import Engine
    outside = Engine.from_url(db_engine.url)
    with outside.session() as s:
        assert s.fetchscalar("SELECT count(*) FROM things") == 0
    outside.dispose()
"""


def project_url(backend: Backend) -> str | None:
    """The generated projects' database: the embedded default for SQLite, ``<base>_hyp`` else (under
    pytest-xdist, ``<base>_<worker>_hyp``: ``backend`` is the worker's database)."""
    if backend.family == "sqlite":
        return None
    return sibling_url(backend, DATABASE).partition("?")[0]


@pytest.fixture(autouse=True)
def _keep_hypothesis_profile() -> Iterator[None]:
    # The generated projects run in this process and load a profile of their own: restore ours afterwards.
    # get_current_profile_name() is newer than our hypothesis floor, which keeps the name in _current_profile.
    current = getattr(settings, "get_current_profile_name", None)
    name = current() if current else settings._current_profile
    yield
    settings.load_profile(name)


def make_project(
    pytester: pytest.Pytester, backend: Backend, monkeypatch: pytest.MonkeyPatch, *, orm: bool = False
) -> pytest.Pytester:
    url = project_url(backend)
    pytester.makepyfile(app=APP)
    ini = ["[pytest]", "addopts = -p no:randomly", "txscope_engines =", "    app:engine"]
    if orm:
        pytester.makepyfile(models=MODELS)
        ini += ["    models:engine", "txscope_schema = models:Base"]
    else:
        pytester.makefile(".sql", schema=SCHEMA)
        ini.append("txscope_schema = schema.sql")
    conftest = CONFTEST
    if url:
        ini.append(f"txscope_url = {url}")
        monkeypatch.setenv("APP_DB_URL", url)
        sa_url = sqlalchemy_url(DatabaseURL.parse(url)).render_as_string(hide_password=False)
        monkeypatch.setenv("APP_SA_URL", sa_url)
    else:
        monkeypatch.delenv("APP_DB_URL", raising=False)
        monkeypatch.delenv("APP_SA_URL", raising=False)
        conftest += SQLITE_APP + (SQLITE_SA_APP if orm else "")
    pytester.makefile(".ini", pytest="\n".join(ini))
    pytester.makeconftest(conftest)
    return pytester


@pytest.fixture
def project(pytester: pytest.Pytester, backend: Backend, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    return make_project(pytester, backend, monkeypatch)


def test_each_example_is_rolled_back(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_given="""
import pytest
from hypothesis import given, settings, strategies as st
import app
from pytest_txscope import Sandbox

INSERT = "INSERT INTO things (id, name, qty) VALUES (1, 'same', :n)"
COUNT = "SELECT count(*) FROM things"
EXAMPLES = []


@given(st.integers(0, 100))
def test_plain(db_session, db_sandbox, n):
    EXAMPLES.append(n)
    assert Sandbox.current().parent is db_sandbox        # the example's own sandbox, nested in the test's
    db_session.execute(INSERT, {"n": n})
    assert db_session.fetchscalar(COUNT) == 1


@settings(max_examples=15)
@given(n=st.integers(0, 100))
def test_own_settings(db_session, n):
    with db_session as tx:                               # committed: a savepoint release
        tx.execute(INSERT, {"n": n})
    assert db_session.fetchscalar(COUNT) == 1


@pytest.mark.parametrize("label", ["a", "b"])
@given(n=st.integers(0, 100))
def test_parametrized(db_session, label, n):
    db_session.execute(INSERT, {"n": n})
    assert db_session.fetchscalar(COUNT) == 1


class TestInAClass:
    @given(n=st.integers(0, 100))
    def test_method(self, db_sandbox, n):
        cur = db_sandbox.connection().cursor()
        cur.execute("INSERT INTO things (id, name, qty) VALUES (1, 'same', 0)")
        cur.execute(COUNT)
        assert cur.fetchone()[0] == 1


@pytest.mark.txscope
@given(n=st.integers(0, 100))
def test_marked_app_commits(n):
    app.add_thing(n)                                      # the app's engine, pinned to the example's sandbox
    with app.engine.session() as s:
        assert s.fetchscalar(COUNT) == 1


def test_z_examples_ran():
    assert len(EXAMPLES) >= 10
"""
        + OUTSIDE_CHECK
    )
    project.runpytest().assert_outcomes(passed=8)


def test_orm_session_is_fresh_in_each_example(
    pytester: pytest.Pytester, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(pytester, backend, monkeypatch, orm=True)
    project.makepyfile(
        test_orm="""
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.stateful import invariant, rule, run_state_machine_as_test
from sqlalchemy import func, select
import models
from models import Thing
from pytest_txscope.hypothesis import SandboxStateMachine
from pytest_txscope.sqlalchemy import current_session


def count(session):
    return session.scalar(select(func.count()).select_from(Thing))


@given(n=st.integers(0, 100))
def test_commit(sa_session, n):
    assert list(sa_session) == []                    # nothing left in the identity map by the last example
    assert current_session() is sa_session
    sa_session.add(Thing(id=1, name="same", qty=n))
    sa_session.commit()                              # a savepoint release
    assert count(sa_session) == 1


@given(n=st.integers(0, 100))
def test_flush_only(sa_session, db_session, n):
    sa_session.add(Thing(id=1, name="same", qty=n))
    sa_session.flush()                               # left open at the example's end
    assert db_session.fetchscalar("SELECT count(*) FROM things") == 1


@given(n=st.integers(0, 100))
def test_app_sessions_commit(db_session, n):
    with models.SessionLocal() as s:                 # the application's own engine and session
        s.add(Thing(id=1, name="same", qty=n))
        s.commit()
    with models.SessionLocal() as s:
        assert count(s) == 1


@pytest.fixture
def seeded(sa_session):
    sa_session.add(Thing(id=50, name="seed", qty=0))
    sa_session.flush()                               # still open when the first example starts


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])   # seeded is not reset: on purpose
@given(n=st.integers(0, 100))
def test_after_a_fixture_flushed(seeded, sa_session, n):
    assert count(sa_session) == 1
    sa_session.add(Thing(id=1, name="same", qty=n))
    sa_session.commit()
    assert count(sa_session) == 2


class OrmMachine(SandboxStateMachine):
    def __init__(self):
        super().__init__()
        self.ids = set()

    @rule(k=st.integers(0, 3))
    def add(self, k):
        if k not in self.ids:
            self.sa_session.add(Thing(id=k, name=f"t{k}", qty=k))
            self.sa_session.commit()
            self.ids.add(k)

    @invariant()
    def same(self):
        assert current_session() is self.sa_session
        assert set(self.sa_session.scalars(select(Thing.id))) == self.ids


def test_orm_machine(sa_session):
    run_state_machine_as_test(OrmMachine)
    assert count(sa_session) == 0
"""
        + OUTSIDE_CHECK
    )
    project.runpytest().assert_outcomes(passed=6)


def test_other_function_scoped_fixtures_keep_the_health_check(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_health="""
import pytest
from hypothesis import given, strategies as st


@pytest.fixture
def thing(db_session):
    db_session.execute("INSERT INTO things (id, name, qty) VALUES (1, 'fixture', 0)")
    return 1


@given(n=st.integers())
def test_with_tmp_path(db_session, tmp_path, n):
    pass


@given(n=st.integers())
def test_with_own_fixture(thing, n):
    pass


@given(n=st.integers())
def test_only_ours(db_session, sa_session, n):
    pass
"""
    )
    result = project.runpytest()
    result.assert_outcomes(failed=2, passed=1)
    # Hypothesis words it "<test> uses a function-scoped fixture <name>" now, and in releases as old as our
    # floor "Function-scoped fixture <name> used by <test>".
    result.stdout.re_match_lines(
        [
            r".*FailedHealthCheck: ('test_health.py::test_with_tmp_path' uses a function-scoped fixture"
            r"|Function-scoped fixture '\w+' used by 'test_health.py::test_with_tmp_path')",
            r".*FailedHealthCheck: ('test_health.py::test_with_own_fixture' uses a function-scoped fixture 'thing'"
            r"|Function-scoped fixture 'thing' used by 'test_health.py::test_with_own_fixture')",
        ],
        consecutive=False,
    )


MACHINE = """
import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import invariant, rule, run_state_machine_as_test
from pytest_txscope import Sandbox
from pytest_txscope.hypothesis import SandboxStateMachine

KEYS = st.integers(0, 4)
SETTINGS = settings(max_examples=15, stateful_step_count=10)


class Things(SandboxStateMachine):
    def __init__(self):
        super().__init__()
        self.model = {}

    @rule(k=KEYS, n=st.integers(0, 9))
    def insert(self, k, n):
        if k not in self.model:
            self.session.execute(
                "INSERT INTO things (id, name, qty) VALUES (:k, :name, :n)", {"k": k, "name": f"t{k}", "n": n}
            )
            self.model[k] = n

    @rule(k=KEYS)
    def delete(self, k):
        self.session.execute("DELETE FROM things WHERE id = :k", {"k": k})
        self.model.pop(k, None)

    @invariant()
    def matches_the_model(self):   # checked first on an empty model: a previous run's rows would show
        assert dict(self.session.fetchall("SELECT id, qty FROM things")) == self.model
"""


def test_state_machine_runs_are_rolled_back(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_machine=MACHINE
        + """

def test_in_the_tests_sandbox(db_session, db_sandbox):
    seen = []

    class Nested(Things):
        def __init__(self):
            super().__init__()
            seen.append(self.sandbox.parent is db_sandbox)

    run_state_machine_as_test(Nested, settings=SETTINGS)
    assert seen and all(seen)
    assert db_session.fetchscalar("SELECT count(*) FROM things") == 0


def test_with_its_own_engine(db_engine):
    class OwnEngine(Things):
        engine = db_engine

    run_state_machine_as_test(OwnEngine, settings=SETTINGS)


Things.TestCase.settings = SETTINGS
TestThings = pytest.mark.txscope(Things.TestCase)
"""
        + OUTSIDE_CHECK
    )
    project.runpytest().assert_outcomes(passed=4)


def test_state_machine_misuse(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_misuse=MACHINE
        + """

def test_no_engine_and_no_sandbox():
    run_state_machine_as_test(Things, settings=SETTINGS)


class Forgetful(Things):
    def teardown(self):                 # no super().teardown(): the run's sandbox ends all the same
        pass


def test_teardown_without_super(db_session, db_sandbox):
    run_state_machine_as_test(Forgetful, settings=SETTINGS)
    assert Sandbox.current() is db_sandbox


class BrokenInit(Things):
    def __init__(self):
        super().__init__()
        self.session.execute("INSERT INTO things (id, name, qty) VALUES (9, 'init', 0)")
        raise RuntimeError("broken __init__")   # hypothesis calls no teardown(): the sandbox ends anyway


def test_init_fails(db_session):
    run_state_machine_as_test(BrokenInit, settings=SETTINGS)


def test_after_the_failed_init(db_session, db_sandbox):
    assert Sandbox.current() is db_sandbox
    assert db_session.fetchscalar("SELECT count(*) FROM things") == 0
"""
        + OUTSIDE_CHECK
    )
    result = project.runpytest()
    result.assert_outcomes(failed=2, passed=3)
    result.stdout.fnmatch_lines(
        [
            "E * pytest_txscope.hypothesis.NoMachineEngineError: Things found no engine for its sandbox: it has no "
            "'engine' class attribute and no sandbox is active; run it inside a test that requests db_session or "
            "db_sandbox (or is marked @pytest.mark.txscope), or set Things.engine to a pytest_txscope.Engine "
            "(db_engine)",
            "E * RuntimeError: broken __init__",
        ],
        consecutive=False,
    )
