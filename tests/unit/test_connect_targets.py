"""What a driver's connect() call targets, and whether that is the test database (no database needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_txscope import DatabaseURL
from pytest_txscope.intercept_targets import target_of

PG = DatabaseURL.parse("postgresql://postgres@127.0.0.1:5432/app_test")
MY = DatabaseURL.parse("mysql://root@127.0.0.1/app_test")


@pytest.mark.parametrize(
    ("driver", "args", "kwargs", "url", "matches"),
    [
        ("psycopg", ("host=localhost dbname=app_test user=app",), {}, PG, True),  # the user is not compared
        ("psycopg", ("postgresql://app@[::1]:5432/app_test",), {}, PG, True),
        ("psycopg", ("",), {"host": "/var/run/postgresql", "dbname": "app_test"}, PG, True),
        ("psycopg", ("dbname=app_test port=5433",), {}, PG, False),  # another server
        ("psycopg", ("dbname=app",), {}, PG, False),  # another database
        ("psycopg", (), {"host": "db.example", "dbname": "app_test"}, PG, False),
        ("psycopg2", ("host=127.0.0.1 dbname=app_test",), {}, PG, True),
        ("psycopg2", (), {"host": "localhost", "database": "app_test", "user": "x"}, PG, True),
        ("pymysql", (), {"host": "localhost", "user": "app", "database": "app_test"}, MY, True),
        ("pymysql", (), {"host": "127.0.0.1", "port": 3307, "db": "app_test"}, MY, False),
        ("MySQLdb", ("localhost", "root", "", "app_test"), {}, MY, True),
        ("MySQLdb", (), {"unix_socket": "/run/mysqld/mysqld.sock", "db": "app_test"}, MY, True),
        ("MySQLdb", (), {"db": "other"}, MY, False),
        ("sqlite3", ("x.db",), {}, PG, False),  # another backend
    ],
)
def test_server_targets(
    driver: str, args: tuple[Any, ...], kwargs: dict[str, Any], url: DatabaseURL, matches: bool
) -> None:
    target = target_of(driver, args, kwargs)
    assert target is not None
    assert target.matches(url) is matches


def test_postgresql_falls_back_on_libpq_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGDATABASE", "app_test")
    monkeypatch.setenv("PGHOST", "127.0.0.1")
    target = target_of("psycopg", (), {})
    assert target is not None
    assert target.matches(PG)


def test_sqlite_paths_are_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = DatabaseURL.parse(f"sqlite:///{tmp_path / 'app.db'}")
    for args, kwargs in [
        (("app.db",), {}),
        ((tmp_path / "app.db",), {}),
        ((f"file:{tmp_path / 'app.db'}?mode=rw",), {"uri": True}),
        ((), {"database": str(tmp_path / "sub" / ".." / "app.db"), "detect_types": 1}),
    ]:
        target = target_of("sqlite3", args, kwargs)
        assert target is not None
        assert target.matches(url), (args, kwargs)
    other = target_of("sqlite3", ("other.db",), {})
    assert other is not None
    assert not other.matches(url)
    # In-memory databases are private to their connection: never the test database.
    assert target_of("sqlite3", (":memory:",), {}) is None
    assert target_of("sqlite3", ("file:x?mode=memory",), {"uri": True}) is None


def test_the_call_keywords_are_kept_for_the_face() -> None:
    target = target_of("sqlite3", ("app.db", 5.0, 1), {"isolation_level": None})
    assert target is not None
    assert target.connect_kwargs == {
        "database": "app.db",
        "timeout": 5.0,
        "detect_types": 1,
        "isolation_level": None,
    }
