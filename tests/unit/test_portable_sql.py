"""One SQL text for every backend: placeholder rewriting, script splitting, and the same text on each database."""

from __future__ import annotations

import pytest

from pytest_txscope import Engine, ParameterError
from pytest_txscope.sql import PyformatConverter, split_statements

PG = PyformatConverter(backslash_escapes=False, hash_comments=False)
MY = PyformatConverter(backslash_escapes=True, hash_comments=True)


@pytest.mark.parametrize(
    ("sql", "params", "expected"),
    [
        ("SELECT :a, :b", {"a": 1, "b": 2}, "SELECT %(a)s, %(b)s"),
        ("SELECT ?, ?", (1, 2), "SELECT %s, %s"),
        ("SELECT x::text FROM t WHERE y = :y", {"y": 1}, "SELECT x::text FROM t WHERE y = %(y)s"),
        ("SELECT ':not' , '%' , :v", {"v": 1}, "SELECT ':not' , '%%' , %(v)s"),
        (
            "SELECT \"col:x\" FROM t WHERE a LIKE 'a%' AND b = ?",
            [1],
            "SELECT \"col:x\" FROM t WHERE a LIKE 'a%%' AND b = %s",
        ),
        ("SELECT 1 -- :c ? comment\n, :d", {"d": 1}, "SELECT 1 -- :c ? comment\n, %(d)s"),
        ("SELECT /* :c ? */ :d", {"d": 1}, "SELECT /* :c ? */ %(d)s"),
        ("SELECT $$ :x ? $$, :y", {"y": 1}, "SELECT $$ :x ? $$, %(y)s"),
        ("SELECT $fn$ it's :x $fn$, ?", [1], "SELECT $fn$ it's :x $fn$, %s"),
        ("SELECT 'it''s :x', :y", {"y": 1}, "SELECT 'it''s :x', %(y)s"),
        ("SELECT 5 % 2, :y", {"y": 1}, "SELECT 5 %% 2, %(y)s"),
        (
            "SELECT data ? 'key' FROM t WHERE id = :id",
            {"id": 1},
            "SELECT data ? 'key' FROM t WHERE id = %(id)s",
        ),
    ],
)
def test_postgresql_rewriting(sql: str, params: object, expected: str) -> None:
    assert PG.convert(sql, params)[0] == expected


def test_mysql_backslash_escapes_and_hash_comments() -> None:
    assert MY.convert("SELECT 'a\\':x', :y # :z ?\n", {"y": 1})[0] == "SELECT 'a\\':x', %(y)s # :z ?\n"
    assert MY.convert("SELECT `we:ird` FROM t WHERE a = ?", [1])[0] == "SELECT `we:ird` FROM t WHERE a = %s"


def test_postgresql_escape_strings() -> None:
    assert PG.convert("SELECT E'a\\':x', :y", {"y": 1})[0] == "SELECT E'a\\':x', %(y)s"


def test_without_parameters_the_text_is_untouched() -> None:
    assert PG.convert("SELECT '%' , :x, ?", None) == ("SELECT '%' , :x, ?", None)


def test_missing_named_parameter() -> None:
    with pytest.raises(ParameterError) as info:
        PG.convert("SELECT :a, :b, :c", {"a": 1})
    assert str(info.value) == (
        "no value for placeholder(s) :b, :c in 'SELECT :a, :b, :c'; pass them in the parameter mapping"
    )


def test_wrong_number_of_positional_parameters() -> None:
    with pytest.raises(ParameterError) as info:
        PG.convert("SELECT ?, ?", [1])
    assert str(info.value) == (
        "'SELECT ?, ?' has 2 '?' placeholder(s) but 1 parameter(s) were given; pass one value per '?', "
        "or use :name placeholders with a mapping"
    )


def test_parameters_of_the_wrong_type() -> None:
    with pytest.raises(ParameterError, match=r"parameters must be a mapping .* not str"):
        PG.convert("SELECT ?", "x")


def test_split_statements() -> None:
    script = """
        CREATE TABLE a (x TEXT DEFAULT ';');  -- trailing ; comment
        /* ; */
        CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;
        ;
        INSERT INTO a VALUES ('it''s; fine')
    """
    assert split_statements(script) == [
        "CREATE TABLE a (x TEXT DEFAULT ';')",
        "-- trailing ; comment\n        /* ; */\n"
        "        CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql",
        "INSERT INTO a VALUES ('it''s; fine')",
    ]


PORTABLE_INSERT = "INSERT INTO items (id, name, qty) VALUES (:id, :name, :qty)"


def test_one_text_runs_unchanged_on_every_backend(engine: Engine) -> None:
    with engine as tx:
        tx.execute(PORTABLE_INSERT, {"id": 1, "name": "50% off: 'quoted'", "qty": 3})
        tx.executemany("INSERT INTO items (id, name, qty) VALUES (?, ?, ?)", [(2, "b", 5), (3, "c", 7)])
        assert tx.fetchone("SELECT name, qty FROM items WHERE id = ?", [1]) == ("50% off: 'quoted'", 3)
        assert tx.fetchscalar("SELECT count(*) FROM items WHERE name LIKE '%' AND qty > :q", {"q": 4}) == 2
        assert tx.fetchall("SELECT id FROM items WHERE qty BETWEEN ? AND ? ORDER BY id", (4, 8)) == [
            (2,),
            (3,),
        ]
        assert tx.fetchone("SELECT id FROM items WHERE id = :id", {"id": 99}) is None
        assert tx.fetchscalar("SELECT id FROM items WHERE id = :id", {"id": 99}) is None
        cursor = tx.execute("UPDATE items SET qty = qty + 1 WHERE qty > :q", {"q": 4})
        assert cursor.rowcount == 2


