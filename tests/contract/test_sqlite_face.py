"""The sqlite3 face of the sandbox connection: code written for ``sqlite3.connect(...)`` gets what sqlite3 gives.

Each test compares with the driver's own connection where it can (``expected``): the same statement, the same
arguments, the same values. Both SQLite backends (file and ``:memory:``): the face must not need a second
connection to the database.
"""

from __future__ import annotations

import datetime
import sqlite3
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_txscope import Engine, Sandbox, SandboxRefusedError, TransactionStateError
from pytest_txscope.dbapi import SandboxConnection

pytestmark = pytest.mark.backends("sqlite")

DDL = (
    "CREATE TABLE post (id INTEGER PRIMARY KEY, title TEXT, created TIMESTAMP, day DATE, "
    "price REAL, data BLOB, n INTEGER)"
)
ROW = (1, "héllo", "2024-01-02 03:04:05", "2024-01-02", 2.5, b"\x00\x01", 7)


@pytest.fixture
def sandbox(engine: Engine) -> Iterator[Sandbox]:
    with Sandbox(engine) as box:
        box.session().execute(DDL)  # inside the sandbox: the declared types come from the test's own table
        box.session().execute("INSERT INTO post VALUES (?, ?, ?, ?, ?, ?, ?)", ROW)
        yield box


def expected(**connect_kwargs: Any) -> Any:
    """What the driver's own connection gives, on a database of its own with the same table and row."""
    real = sqlite3.connect(":memory:", **connect_kwargs)
    real.execute(DDL)
    real.execute("INSERT INTO post VALUES (?, ?, ?, ?, ?, ?, ?)", ROW)
    return real


QUERIES = [
    "SELECT * FROM post",
    'SELECT created AS "c [timestamp]", day AS "d [date]", title, price * 2 FROM post',
    "SELECT count(*), max(created) FROM post",
]


@pytest.mark.parametrize("detect_types", [0, sqlite3.PARSE_DECLTYPES, sqlite3.PARSE_COLNAMES, 3])
@pytest.mark.parametrize("query", QUERIES)
def test_detect_types_converts_as_sqlite3_does(sandbox: Sandbox, detect_types: int, query: str) -> None:
    face = sandbox.connection({"database": "app.db", "detect_types": detect_types})
    real = expected(detect_types=detect_types)
    got, want = face.execute(query), real.execute(query)
    assert got.description == want.description
    assert got.fetchall() == want.fetchall()


def test_flaskr_reads_a_timestamp_as_datetime_through_rows(sandbox: Sandbox) -> None:
    db = sandbox.connection({"detect_types": sqlite3.PARSE_DECLTYPES})
    db.row_factory = sqlite3.Row
    db.execute("INSERT INTO post (id, title, created) VALUES (2, 'new', '2025-05-06 07:08:09')")
    db.commit()
    post = db.execute("SELECT id, title, created FROM post WHERE id = 2").fetchone()
    assert isinstance(post, sqlite3.Row)
    assert post["created"].strftime("%Y-%m-%d") == "2025-05-06"
    assert [tuple(r) for r in db.execute("SELECT id FROM post ORDER BY id")] == [(1,), (2,)]


def test_rows_have_the_names_parse_colnames_shows(sandbox: Sandbox) -> None:
    db = sandbox.connection({"detect_types": sqlite3.PARSE_COLNAMES})
    db.row_factory = sqlite3.Row
    row = db.execute('SELECT created AS "made [timestamp]" FROM post').fetchone()
    assert row.keys() == ["made"]
    assert row["made"] == datetime.datetime(2024, 1, 2, 3, 4, 5)


def test_row_factory_is_copied_to_new_cursors_only(sandbox: Sandbox) -> None:
    db = sandbox.connection({})
    before = db.cursor()
    db.row_factory = sqlite3.Row
    after = db.cursor()
    assert before.execute("SELECT title FROM post").fetchone() == ("héllo",)
    assert after.execute("SELECT title FROM post").fetchone()["title"] == "héllo"
    after.row_factory = lambda cursor, row: {d[0]: v for d, v in zip(cursor.description, row, strict=True)}
    assert after.execute("SELECT title FROM post").fetchone() == {"title": "héllo"}
    assert db.execute("SELECT id FROM post").fetchone().keys() == ["id"]


@pytest.mark.parametrize("factory", [bytes, str, lambda raw: raw.decode("utf-8").upper()])
@pytest.mark.parametrize("detect_types", [0, sqlite3.PARSE_DECLTYPES])
def test_text_factory_applies_to_text_only(sandbox: Sandbox, factory: Any, detect_types: int) -> None:
    face = sandbox.connection({"detect_types": detect_types})
    real = expected(detect_types=detect_types)
    face.text_factory = real.text_factory = factory
    query = "SELECT title, data, n, price, created FROM post"
    assert face.execute(query).fetchall() == real.execute(query).fetchall()


def test_other_connections_keep_sqlite3s_defaults(sandbox: Sandbox) -> None:
    converting = sandbox.connection({"detect_types": sqlite3.PARSE_DECLTYPES})
    converting.text_factory = bytes
    cursor = converting.execute("SELECT title, created FROM post")
    plain = sandbox.connection({})
    assert plain.execute("SELECT title, created FROM post").fetchall() == [("héllo", "2024-01-02 03:04:05")]
    assert cursor.fetchall() == [(b"h\xc3\xa9llo", datetime.datetime(2024, 1, 2, 3, 4, 5))]
    assert sandbox.session().fetchone("SELECT title, created FROM post") == ("héllo", "2024-01-02 03:04:05")


