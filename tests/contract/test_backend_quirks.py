"""Per-backend behaviour the core must handle: MySQL's implicit DDL commit, PostgreSQL's aborted transactions,
transactions ended behind the library's back."""

from __future__ import annotations

import pytest

from pytest_txscope import (
    DatabaseURL,
    Engine,
    ImplicitCommitError,
    ScriptError,
    TransactionState,
    TransactionStateError,
)
from pytest_txscope.dialects import dialect_for_url

from ..backends import Backend, Peer


@pytest.mark.backends("mysql")
def test_mysql_ddl_inside_a_transaction_names_the_statement(
    backend: Backend, engine: Engine, peer: Peer
) -> None:
    peer.execute("DROP TABLE IF EXISTS quirk_ddl")
    with pytest.raises(ImplicitCommitError) as info, engine as tx:
        tx.execute("INSERT INTO items (id, name) VALUES (1, 'before ddl')")
        with engine as sp:
            sp.execute("CREATE TABLE quirk_ddl (x INT)")
    assert str(info.value) == (
        "MySQL/MariaDB committed the transaction implicitly while running 'CREATE TABLE quirk_ddl (x INT)': "
        "the transaction and its savepoints are gone, and the session refuses further statements in them; run "
        "DDL outside transactions (engine.executescript(...)) or use CREATE TEMPORARY TABLE, which does not commit"
    )
    assert tx.state is TransactionState.BROKEN
    assert sp.state is TransactionState.BROKEN
    # What ran before the DDL was committed by the server: the error is the only warning a user gets.
    assert peer.fetchall("SELECT name FROM items") == [("before ddl",)]
    peer.execute("DROP TABLE IF EXISTS quirk_ddl")


@pytest.mark.backends("mysql")
def test_mysql_after_implicit_commit_the_block_refuses_work(backend: Backend, engine: Engine) -> None:
    with pytest.raises(TransactionStateError) as info, engine as tx:
        with pytest.raises(ImplicitCommitError):
            tx.execute("CREATE TABLE IF NOT EXISTS quirk_ddl2 (x INT)")
        tx.execute("INSERT INTO items (id, name) VALUES (1, 'would autocommit')")
    assert str(info.value) == (
        "cannot run a statement: transaction #1 (root) is already broken: the server ended the transaction while "
        "running 'CREATE TABLE IF NOT EXISTS quirk_ddl2 (x INT)'; open a new transaction block for more work"
    )
    engine.executescript("DROP TABLE IF EXISTS quirk_ddl2")
    with engine as tx:
        assert tx.fetchall("SELECT name FROM items") == []


@pytest.mark.backends("mysql")
def test_mysql_temporary_tables_do_not_commit(backend: Backend, engine: Engine, peer: Peer) -> None:
    with engine as tx:
        tx.execute("CREATE TEMPORARY TABLE tmp_q (x INT)")
        tx.execute("INSERT INTO items (id, name) VALUES (1, 'a')")
        tx.rollback()
    assert peer.fetchall("SELECT name FROM items") == []


def test_raw_commit_sent_as_sql_is_detected(backend: Backend, engine: Engine, peer: Peer) -> None:
    committed = r"committed the transaction when 'COMMIT' was sent"
    with pytest.raises(ImplicitCommitError, match=committed) as info, engine as tx:
        tx.execute("INSERT INTO items (id, name) VALUES (1, 'a')")
        tx.execute("COMMIT")
    assert not info.value.rolled_back
    assert tx.state is TransactionState.BROKEN
    assert peer.fetchall("SELECT name FROM items") == [("a",)]
    with engine as tx:  # the engine and its pool are fine afterwards
        assert tx.fetchscalar("SELECT count(*) FROM items") == 1


@pytest.mark.backends("postgresql")
def test_postgresql_aborted_transaction_cannot_commit(backend: Backend, engine: Engine, peer: Peer) -> None:
    with pytest.raises(TransactionStateError) as info, engine as tx:
        tx.execute("INSERT INTO items (id, name) VALUES (1, 'a')")
        with pytest.raises(Exception, match="duplicate key"):
            tx.execute("INSERT INTO items (id, name) VALUES (2, 'a')")
    assert str(info.value) == (
        "cannot commit transaction #1 (root): a statement in it failed and PostgreSQL aborts the transaction "
        "until it is rolled back, so it was rolled back; catch errors inside a nested block "
        "(with tx.begin_nested(): ...) to keep the rest of the work"
    )
    assert peer.fetchall("SELECT name FROM items") == []


@pytest.mark.backends("postgresql")
def test_postgresql_deferred_constraint_fails_at_commit(backend: Backend, engine: Engine, peer: Peer) -> None:
    engine.executescript(
        "DROP TABLE IF EXISTS quirk_child; CREATE TABLE quirk_child (id INT PRIMARY KEY, item_id INT "
        "REFERENCES items(id) DEFERRABLE INITIALLY DEFERRED)"
    )
    try:
        with pytest.raises(Exception, match="foreign key"), engine as tx:
            tx.execute("INSERT INTO quirk_child VALUES (1, 42)")  # fine until COMMIT
        assert tx.state is TransactionState.ROLLED_BACK
        with engine as tx:
            tx.execute("INSERT INTO items (id, name) VALUES (1, 'after')")
        assert peer.fetchall("SELECT name FROM items") == [("after",)]
    finally:
        engine.executescript("DROP TABLE IF EXISTS quirk_child")


