"""Query counts (``db_assert_num_queries``, ``db_capture_queries``) and on-commit capture
(``db_capture_on_commit``), run as users run them: a generated project on every backend.

The application's statements are counted on every connection of the sandbox, never the library's own BEGIN,
SAVEPOINT, RELEASE or statement savepoints (on PostgreSQL each bare statement of the test's session gets one):
the counts below are the same on every backend.
"""

from __future__ import annotations

import pytest

from .test_plugin import OUTSIDE_CHECK, project

__all__ = ["project"]  # the fixture, shared with test_plugin.py

pytestmark = pytest.mark.backends("sqlite-file", "postgresql", "mysql")

VIEWS = '''
"""A view of the application: what it sends is what the tests count."""
import app


def list_then_add(uid):
    with app.engine as tx:
        tx.fetchall("SELECT id FROM users")
        tx.execute("INSERT INTO users (id, name) VALUES (:id, :name)", {"id": uid, "name": f"u{uid}"})
        with tx.begin_nested() as inner:
            inner.execute("UPDATE users SET name = :name WHERE id = :id", {"id": uid, "name": "renamed"})
'''


def run(project: pytest.Pytester, tests: str, *, passed: int = 0, failed: int = 0) -> pytest.RunResult:
    project.makepyfile(views=VIEWS, test_q=tests + OUTSIDE_CHECK)
    result = project.runpytest()
    result.assert_outcomes(passed=passed + 1, failed=failed)
    return result


def test_counts_the_apps_statements_on_every_connection_and_no_control(project: pytest.Pytester) -> None:
    run(
        project,
        """
import app, views

def test_counts(db_assert_num_queries, db_session, db_sandbox):
    raw = db_sandbox.connection()
    with db_assert_num_queries(6) as queries:
        views.list_then_add(2)                                     # 3, in a transaction and a savepoint
        db_session.execute("INSERT INTO users (id, name) VALUES (3, 'x')")   # 1, statement savepoint on PG
        cur = raw.cursor()
        cur.execute("INSERT INTO users (id, name) VALUES (4, 'raw')")        # 1, a raw DB-API connection
        raw.commit()                                               # control: not counted
        assert app.count_users() == 4                              # 1
    assert [q.sql.split()[0] for q in queries] == ["SELECT", "INSERT", "UPDATE", "INSERT", "INSERT", "SELECT"]
    assert queries[1].site.startswith("views.py:")

def test_other_threads_count_once(db_assert_num_queries, db_session):
    import threading
    with db_assert_num_queries(3) as queries:
        db_session.execute("SELECT 1")
        worker = threading.Thread(target=app.count_users)          # the connection is shared from now on
        worker.start()
        worker.join()
        db_session.execute("SELECT 2")                              # through the shared connection's gate
    assert [q.sql for q in queries] == ["SELECT 1", "SELECT count(*) FROM users", "SELECT 2"]

def test_nothing_sent_counts_zero(db_assert_num_queries, db_session):
    with db_assert_num_queries(0):
        with app.engine as tx:
            pass                                                   # BEGIN is never sent for an empty block
""",
        passed=3,
    )


def test_a_wrong_count_lists_each_statement_and_where(project: pytest.Pytester) -> None:
    result = run(
        project,
        """
import views

def test_wrong(db_assert_num_queries, db_session):
    with db_assert_num_queries(2):
        views.list_then_add(2)
""",
        failed=1,
    )
    result.stdout.fnmatch_lines(
        [
            "E  *pytest_txscope.errors.QueryCountError: expected 2 queries, 3 were sent:",
            "E  *1. SELECT id FROM users (at views.py:7 in list_then_add)",
            "E  *2. INSERT INTO users (id, name) VALUES (:id, :name) (at views.py:8 in list_then_add)",
            "E  *3. UPDATE users SET name = :name WHERE id = :id (at views.py:10 in list_then_add)",
        ],
        consecutive=True,
    )


def test_engine_narrows_the_count(project: pytest.Pytester) -> None:
    run(
        project,
        """
import app, views

def test_narrowed(db_assert_num_queries, db_capture_queries, db_session, db_engine):
    with db_assert_num_queries(3, engine=app.engine), db_capture_queries(engine=db_engine) as ours:
        views.list_then_add(2)
        db_session.execute("SELECT 1")
    assert ours.sqls == ["SELECT 1"]
""",
        passed=1,
    )