def test_a_closed_connection_raises_sqlite3s_programming_error(sandbox: Sandbox) -> None:
    db = sandbox.connection({})
    db.close()
    with pytest.raises(sqlite3.ProgrammingError, match=r"^Cannot operate on a closed database\. \(") as info:
        db.execute("SELECT 1")
    assert isinstance(info.value, TransactionStateError)


def test_isolation_level_none_commits_each_statement_at_once(sandbox: Sandbox) -> None:
    db = sandbox.connection({"isolation_level": None})
    db.execute("INSERT INTO post (id, title) VALUES (2, 'auto')")
    assert not db.in_transaction
    db.rollback()  # nothing to roll back: the statement was committed (into the sandbox's transaction)
    db.execute("BEGIN")
    db.execute("INSERT INTO post (id, title) VALUES (3, 'undone')")
    assert db.in_transaction
    db.execute("ROLLBACK")
    assert sandbox.session().fetchall("SELECT id FROM post ORDER BY id") == [(1,), (2,)]
    with pytest.raises(sqlite3.OperationalError, match="cannot commit - no transaction is active"):
        db.execute("COMMIT")


def test_switching_to_autocommit_after_connect_commits_first_as_sqlite3_does(sandbox: Sandbox) -> None:
    db = sandbox.connection({})
    db.execute("INSERT INTO post (id, title) VALUES (2, 'kept')")
    assert db.in_transaction
    db.isolation_level = None
    assert not db.in_transaction
    db.rollback()  # the insert was committed by the switch (into the sandbox's transaction)
    assert sandbox.session().fetchall("SELECT id FROM post ORDER BY id") == [(1,), (2,)]
    db.isolation_level = "IMMEDIATE"
    assert db.isolation_level == "IMMEDIATE"
    db.execute("INSERT INTO post (id, title) VALUES (3, 'undone')")
    db.rollback()
    assert sandbox.session().fetchall("SELECT id FROM post ORDER BY id") == [(1,), (2,)]


def test_in_transaction_and_total_changes_are_the_connections_own(sandbox: Sandbox) -> None:
    db = sandbox.connection({})
    assert (db.in_transaction, db.total_changes) == (False, 0)
    db.execute("SELECT * FROM post").fetchall()
    assert not db.in_transaction  # sqlite3 opens a transaction before a write only
    db.execute("UPDATE post SET n = 8")
    assert (db.in_transaction, db.total_changes) == (True, 1)
    db.commit()
    assert not db.in_transaction


def test_executescript_runs_inside_the_apps_transaction(sandbox: Sandbox) -> None:
    db = sandbox.connection({})
    db.executescript("INSERT INTO post (id) VALUES (2); INSERT INTO post (id) VALUES (3);")
    db.rollback()
    assert sandbox.session().fetchscalar("SELECT count(*) FROM post") == 1


def test_functions_and_collations_are_removed_when_the_connection_closes(sandbox: Sandbox) -> None:
    db = sandbox.connection({})
    db.create_function("twice", 1, lambda x: x * 2, deterministic=True)
    db.create_collation("backwards", lambda a, b: (a < b) - (a > b))
    assert db.execute("SELECT twice(n) FROM post ORDER BY title COLLATE backwards").fetchone() == (14,)
    db.close()
    later = sandbox.connection({})
    # Removed; sqlite3 before Python 3.13 cannot remove a function: it is left as one that fails.
    with pytest.raises(
        sqlite3.OperationalError, match=r"no such function: twice|user-defined function raised"
    ):
        later.execute("SELECT twice(1)")
    with pytest.raises(sqlite3.OperationalError, match="no such collation sequence: backwards"):
        later.execute("SELECT 1 ORDER BY 1 COLLATE backwards")


def test_factory_lends_its_methods(sandbox: Sandbox) -> None:
    class Blog(sqlite3.Connection):
        def titles(self) -> list[str]:
            return [title for (title,) in self.execute("SELECT title FROM post")]

    db = sandbox.connection({"factory": Blog})
    assert isinstance(db, SandboxConnection)
    assert db.titles() == ["héllo"]
    with pytest.raises(TypeError, match=r"factory must be a subclass of sqlite3\.Connection"):
        sandbox.connection({"factory": dict})


def test_iterdump_reads_and_backup_into_the_sandbox_is_refused(sandbox: Sandbox) -> None:
    db = sandbox.connection({})
    assert any('INSERT INTO "post"' in line for line in db.iterdump())
    copy = sqlite3.connect(":memory:")
    db.backup(copy)
    assert copy.execute("SELECT title FROM post").fetchall() == [("héllo",)]
    with pytest.raises(SandboxRefusedError, match="backup"):
        db.backup(sandbox.connection({}))


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sqlite3's autocommit attribute is Python 3.12's")
def test_autocommit_true_commits_each_statement(sandbox: Sandbox) -> None:
    db = sandbox.connection({"autocommit": True})
    assert db.autocommit is True
    db.execute("INSERT INTO post (id) VALUES (2)")
    assert not db.in_transaction
