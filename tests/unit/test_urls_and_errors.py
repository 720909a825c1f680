"""URLs, engine construction, and the errors a user sees for bad input: each names the cause and the fix."""

from __future__ import annotations

import sqlite3
import sys

import pytest

from pytest_txscope import (
    ConfigurationError,
    DatabaseURL,
    Engine,
    MalformedURLError,
    MissingDriverError,
    TxScopeError,
    UnknownSchemeError,
)
from pytest_txscope.url import mask_password


@pytest.mark.parametrize(
    ("url", "family", "database"),
    [
        ("sqlite:///relative.db", "sqlite", "relative.db"),
        ("sqlite:////abs/path.db", "sqlite", "/abs/path.db"),
        ("sqlite:///:memory:", "sqlite", ":memory:"),
        ("sqlite://", "sqlite", ":memory:"),
        ("postgresql://u:pw@db.example:5433/app_test", "postgresql", "app_test"),
        ("postgres://u@localhost/app", "postgresql", "app"),
        ("mysql://root@127.0.0.1:3306/test", "mysql", "test"),
        ("mariadb://root:x@127.0.0.1/test", "mysql", "test"),
    ],
)
def test_url_forms(url: str, family: str, database: str) -> None:
    parsed = DatabaseURL.parse(url)
    assert (parsed.backend, parsed.database) == (family, database)


def test_url_parts_and_masked_rendering() -> None:
    url = DatabaseURL.parse("postgresql://alice:s3cret%21@db.example:5433/app_test?sslmode=require")
    assert (url.user, url.password, url.host, url.port) == ("alice", "s3cret!", "db.example", 5433)
    assert url.options == {"sslmode": "require"}
    assert str(url) == "postgresql://alice:***@db.example:5433/app_test?sslmode=require"
    assert "s3cret" not in repr(url)
    assert (
        str(url.with_database("other_test"))
        == "postgresql://alice:***@db.example:5433/other_test?sslmode=require"
    )


def test_unknown_scheme() -> None:
    with pytest.raises(UnknownSchemeError) as info:
        Engine.from_url("oracle://scott:tiger@host/db")
    assert str(info.value) == (
        "unknown database URL scheme 'oracle' in oracle://scott:***@host/db; use one of: sqlite://, sqlite3://, "
        "postgresql://, postgres://, mysql://, mariadb://"
    )
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, TxScopeError)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "localhost/db",
            "malformed database URL localhost/db: it has no scheme; write it like sqlite:///relative.db, "
            "sqlite:////absolute/path.db or sqlite:///:memory:, postgresql://user:password@localhost:5432/dbname, "
            "mysql://user:password@localhost:3306/dbname",
        ),
        (
            "postgresql://u:hunter2@host:port/db",
            "malformed database URL postgresql://u:***@host:port/db: Port could not be cast to integer value as "
            "'port'; write it like postgresql://user:password@localhost:5432/dbname",
        ),
        (
            "sqlite://host/x.db",
            "malformed database URL sqlite://host/x.db: the host part must be empty for SQLite; write it like "
            "sqlite:///relative.db, sqlite:////absolute/path.db or sqlite:///:memory:",
        ),
        (
            "mysql://root:pw@h/a/b",
            "malformed database URL mysql://root:***@h/a/b: database name 'a/b' contains '/'; write it like "
            "mysql://user:password@localhost:3306/dbname",
        ),
    ],
)
def test_malformed_urls(url: str, message: str) -> None:
    with pytest.raises(MalformedURLError) as info:
        DatabaseURL.parse(url)
    assert str(info.value) == message


def test_non_string_url() -> None:
    with pytest.raises(MalformedURLError, match=r"expected a string, got int"):
        DatabaseURL.parse(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "module", "extra", "display"),
    [
        ("postgresql://u:pw@localhost/db", "psycopg", "postgresql", "PostgreSQL"),
        ("mysql://u:pw@localhost/db", "pymysql", "mysql", "MySQL/MariaDB"),
    ],
)
def test_missing_driver_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, url: str, module: str, extra: str, display: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(MissingDriverError) as info:
        Engine.from_url(url)
    assert str(info.value) == (
        f"the {display} backend needs the {module!r} driver, which is not installed; "
        f"install it with: pip install 'pytest-txscope[{extra}]'"
    )
    assert isinstance(info.value, ImportError)
    assert info.value.name == module