def test_bad_arguments_fail_with_one_line(project: pytest.Pytester) -> None:
    result = run(
        project,
        """
import pytest

def test_num(db_assert_num_queries):
    with db_assert_num_queries("3"):
        pass

def test_missing(db_assert_num_queries):
    with db_assert_num_queries():
        pass

def test_engine(db_capture_queries):
    with db_capture_queries(engine="postgresql://app:Sup3r-Secret@db/shop"):
        pass

def test_execute(db_capture_on_commit):
    with db_capture_on_commit(execute="yes"):
        pass
""",
        failed=4,
    )
    text = result.stdout.str()
    for absent in ("Traceback", "During handling", "Sup3r-Secret"):
        assert absent not in text, text
    result.stdout.fnmatch_lines(
        [
            "*_ test_num _*",
            "db_assert_num_queries: num='3' is not valid; give the number of statements expected, an int of 0 or "
            "more; valid arguments: num (an int), engine=None",
            "*_ test_missing _*",
            "db_assert_num_queries: missing 1 required positional argument: 'num'; valid arguments: num (an "
            "int), engine=None",
            "*_ test_engine _*",
            "db_capture_queries: engine= got str, which is not an engine; pass a pytest_txscope Engine or "
            "AsyncEngine, or a SQLAlchemy Engine or AsyncEngine pinned to the test's sandbox (listed in "
            "txscope_engines); valid arguments: engine=None",
            "*_ test_execute _*",
            "db_capture_on_commit: execute='yes' is not valid; use execute=True or execute=False; valid "
            "arguments: execute=False or execute=True",
        ]
    )


def test_on_commit_callbacks_are_collected_and_run_once_when_asked(project: pytest.Pytester) -> None:
    run(
        project,
        """
import pytest
import app

def commit_with_callback(fired, name, fail=False):
    with app.engine as tx:
        tx.execute("INSERT INTO users (id, name) VALUES (:id, :name)", {"id": 10 + ord(name[0]), "name": name})
        tx.on_commit(lambda: fired.append(name))
        if fail:
            raise RuntimeError("rolled back")

def test_collected_only(db_capture_on_commit, db_session):
    fired = []
    with db_capture_on_commit() as callbacks:
        commit_with_callback(fired, "a")
        with pytest.raises(RuntimeError):
            commit_with_callback(fired, "b", fail=True)       # rolled back: schedules none
    assert len(callbacks) == 1 and fired == []
    callbacks[0]()
    assert fired == ["a"]

def test_executed_once_at_the_end(db_capture_on_commit, db_session):
    fired = []
    with db_capture_on_commit(execute=True) as callbacks:
        commit_with_callback(fired, "a")
        with app.engine as tx:
            with tx.begin_nested() as inner:
                inner.on_commit(lambda: fired.append("inner"))  # passes to the top-level commit
        assert fired == []
    assert fired == ["a", "inner"] and len(callbacks) == 2
    commit_with_callback(fired, "later")                     # outside the block: runs at its commit
    assert fired == ["a", "inner", "later"]

def test_not_run_when_the_block_raises(db_capture_on_commit, db_session):
    fired = []
    with pytest.raises(KeyError):
        with db_capture_on_commit(execute=True):
            commit_with_callback(fired, "a")
            raise KeyError("x")
    assert fired == []
""",
        passed=3,
    )


def test_async_tests_use_both(project: pytest.Pytester) -> None:
    project.path.joinpath("pytest.ini").write_text(
        project.path.joinpath("pytest.ini").read_text() + "\nasyncio_mode = auto\n"
    )
    run(
        project,
        """
import pytest

async def test_async(db_assert_num_queries, db_capture_on_commit, async_db_session):
    fired = []

    async def notify():
        fired.append("awaited")

    with db_assert_num_queries(2):
        async with db_capture_on_commit(execute=True) as callbacks:
            async with async_db_session as tx:
                await tx.execute("INSERT INTO users (id, name) VALUES (5, 'a')")
                tx.on_commit(notify)
                tx.on_commit(lambda: fired.append("plain"))
            await async_db_session.fetchscalar("SELECT count(*) FROM users")
            assert fired == []
    assert fired == ["awaited", "plain"] and len(callbacks) == 2

async def test_plain_with_refuses_a_coroutine(db_capture_on_commit, async_db_session):
    async def notify():
        pass

    with pytest.raises(Exception, match="'async with db_capture_on_commit"):
        with db_capture_on_commit(execute=True):
            async with async_db_session as tx:
                await tx.execute("SELECT 1")
                tx.on_commit(notify)
""",
        passed=2,
    )
