"""Each test starts on a clean connection: session state the code changed, which the rollback at the end of a
test leaves in place, is undone before the next test gets the connection (found porting real applications:
``SET FOREIGN_KEY_CHECKS=0`` in one test let a later test's orphan insert through).

What a rollback leaves in place differs by backend: on MySQL/MariaDB session and user variables, temporary
tables and named locks; on PostgreSQL session advisory locks (SET, temporary tables and LISTEN are
transactional there); on SQLite PRAGMAs. The engines pool one connection, so the next sandbox gets the same one.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_txscope import Engine, Sandbox

from ..backends import Backend, Peer

# The state each backend keeps across a rollback, as code under test changes it.
CHANGES = {
    "mysql": [
        "SET FOREIGN_KEY_CHECKS=0, @who = 'test one'",
        "SET sql_mode=''",
        "CREATE TEMPORARY TABLE scratch (x INT)",
        "SELECT GET_LOCK('txscope_clean', 0)",
        "SELECT @n := 41 + 1",
    ],
    "postgresql": ["SELECT pg_advisory_lock(4242)"],
    "sqlite": [
        "PRAGMA case_sensitive_like = ON",
        "PRAGMA recursive_triggers = 1",
        "PRAGMA foreign_keys = OFF",
    ],
}
# What the next test sees of that state; one row.
READ = {
    "mysql": "SELECT @@foreign_key_checks, @@sql_mode, @who, @n, IS_USED_LOCK('txscope_clean') IS NULL",
    "postgresql": "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
    "sqlite": "SELECT 'a' LIKE 'A', (SELECT recursive_triggers FROM pragma_recursive_triggers), "
    "(SELECT foreign_keys FROM pragma_foreign_keys)",
}


def state(engine: Engine, family: str) -> tuple[Any, ...]:
    with engine as tx:
        row = tx.execute(READ[family]).fetchone()
    return tuple(row)


def change_state(engine: Engine, family: str) -> None:
    with engine as tx:  # the application's unit of work, committed: a savepoint released
        for statement in CHANGES[family]:
            tx.execute(statement)


def test_session_state_changed_in_one_test_is_gone_in_the_next(backend: Backend, engine: Engine) -> None:
    family = backend.family
    with Sandbox(engine):
        clean = state(engine, family)
    with Sandbox(engine):
        change_state(engine, family)
        assert state(engine, family) != clean  # what the test changed, it sees
    with Sandbox(engine):  # the same pooled connection
        assert state(engine, family) == clean
        if family == "mysql":
            with pytest.raises(Exception, match="scratch"), engine as tx:
                tx.execute("SELECT x FROM scratch")


def test_session_state_is_undone_between_tests_nested_in_a_wider_sandbox(
    backend: Backend, engine: Engine
) -> None:
    family = backend.family
    with Sandbox(engine):  # a module's sandbox: its tests share its connection and transaction
        with Sandbox(engine):
            clean = state(engine, family)
        with Sandbox(engine):
            change_state(engine, family)
        with Sandbox(engine):
            assert state(engine, family) == clean


@pytest.mark.backends("postgresql", "mysql")
def test_a_lock_the_test_took_is_free_for_others_once_it_ended(engine: Engine, peer: Peer) -> None:
    take, probe = {
        "postgresql": ("SELECT pg_advisory_lock(4242)", "SELECT pg_try_advisory_lock(4242)"),
        "mysql": ("SELECT GET_LOCK('txscope_clean', 0)", "SELECT GET_LOCK('txscope_clean', 0)"),
    }[peer.family]
    with Sandbox(engine), engine as tx:
        tx.execute(take)
    with Sandbox(engine):  # the connection went back to the pool, and came back
        assert peer.fetchall(probe) == [(1,) if peer.family == "mysql" else (True,)]


@pytest.mark.backends("mysql")
def test_a_change_no_statement_can_undo_drops_the_connection(engine: Engine) -> None:
    with Sandbox(engine) as sandbox, engine as tx:
        first = sandbox.session().connection
        tx.execute("SET ROLE NONE")
    with Sandbox(engine) as sandbox:
        assert sandbox.session().connection is not first


@pytest.mark.backends("mysql")
def test_a_character_set_change_is_undone_and_the_connection_kept(engine: Engine) -> None:
    """SQLAlchemy's MySQL dialect sends SET NAMES on every new connection: dropping the connection for it
    made every test of an app on a pinned engine reconnect (about 90 ms each with PyMySQL's SSL set-up)."""
    charsets = "SELECT @@character_set_client, @@character_set_results, @@collation_connection"
    with Sandbox(engine) as sandbox, engine as tx:
        first = sandbox.session().connection
        clean = tx.execute(charsets).fetchone()
        tx.execute("SET NAMES latin1 COLLATE latin1_bin")
        assert tx.execute(charsets).fetchone() == ("latin1", "latin1", "latin1_bin")
    with Sandbox(engine) as sandbox, engine as tx:
        assert sandbox.session().connection is first
        assert tx.execute(charsets).fetchone() == clean


@pytest.mark.backends("mysql")
def test_under_the_plugin_a_test_that_turned_foreign_key_checks_off_leaves_them_on_for_the_next(
    pytester: pytest.Pytester, backend: Backend, engine: Engine
) -> None:
    engine.executescript(
        "DROP TABLE IF EXISTS kids; DROP TABLE IF EXISTS folks; CREATE TABLE folks (id INT PRIMARY KEY); "
        "CREATE TABLE kids (id INT PRIMARY KEY, folk_id INT, FOREIGN KEY (folk_id) REFERENCES folks (id))"
    )
    pytester.makefile(".ini", pytest=f"[pytest]\ntxscope_url = {backend.url}\naddopts = -p no:randomly\n")
    pytester.makepyfile(
        test_app="""
import pytest


def test_1_loads_data_without_checks(db_session):
    db_session.execute("SET FOREIGN_KEY_CHECKS=0")
    db_session.execute("INSERT INTO kids (id, folk_id) VALUES (1, 404)")


def test_2_an_orphan_is_refused(db_session):
    with pytest.raises(Exception, match="foreign key constraint fails"):
        db_session.execute("INSERT INTO kids (id, folk_id) VALUES (2, 404)")
"""
    )
    try:
        pytester.runpytest().assert_outcomes(passed=2)
    finally:
        engine.executescript("DROP TABLE kids; DROP TABLE folks")