def test_executescript_is_atomic_where_ddl_is_transactional(
    backend: Backend, engine: Engine, peer: Peer
) -> None:
    script = (
        "CREATE TABLE quirk_half (x INT);\n\nINSERT INTO items (id, name) VALUES (1, 'x');\n  SELEC broken;\n"
    )
    with pytest.raises(ScriptError) as info:
        engine.executescript(script, source="schema.sql")
    message = str(info.value)
    assert message.startswith("schema.sql, line 4: statement 3 of 3 failed: 'SELEC broken': ")
    kept = {
        "mysql": "statements 1 to 2 were committed (MySQL/MariaDB commits DDL as it runs)",
    }.get(backend.family, "nothing of the script was kept")
    assert message.endswith(f"; {kept}")
    assert info.value.line == 4
    tables = {
        "sqlite": "SELECT name FROM sqlite_master WHERE name = 'quirk_half'",
        "postgresql": "SELECT tablename FROM pg_tables WHERE tablename = 'quirk_half'",
        "mysql": "SELECT table_name FROM information_schema.tables WHERE table_name = 'quirk_half' "
        "AND table_schema = DATABASE()",
    }
    left = peer.fetchall(tables[backend.family])
    if backend.family == "mysql":
        assert left == [("quirk_half",)]  # MySQL commits DDL: documented, statement by statement
        peer.execute("DROP TABLE quirk_half")
    else:
        assert left == []
        assert peer.fetchall("SELECT name FROM items") == []


def _prepared(session: object, about: str = "") -> int:
    """How many statements the server holds prepared for this connection (those whose text has ``about``:
    asyncpg prepares every statement, this query among them)."""
    return int(
        session.fetchscalar(  # type: ignore[attr-defined]
            "SELECT count(*) FROM pg_prepared_statements WHERE strpos(statement, :about) > 0",
            {"about": about},
        )
    )


@pytest.mark.backends("postgresql", exact=True)  # psycopg 3's cache: psycopg2 prepares nothing
def test_postgresql_rollback_keeps_prepared_statements_when_no_schema_changed(
    backend: Backend, engine: Engine
) -> None:
    # psycopg prepares a statement on its fifth run and drops every prepared statement on any ROLLBACK it
    # sees; ours bypass it when nothing in the transaction could have changed the schema.
    for _ in range(2):
        with pytest.raises(ZeroDivisionError), engine as tx:
            for i in range(6):
                tx.execute("INSERT INTO items (id, name) VALUES (:id, :name)", {"id": i, "name": f"n{i}"})
            with engine as sp:  # a savepoint rolled back too
                sp.execute("UPDATE items SET qty = 1 WHERE id = 0")
                sp.rollback()
            raise ZeroDivisionError
    with engine as tx:
        assert _prepared(tx) >= 1
        assert tx.fetchscalar("SELECT count(*) FROM items") == 0


@pytest.mark.backends("postgresql")
def test_postgresql_rollback_after_ddl_drops_prepared_statements(backend: Backend, engine: Engine) -> None:
    # A table created in a rolled-back transaction and recreated with other columns: a statement prepared
    # against the first one must not be reused ("cached plan must not change result type").
    for columns in ("a INTEGER", "a INTEGER, b TEXT"):
        with pytest.raises(ZeroDivisionError), engine as tx:
            tx.execute(f"CREATE TABLE quirk_shape ({columns})")
            for i in range(6):
                tx.execute("INSERT INTO quirk_shape (a) VALUES (:a)", {"a": i})
                assert len(tx.fetchall("SELECT * FROM quirk_shape")[0]) == columns.count(",") + 1
            raise ZeroDivisionError
        with engine as tx:
            assert _prepared(tx, "quirk_shape") == 0


@pytest.mark.backends("postgresql")
def test_postgresql_failed_control_statement_keeps_the_driver_error_class(
    backend: Backend, engine: Engine
) -> None:
    with pytest.raises(TransactionStateError, match="no longer existed") as info, engine as tx:
        tx.execute("INSERT INTO items (id, name) VALUES (1, 'a')")
        with engine as sp:
            sp.execute("INSERT INTO items (id, name) VALUES (2, 'b')")
            cursor = tx.session.connection.cursor()
            cursor.execute("RELEASE SAVEPOINT txscope_sp1")  # behind the library's back
            cursor.close()
            sp.rollback()
        tx.execute("SELECT 1")  # the queued ROLLBACK TO goes out with this statement (psycopg: through libpq)
    # The driver's own exception class for the SQLSTATE, as execute() raises it (psycopg: made from libpq's
    # error result).
    cause = info.value.__cause__
    # asyncpg's classes end in "Error".
    assert type(cause).__name__.removesuffix("Error") == "InvalidSavepointSpecification"
    assert type(cause).__module__.split(".")[0] == dialect_for_url(backend.url).driver


