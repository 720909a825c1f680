"""Data written once per run, module or class: ``db_run_sandbox``, ``db_module_sandbox`` and
``db_class_sandbox``. A fixture of that scope writes into the sandbox once; every test nests its own sandbox in
it and rolls back to the data; the data is rolled back when the scope ends; a ``commit=True`` test is refused
while such a sandbox is active, never run with its commits silently rolled back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pytest_txscope import DatabaseURL
from pytest_txscope.provision import drop

from ..backends import Backend, sibling_url

pytestmark = pytest.mark.backends("sqlite-file", "postgresql", "mysql")

SCHEMA = "CREATE TABLE products (id INTEGER PRIMARY KEY, sku VARCHAR(20) NOT NULL UNIQUE);\n"

CONFTEST = """
import pytest
from pytest_txscope import Engine


def written(config, what):
    with open(config.rootpath / "writes.log", "a") as log:
        log.write(what + "\\n")


@pytest.fixture(scope="session")
def run_data(db_run_sandbox, pytestconfig):
    db_run_sandbox.session().execute("INSERT INTO products (id, sku) VALUES (1, 'run')")
    written(pytestconfig, "run")


@pytest.fixture(scope="module")
def catalog(db_module_sandbox, pytestconfig):
    db_module_sandbox.session().execute("INSERT INTO products (id, sku) VALUES (2, 'module')")
    written(pytestconfig, "module")


@pytest.fixture(scope="class")
def shelf(db_class_sandbox, pytestconfig):
    db_class_sandbox.session().execute("INSERT INTO products (id, sku) VALUES (3, 'class')")
    written(pytestconfig, "class")


@pytest.fixture(scope="session")
def outside(db_engine):
    # Not pinned: sees only what is committed.
    engine = Engine.from_url(db_engine.url)
    yield engine
    engine.dispose()


def skus(session):
    return [r[0] for r in session.fetchall("SELECT sku FROM products ORDER BY id")]
"""

TEST_A = """
import pytest
from conftest import skus


def test_1(run_data, catalog, db_session, outside):
    assert skus(db_session) == ["run", "module"]
    db_session.execute("INSERT INTO products (id, sku) VALUES (10, 'test')")
    with outside.session() as s:
        assert skus(s) == []  # nothing committed


def test_2(catalog, db_session):
    assert skus(db_session) == ["run", "module"]  # test_1's row is gone, the data is not
    db_session.execute("INSERT INTO products (id, sku) VALUES (10, 'test')")


class TestShelf:
    def test_3(self, shelf, db_session):
        assert skus(db_session) == ["run", "module", "class"]
        db_session.execute("INSERT INTO products (id, sku) VALUES (10, 'test')")

    def test_4(self, shelf, db_session):
        assert skus(db_session) == ["run", "module", "class"]


def test_5(catalog, db_session):
    assert skus(db_session) == ["run", "module"]  # the class's data ended with the class


@pytest.mark.txscope(commit=True)
def test_6_commit(db_engine):
    pass
"""

TEST_B = """
from conftest import skus


def test_7(db_session):
    assert skus(db_session) == ["run"]  # the module's data ended with test_a.py
"""

REFUSED = (
    "@pytest.mark.txscope(commit=True) cannot run while db_module_sandbox (module scope, test_a.py) is active: "
    "db_engine is pinned to it, so nothing this test commits would be committed; move the test out of the scope "
    "whose tests use that sandbox (another module or class)"
)


@pytest.fixture
def project_url(backend: Backend, pytester: pytest.Pytester) -> Iterator[str]:
    if backend.family == "sqlite":
        yield f"sqlite:///{pytester.path / 'scoped_test.db'}"
        return
    url = sibling_url(backend, "scoped")
    yield url
    drop(DatabaseURL.parse(url), allow=())


def test_data_is_written_once_per_scope_and_every_test_rolls_back_to_it(
    pytester: pytest.Pytester, backend: Backend, project_url: str
) -> None:
    pytester.makefile(".sql", schema=SCHEMA)
    pytester.makeini(f"[pytest]\ntxscope_schema = schema.sql\ntxscope_url = {project_url}\n")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_a=TEST_A, test_b=TEST_B)
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=6, errors=1)
    result.stdout.fnmatch_lines(["*_ ERROR at setup of test_6_commit _*", REFUSED], consecutive=True)
    assert (pytester.path / "writes.log").read_text().split() == ["run", "module", "class"]


@pytest.mark.backends("sqlite-file")
def test_commit_true_in_a_module_scope_is_refused_and_runs_again_after_it(
    pytester: pytest.Pytester, backend: Backend
) -> None:
    pytester.makefile(".sql", schema=SCHEMA)
    pytester.makeini("[pytest]\ntxscope_schema = schema.sql\n")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        test_a="""
        import pytest

        def test_1(catalog):
            pass

        @pytest.mark.txscope(commit=True)
        def test_2_commit(db_engine):
            pass
        """,
        test_b="""
        import pytest
        from conftest import skus

        @pytest.mark.txscope(commit=True)
        def test_3_commit(db_engine, outside):
            with db_engine as tx:
                tx.execute("INSERT INTO products (id, sku) VALUES (9, 'real')")
            with outside.session() as s:
                assert skus(s) == ["real"]  # committed for real: no wider sandbox any more
        """,
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.txscope(commit=True) cannot run while db_module_sandbox (module scope, test_a.py) is "
            "active: db_engine is pinned to it, so nothing this test commits would be committed; move the test "
            "out of the scope whose tests use that sandbox (another module or class)"
        ]
    )


@pytest.mark.backends("sqlite-file")
def test_a_run_sandbox_first_requested_inside_a_module_one_is_an_error(
    pytester: pytest.Pytester, backend: Backend
) -> None:
    pytester.makefile(".sql", schema=SCHEMA)
    pytester.makeini("[pytest]\ntxscope_schema = schema.sql\n")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        test_a="""
        def test_1(catalog):
            pass

        def test_2(run_data):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "db_run_sandbox was first requested while db_module_sandbox (module scope, test_a.py) was active, and "
            "would end with it; request db_run_sandbox earlier: in the first test that needs it, or from a "
            "session-scoped autouse fixture in conftest.py"
        ]
    )
