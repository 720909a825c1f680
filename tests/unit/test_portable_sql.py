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