def test_password_never_in_messages_or_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "Zq9-very-secret"
    monkeypatch.setitem(sys.modules, "psycopg", None)
    texts = [mask_password(f"postgresql://u:{secret}@h/db and mysql://r:{secret}@h/db")]
    for url in (f"postgresql://u:{secret}@h:notaport/db", f"nosuch://u:{secret}@h/db"):
        with pytest.raises(TxScopeError) as info:
            Engine.from_url(url)
        texts.append(str(info.value))
    with pytest.raises(MissingDriverError) as missing:
        Engine.from_url(f"postgresql://u:{secret}@h/db")
    texts.append(str(missing.value))
    url = DatabaseURL.parse(f"mysql://u:{secret}@h/db")
    texts += [str(url), repr(url)]
    assert all(secret not in t for t in texts), texts
    assert "***" in texts[0]


def test_unreachable_server_is_a_clear_error_without_the_password() -> None:
    pytest.importorskip("psycopg")
    from pytest_txscope import BackendUnavailableError

    # Port 9 (discard) is closed on loopback: the connection is refused at once.
    engine = Engine.from_url("postgresql://u:pw-not-shown@127.0.0.1:9/nodb_test", connect_timeout=2)
    with pytest.raises(BackendUnavailableError) as info, engine.session():
        pass
    message = str(info.value)
    assert message.startswith(
        "cannot connect to postgresql://u:***@127.0.0.1:9/nodb_test: OperationalError: "
    )
    assert message.endswith(
        "check that the server is running and the URL (host, port, user, database) is right"
    )
    assert "pw-not-shown" not in message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"nested": "sometimes"}, "nested='sometimes' is not valid; use one of: savepoint, virtual"),
        ({"pool_size": -1}, "pool_size=-1 is not valid; use a whole number >= 0"),
        ({"max_connections": 0}, "max_connections=0 is not valid; use None or >= 1"),
    ],
)
def test_bad_engine_options(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Engine.from_url("sqlite:///:memory:", **kwargs)
    assert str(info.value) == message


def test_engine_needs_a_callable() -> None:
    with pytest.raises(ConfigurationError, match=r"Engine\(\) needs a function that returns a new DB-API"):
        Engine("sqlite:///x.db")  # type: ignore[arg-type]


def test_from_dbapi_with_an_unknown_module() -> None:
    import json

    with pytest.raises(ConfigurationError) as info:
        Engine.from_dbapi(json)
    assert str(info.value) == (
        "Engine.from_dbapi() does not know the driver module 'json'; use one of: sqlite3, psycopg, pymysql, "
        "or pass a connect function to Engine()"
    )


def test_bad_sqlite_url_options(tmp_path: object) -> None:
    with pytest.raises(ConfigurationError, match=r"SQLite URL option foreign_keys='maybe' is not a boolean"):
        Engine.from_url("sqlite:///:memory:?foreign_keys=maybe")
    with pytest.raises(ConfigurationError) as info:
        Engine.from_url("sqlite:///:memory:?jurnal_mode=wal")
    assert str(info.value) == (
        "unknown SQLite URL option(s) jurnal_mode; known: foreign_keys=on|off, journal_mode=wal|delete|..., "
        "timeout=SECONDS"
    )


def test_engine_from_dbapi_and_from_a_callable(tmp_path: object) -> None:
    path = f"{tmp_path}/x.db"
    for engine in (
        Engine.from_dbapi(sqlite3, path),
        Engine(lambda: sqlite3.connect(path, check_same_thread=False)),
    ):
        with engine as tx:
            tx.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
            tx.execute("INSERT INTO t VALUES (1)")
        assert engine.dialect.name == "sqlite"
        engine.dispose()
    with Engine.from_url(f"sqlite:///{path}").session() as s:
        assert s.fetchscalar("SELECT count(*) FROM t") == 2


def test_sqlite_foreign_keys_are_on_by_default_and_can_be_turned_off() -> None:
    for option, expected in (("", 1), ("?foreign_keys=off", 0)):
        with Engine.from_url(f"sqlite:///:memory:{option}").session() as s:
            assert s.fetchscalar("PRAGMA foreign_keys") == expected