# ------------------------------------------------------------------------ mysqlclient's transaction tracking
@pytest.mark.parametrize(
    ("sql", "effect"),
    [
        ("SELECT 1", None),
        ("  insert into items values (1, 'a', 1)", None),
        ("UPDATE items SET qty = 2", None),
        ("WITH x AS (SELECT 1) SELECT * FROM x", None),
        ("SAVEPOINT sp1", None),
        ("RELEASE SAVEPOINT sp1", None),
        ("ROLLBACK TO SAVEPOINT sp1", None),
        ("rollback work to sp1", None),
        ("BEGIN", True),
        ("begin work;", True),
        ("START TRANSACTION", True),
        ("COMMIT", False),
        ("ROLLBACK", False),
        ("commit work ;", False),
        ("START TRANSACTION READ ONLY", "unknown"),
        ("BEGIN NOT ATOMIC SELECT 1; END", "unknown"),  # MariaDB's compound statement
        ("COMMIT AND CHAIN", "unknown"),
        ("CREATE TABLE t (id INT)", "unknown"),
        ("SET autocommit = 1", "unknown"),
        ("CALL p()", "unknown"),
        ("LOCK TABLES items WRITE", "unknown"),
        ("/* a comment */ SELECT 1", "unknown"),
        ("SELECT 1; COMMIT", "unknown"),
        ("INSERT INTO items VALUES (1, 'a;b', 1)", "unknown"),  # a ';' in a literal: asking is exact too
        ("DROP TABLE t", "unknown"),
        ("DESCRIBE items", None),
        ("DROP TABLE t2", "unknown"),  # DO... and DROP share a prefix, not a word
    ],
)
def test_mysqlclient_statement_effects(sql: str, effect: object) -> None:
    from pytest_txscope.dialects.mysql_mysqldb import UNKNOWN, statement_effect

    assert statement_effect(sql) is (UNKNOWN if effect == "unknown" else effect)
    assert statement_effect(sql.encode()) is (UNKNOWN if effect == "unknown" else effect)


@pytest.mark.backends("mysql-mysqldb")
def test_mysqlclient_tracking_agrees_with_the_server(backend: Backend, engine: Engine) -> None:
    from pytest_txscope.dialects.mysql_mysqldb import ask_server

    dialect = dialect_for_url(backend.url)
    conn = dialect.connect_from_url(DatabaseURL.parse(backend.url), {})()
    seen = []

    def step(action: str) -> None:
        if action.startswith("conn."):
            getattr(conn, action[5:].split("(", maxsplit=1)[0])(*(True,) if "(True)" in action else ())
        else:
            cursor = conn.cursor()
            try:
                cursor.execute(action)
                while cursor.nextset():
                    pass
            except Exception as exc:  # failures leave the state to be asked
                seen.append(type(exc).__name__)
            cursor.close()
        tracked = dialect.in_transaction(conn)
        assert tracked == ask_server(conn), (action, tracked)

    try:
        for action in (
            "BEGIN",
            "INSERT INTO items (id, name) VALUES (1, 'a')",
            "SAVEPOINT sp1",
            "INSERT INTO items (id, name) VALUES (2, 'b')",
            "ROLLBACK TO SAVEPOINT sp1",
            "COMMIT",
            "SELECT 1",
            "BEGIN",
            "CREATE TEMPORARY TABLE quirk_tmp (id INT)",  # no implicit commit
            "CREATE TABLE quirk_ddl (id INT)",  # implicit commit
            "BEGIN",
            "SET autocommit = 1",  # commits
            "BEGIN",
            "INSERT INTO items (id, name) VALUES (1, 'duplicate')",  # fails, transaction goes on
            "SELECT 1; COMMIT",
            "BEGIN",
            "conn.commit()",
            "BEGIN",
            "conn.rollback()",
            "BEGIN",
            "conn.autocommit(True)",
            "BEGIN",
            "DROP TABLE quirk_ddl",
        ):
            step(action)
        assert seen == ["IntegrityError"]
    finally:
        conn.close()
        engine.executescript("DROP TABLE IF EXISTS quirk_ddl")


@pytest.mark.backends("postgresql", "mysql")
def test_autocommit_switched_off_on_the_driver_connection_is_put_back(
    backend: Backend, engine: Engine
) -> None:
    with engine as tx:
        conn = tx.session.connection
        tx.execute("INSERT INTO items (id, name) VALUES (1, 'a')")
        if backend.name == "postgresql-psycopg2":
            conn.set_session(autocommit=False)  # psycopg2 accepts it: it did not send the library's BEGIN
        elif backend.family == "mysql":
            conn.autocommit(False)  # commits the open transaction: reported at the block's end
    # psycopg 3 refuses the change inside a transaction; there is nothing to put back.
    with engine as tx:
        assert tx.session.connection is conn  # pooled, with autocommit on again
        on = conn.get_autocommit() if backend.family == "mysql" else conn.autocommit
        assert on
        tx.execute("DELETE FROM items")
