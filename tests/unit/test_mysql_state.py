"""How MySQL/MariaDB session state a test changed is undone: the statements worked out from the test's own
statement, before it runs (the contract tests check them against the servers)."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_txscope.dialects.mysql_state import undo_mysql_state, watch_mysql


def undo(sql: str, values: tuple[Any, ...] = ()) -> list[str] | None:
    asked: list[str] = []

    def read(query: str) -> tuple[Any, ...]:
        asked.append(query)
        return values

    result = undo_mysql_state(sql, read, lambda text: "'" + text.replace("'", "''") + "'")
    assert len(asked) <= 1  # one round trip at most, for the variables' current values
    return result


@pytest.mark.parametrize(
    ("sql", "watched"),
    [
        ("SET FOREIGN_KEY_CHECKS=0", True),
        ("  set @x = 1", True),
        ("SELECT @n := 1", True),
        ("SELECT id INTO @id FROM t", True),
        ("CREATE TEMPORARY TABLE t (x INT)", True),
        ("SELECT GET_LOCK('a', 1)", True),
        ("UPDATE t SET x = 1", False),
        ("INSERT INTO t SET x = 1", False),
        ("SELECT @@sql_mode", False),
    ],
)
def test_the_watch_flags_only_statements_that_may_change_session_state(sql: str, watched: bool) -> None:
    assert bool(watch_mysql(sql)) is watched


def test_session_variables_are_set_back_to_the_values_read_before() -> None:
    sql = "SET @old = @@FOREIGN_KEY_CHECKS, FOREIGN_KEY_CHECKS = 0, SESSION sql_mode = CONCAT('A,B', @@sql_mode)"
    assert undo(sql, (1, "STRICT_TRANS_TABLES")) == [
        "SET @old = NULL",
        "SET @@SESSION.FOREIGN_KEY_CHECKS = 1, @@SESSION.sql_mode = 'STRICT_TRANS_TABLES'",
    ]


def test_user_variables_temporary_tables_and_locks() -> None:
    assert undo("SELECT @a := 1, GET_LOCK('x', 0)") == ["SELECT RELEASE_ALL_LOCKS()", "SET @a = NULL"]
    assert undo("SELECT 1, 2 INTO @a, @b") == ["SET @a = NULL", "SET @b = NULL"]
    assert undo("CREATE TEMPORARY TABLE IF NOT EXISTS `s p` (x INT)") == [
        "DROP TEMPORARY TABLE IF EXISTS `s p`"
    ]


def test_what_is_not_the_sessions_or_lasts_one_statement_needs_no_undoing() -> None:
    assert undo("SET GLOBAL max_connections = 200") == []
    assert undo("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE") == []
    assert undo("SET STATEMENT max_statement_time=1 FOR SELECT 1") == []


def test_what_no_statement_can_undo_drops_the_connection() -> None:
    assert undo("SET ROLE NONE") is None


def test_a_character_set_change_is_undone_by_restoring_the_four_variables_it_changes() -> None:
    restore = (
        "SET @@SESSION.character_set_client = 'v1', @@SESSION.character_set_connection = 'v2', "
        "@@SESSION.character_set_results = 'v3', @@SESSION.collation_connection = 'v4'"
    )
    values = ("v1", "v2", "v3", "v4")
    assert undo("SET NAMES utf8mb4", values) == [restore]
    assert undo("SET NAMES latin1 COLLATE latin1_bin", values) == [restore]
    assert undo("SET CHARACTER SET utf8", values) == [restore]