def test_executemany_checks_every_row(engine: Engine) -> None:
    rows = [{"id": 1, "name": "a", "qty": 1}, {"id": 2, "name": "b"}]
    with engine as tx:
        with pytest.raises(ParameterError, match=r"no value for placeholder\(s\) :qty"):
            tx.executemany(PORTABLE_INSERT, rows)
        assert tx.fetchscalar("SELECT count(*) FROM items") == 0


SQLITE_TRIGGER = """CREATE TRIGGER audit AFTER INSERT ON t FOR EACH ROW WHEN NEW.n > 0 BEGIN
  INSERT INTO log VALUES ('n; ' || NEW.n);
  UPDATE t SET n = CASE WHEN n > 5 THEN 5 ELSE n END WHERE id = NEW.id;
END"""
MYSQL_PROCEDURE = """CREATE DEFINER=`root`@`%` PROCEDURE p(IN x INT)
BEGIN
  DECLARE c INT DEFAULT 0;
  IF x > 0 THEN SET c = 1; END IF;
  lbl: LOOP LEAVE lbl; END LOOP lbl;
  CASE c WHEN 1 THEN SELECT 1; ELSE BEGIN END; END CASE;
END"""
PG_ATOMIC = """CREATE OR REPLACE FUNCTION f(a int) RETURNS int LANGUAGE sql
BEGIN ATOMIC
  SELECT CASE WHEN a > 0 THEN 1 END;
END"""


@pytest.mark.parametrize(
    ("body", "options"),
    [
        (SQLITE_TRIGGER, {}),
        (PG_ATOMIC, {}),
        ("CREATE TEMP TRIGGER t1 BEFORE DELETE ON t BEGIN SELECT RAISE(ABORT, 'no'); END", {}),
        (MYSQL_PROCEDURE, {"backslash_escapes": True, "hash_comments": True, "mysql_client": True}),
        ("BEGIN NOT ATOMIC SELECT 1; SELECT 2; END", {"mysql_client": True}),
    ],
    ids=["sqlite-trigger", "postgresql-begin-atomic", "temp-trigger", "mysql-procedure", "mariadb-block"],
)
def test_a_routine_body_is_one_statement(body: str, options: dict[str, bool]) -> None:
    script = f"CREATE TABLE t (id INT, begin_at INT, n INT);\n{body};\nSELECT 1;"
    assert split_statements(script, **options) == [
        "CREATE TABLE t (id INT, begin_at INT, n INT)",
        body,
        "SELECT 1",
    ]


def test_begin_and_end_outside_routines_are_statements_of_their_own() -> None:
    # SQLite's BEGIN / END (= COMMIT), and CASE ... END in a plain query, split as before.
    assert split_statements("BEGIN; SELECT CASE WHEN 1 THEN 2 END; END; SELECT 3") == [
        "BEGIN",
        "SELECT CASE WHEN 1 THEN 2 END",
        "END",
        "SELECT 3",
    ]


def test_mysql_delimiter_lines_work_as_in_the_mysql_client() -> None:
    # What mysqldump writes around a trigger; the DELIMITER lines are client commands and are not sent.
    script = """DROP TABLE IF EXISTS t;
/*!40101 SET @saved = @@sql_mode */;
DELIMITER ;;
/*!50003 CREATE*/ /*!50003 TRIGGER tr BEFORE INSERT ON t FOR EACH ROW SET NEW.n = 1 */;;
CREATE PROCEDURE p() BEGIN SELECT '$$'; SELECT 2; END ;;
DELIMITER ;
-- back to ;
SELECT 1; delimiter //
SELECT 2//
"""
    assert split_statements(script, backslash_escapes=True, hash_comments=True, mysql_client=True) == [
        "DROP TABLE IF EXISTS t",
        "/*!40101 SET @saved = @@sql_mode */",
        "/*!50003 CREATE*/ /*!50003 TRIGGER tr BEFORE INSERT ON t FOR EACH ROW SET NEW.n = 1 */",
        "CREATE PROCEDURE p() BEGIN SELECT '$$'; SELECT 2; END",
        "-- back to ;\nSELECT 1",
        "SELECT 2",
    ]


def test_sqlite_agrees_each_split_statement_is_complete() -> None:
    import sqlite3

    script = f"CREATE TABLE t (id INT, n INT);\nCREATE TABLE log (msg TEXT);\n{SQLITE_TRIGGER};\nSELECT 1;"
    statements = split_statements(script)
    assert len(statements) == 4
    assert all(sqlite3.complete_statement(s + ";") for s in statements)
    assert not sqlite3.complete_statement(
        SQLITE_TRIGGER.split(";", maxsplit=1)[0] + ";"
    )  # what the old split sent
