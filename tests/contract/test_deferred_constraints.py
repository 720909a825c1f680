"""PostgreSQL's deferred constraints are checked at the application's commit, as production checks them at COMMIT.

In the sandbox the application's commit is a savepoint release, which checks nothing: an orphan row under a
``DEFERRABLE INITIALLY DEFERRED`` foreign key was committed, and its ``on_commit`` callbacks fired (found
porting a real application). Now the commit raises the driver's own error, the application's transaction is
rolled back and its callbacks dropped, and the test goes on.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pytest_txscope import Engine, Sandbox, TransactionStateError

from ..backends import integrity_error

pytestmark = pytest.mark.backends("postgresql")

SCHEMA = """
DROP TABLE IF EXISTS deferred_children; DROP TABLE IF EXISTS deferred_parents;
CREATE TABLE deferred_parents (id INT PRIMARY KEY);
CREATE TABLE deferred_children (
    id INT PRIMARY KEY,
    late INT REFERENCES deferred_parents DEFERRABLE INITIALLY DEFERRED,
    early INT REFERENCES deferred_parents DEFERRABLE INITIALLY IMMEDIATE
)
"""
ORPHAN = "INSERT INTO deferred_children (id, late) VALUES (1, 99)"


@pytest.fixture
def tables(engine: Engine) -> Iterator[None]:
    engine.executescript(SCHEMA)
    yield
    engine.executescript("DROP TABLE deferred_children; DROP TABLE deferred_parents")


def foreign_key_violation(engine: Engine) -> type[BaseException]:
    """The driver's own IntegrityError (its ForeignKeyViolation subclass is checked by name: psycopg2 fills
    its ``errors`` module only as it meets each error)."""
    violation: type[BaseException] = integrity_error(engine.dialect)
    return violation


def children(engine: Engine) -> list[int]:
    with engine as tx:
        return [row[0] for row in tx.execute("SELECT id FROM deferred_children ORDER BY id").fetchall()]


@pytest.mark.usefixtures("tables")
def test_the_applications_commit_raises_on_a_violated_deferred_constraint(engine: Engine) -> None:
    fired: list[str] = []
    with Sandbox(engine) as sandbox:
        violation = pytest.raises(foreign_key_violation(engine), match="deferred_children_late_fkey")
        with violation as info, engine as tx:
            tx.execute(ORPHAN)
            tx.on_commit(lambda: fired.append("orphan"))
        # psycopg names it ForeignKeyViolation, asyncpg ForeignKeyViolationError
        assert type(info.value).__name__ in ("ForeignKeyViolation", "ForeignKeyViolationError")
        assert fired == []
        assert tx.state.value == "rolled back"
        # The test goes on: the transaction is usable, and the orphan is gone with the app's transaction.
        with engine as tx:
            tx.execute("INSERT INTO deferred_parents (id) VALUES (99)")
            tx.execute(ORPHAN)
            tx.on_commit(lambda: fired.append("parented"))
        assert (fired, children(engine)) == (["parented"], [1])
        sandbox.session().execute("SELECT 1")


@pytest.mark.usefixtures("tables")
def test_a_dbapi_connections_commit_raises_too(engine: Engine) -> None:
    with Sandbox(engine) as sandbox:
        connection = sandbox.connection()
        connection.cursor().execute(ORPHAN)
        with pytest.raises(foreign_key_violation(engine)):
            connection.commit()
        connection.cursor().execute("SELECT 1")  # a new transaction, on a usable connection
        connection.commit()
        assert children(engine) == []


@pytest.mark.usefixtures("tables")
def test_the_check_leaves_each_constraints_mode_as_it_was(engine: Engine) -> None:
    with Sandbox(engine):
        with engine as tx:
            tx.execute("INSERT INTO deferred_parents (id) VALUES (1)")
        with engine as tx:
            tx.execute("INSERT INTO deferred_children (id, late) VALUES (2, 98)")  # deferred: no error yet
            with pytest.raises(foreign_key_violation(engine)), tx.begin_nested() as inner:
                inner.execute("INSERT INTO deferred_children (id, early) VALUES (3, 97)")  # immediate, still
            tx.execute("DELETE FROM deferred_children")


def test_a_deferrable_constraint_made_inside_the_test_is_checked(engine: Engine) -> None:
    with Sandbox(engine):
        with engine as tx:  # committed before the table exists: the database had no deferrable constraint
            tx.execute("SELECT 1")
        with engine as tx:
            for statement in SCHEMA.split(";")[2:]:
                tx.execute(statement)
        with pytest.raises(foreign_key_violation(engine)), engine as tx:
            tx.execute(ORPHAN)


@pytest.mark.usefixtures("tables")
def test_a_savepoint_released_behind_the_librarys_back_is_reported_as_before(engine: Engine) -> None:
    with Sandbox(engine):
        gone = pytest.raises(
            TransactionStateError, match="savepoint txscope_sp1, set by the library, no longer"
        )
        with gone, engine as tx:
            tx.execute("INSERT INTO deferred_parents (id) VALUES (1)")
            tx.execute("RELEASE SAVEPOINT txscope_sp1")
