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
    UnknownDriverError,
    UnknownSchemeError,
    UnsupportedConnectionError,
)
from pytest_txscope.dialects import (
    DIALECTS,
    MySQLdbDialect,
    dialect_for_backend,
    dialect_for_connection,
    dialect_for_module,
    dialect_for_url,
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


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg2://app:p%40ss%2Fw%3Ard@db.example:5433/shop_test?sslmode=require",
        "mysql://root@127.0.0.1/shop_test",
        "postgresql:///shop_test",
        "sqlite:////tmp/shop_test.db?journal_mode=wal",
        "sqlite:///:memory:",
    ],
)
def test_revealed_text_parses_back_to_the_same_url(url: str) -> None:
    # What txscope_env's {url} gives the application: the password included, percent-encoded.
    parsed = DatabaseURL.parse(url)
    assert DatabaseURL.parse(parsed.revealed()) == parsed
    assert parsed.password is None or parsed.password == "p@ss/w:rd"


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
        "Engine.from_dbapi() does not know the driver module 'json'; use one of: sqlite3, psycopg, psycopg2, "
        "asyncpg, pymysql, MySQLdb, "
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


# ------------------------------------------------------------------------------------- drivers in URLs
@pytest.mark.parametrize(
    ("url", "family", "driver", "dialect"),
    [
        ("sqlite:///x.db", "sqlite", None, "SQLiteDialect"),
        ("sqlite+pysqlite:///x.db", "sqlite", "pysqlite", "SQLiteDialect"),
        ("sqlite3+pysqlite:///:memory:", "sqlite", "pysqlite", "SQLiteDialect"),
        ("postgresql://u@h/db", "postgresql", None, "PostgreSQLDialect"),
        ("postgres://u@h/db", "postgresql", None, "PostgreSQLDialect"),
        ("postgresql+psycopg://u@h/db", "postgresql", "psycopg", "PostgreSQLDialect"),
        ("postgresql+psycopg2://u@h/db", "postgresql", "psycopg2", "Psycopg2Dialect"),
        ("postgres+psycopg2://u@h/db", "postgresql", "psycopg2", "Psycopg2Dialect"),
        ("PostgreSQL+Psycopg2://u@h/db", "postgresql", "psycopg2", "Psycopg2Dialect"),
        ("mysql://u@h/db", "mysql", None, "MySQLDialect"),
        ("mariadb://u@h/db", "mysql", None, "MySQLDialect"),
        ("mysql+pymysql://u@h/db", "mysql", "pymysql", "MySQLDialect"),
        ("mariadb+pymysql://u@h/db", "mysql", "pymysql", "MySQLDialect"),
        ("mysql+mysqldb://u@h/db", "mysql", "mysqldb", "MySQLdbDialect"),
        ("mariadb+mysqldb://u@h/db", "mysql", "mysqldb", "MySQLdbDialect"),
    ],
)
def test_every_scheme_names_its_backend_and_driver(
    url: str, family: str, driver: str | None, dialect: str
) -> None:
    parsed = DatabaseURL.parse(url)
    assert (parsed.backend, parsed.driver) == (family, driver)
    assert type(dialect_for_url(parsed)).__name__ == dialect
    assert type(dialect_for_url(url)).__name__ == dialect
    assert str(parsed).partition("://")[0] == url.partition("://")[0]  # the scheme is shown as written
    assert DatabaseURL.parse(str(parsed)) == parsed
    assert parsed.with_database("other").driver == driver


def test_the_default_drivers() -> None:
    assert type(dialect_for_backend("postgresql")).__name__ == "PostgreSQLDialect"
    assert type(dialect_for_backend("mysql")).__name__ == "MySQLDialect"
    assert type(dialect_for_backend("sqlite")).__name__ == "SQLiteDialect"


def test_every_driver_the_urls_accept_has_a_dialect() -> None:
    from pytest_txscope.url import DRIVERS

    pairs = {(backend, driver) for backend, drivers in DRIVERS.items() for driver in drivers}
    assert set(DIALECTS) == pairs
    for (backend, driver), dialect in DIALECTS.items():
        assert (dialect.name, dialect.url_driver) == (backend, driver)
        assert dialect_for_module(dialect.driver) is dialect
    assert dialect_for_module("json") is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "postgresql+pg8000://u:hunter2@h/db",
            "unknown driver 'pg8000' in database URL postgresql+pg8000://u:***@h/db; for this database use one of: "
            "postgresql+psycopg://, postgresql+psycopg2://, postgresql+asyncpg://, postgresql+psycopg_async:// (the "
            "first is the default, also used when the scheme names no driver)",
        ),
        (
            "mariadb+mysqlconnector://u:hunter2@h/db",
            "unknown driver 'mysqlconnector' in database URL mariadb+mysqlconnector://u:***@h/db; for this "
            "database use one of: mariadb+pymysql://, mariadb+mysqldb://, mariadb+aiomysql:// (the first is the "
            "default, also used when the scheme names no driver)",
        ),
        (
            "sqlite+pysqlcipher:///x.db",
            "unknown driver 'pysqlcipher' in database URL sqlite+pysqlcipher:///x.db; for this database use one "
            "of: sqlite+pysqlite://, sqlite+aiosqlite:// (the first is the default, also used when the scheme "
            "names no driver)",
        ),
        (
            "postgresql+://u@h/db",
            "unknown driver '' in database URL postgresql+://u@h/db; for this database use one of: "
            "postgresql+psycopg://, postgresql+psycopg2://, postgresql+asyncpg://, postgresql+psycopg_async:// (the "
            "first is the default, also used when the scheme names no driver)",
        ),
    ],
)
def test_unknown_driver(url: str, message: str) -> None:
    with pytest.raises(UnknownDriverError) as info:
        DatabaseURL.parse(url)
    assert str(info.value) == message
    assert isinstance(info.value, UnknownSchemeError)  # caught where an unknown scheme is
    assert isinstance(info.value, ValueError)
    assert "hunter2" not in repr(info.value.args)


@pytest.mark.parametrize(
    ("url", "driver", "served_by"),
    [
        ("sqlite+aiosqlite:///x.db", "aiosqlite", "pysqlite"),
        ("postgresql+psycopg_async://u:hunter2@h:5433/db", "psycopg_async", "psycopg"),
        ("mariadb+aiomysql://u@h/db", "aiomysql", "pymysql"),
        ("postgresql+psycopg2://u@h/db", "psycopg2", "psycopg2"),
        ("postgresql://u@h/db", None, None),
    ],
)
def test_async_driver_spellings_parse_and_name_their_sync_twin(
    url: str, driver: str | None, served_by: str | None
) -> None:
    parsed = DatabaseURL.parse(url)
    assert (parsed.driver, parsed.sync_driver) == (driver, served_by)
    assert str(parsed) == url.replace("hunter2", "***")  # the spelling is kept as written
    if driver == "psycopg_async":  # urlsplit takes no "_" in a scheme: the parts still come out right
        assert (parsed.host, parsed.port, parsed.user, parsed.database) == ("h", 5433, "u", "db")


def test_unknown_scheme_with_a_driver() -> None:
    with pytest.raises(UnknownSchemeError) as info:
        DatabaseURL.parse("oracle+cx_oracle://scott:tiger@h/db")
    assert str(info.value).startswith(
        "unknown database URL scheme 'oracle+cx_oracle' in oracle+cx_oracle://scott:***@h/db; use one of: "
    )
    assert not isinstance(info.value, UnknownDriverError)


@pytest.mark.parametrize(
    ("url", "module", "extra", "display", "hint"),
    [
        ("postgresql+psycopg://u:pw@localhost/db", "psycopg", "postgresql", "PostgreSQL", ""),
        ("postgresql+psycopg2://u:pw@localhost/db", "psycopg2", "psycopg2", "PostgreSQL", ""),
        ("mysql+pymysql://u:pw@localhost/db", "pymysql", "mysql", "MySQL/MariaDB", ""),
        (
            "mariadb+mysqldb://u:pw@localhost/db",
            "MySQLdb",
            "mysqlclient",
            "MySQL/MariaDB",
            " (mysqlclient compiles against the MariaDB or MySQL client library: on Debian or Ubuntu run "
            "apt-get install libmariadb-dev pkg-config first)",
        ),
    ],
)
def test_missing_driver_of_a_url_names_its_extra(
    monkeypatch: pytest.MonkeyPatch, url: str, module: str, extra: str, display: str, hint: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    dialect = dialect_for_url(url)
    with pytest.raises(MissingDriverError) as info:
        dialect.connect_from_url(DatabaseURL.parse(url), {})
    assert str(info.value) == (
        f"the {display} backend needs the {module!r} driver, which is not installed; "
        f"install it with: pip install 'pytest-txscope[{extra}]'{hint}"
    )
    assert info.value.name == module


@pytest.mark.parametrize(
    ("url", "module", "extra", "display"),
    [
        ("sqlite+aiosqlite:///x.db", "aiosqlite", "aiosqlite", "SQLite"),
        ("mysql+aiomysql://u:pw@localhost/db", "aiomysql", "aiomysql", "MySQL/MariaDB"),
        ("postgresql+psycopg_async://u:pw@localhost/db", "psycopg", "postgresql", "PostgreSQL"),
    ],
)
def test_missing_asyncio_driver_of_a_url_names_its_extra(
    monkeypatch: pytest.MonkeyPatch, url: str, module: str, extra: str, display: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(MissingDriverError) as info:
        dialect_for_url(url).connect_async(DatabaseURL.parse(url), {})
    assert str(info.value) == (
        f"the {display} backend needs the {module!r} driver, which is not installed; "
        f"install it with: pip install 'pytest-txscope[{extra}]'"
    )


def test_pymysql_posing_as_mysqldb_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    pymysql = pytest.importorskip("pymysql")
    monkeypatch.setitem(sys.modules, "MySQLdb", pymysql)  # what pymysql.install_as_MySQLdb() does
    with pytest.raises(
        ConfigurationError, match=r"the module imported as MySQLdb is 'pymysql', not mysqlclient"
    ):
        MySQLdbDialect().connect_from_url(DatabaseURL.parse("mysql+mysqldb://u@h/db"), {})


@pytest.mark.parametrize(
    "text",
    [
        "postgresql+psycopg2://u:{pw}@h:5432/db",
        "mariadb+mysqldb://u:{pw}@h/db",
        "postgresql://u@h/db?password={pw}",
        "postgresql+psycopg2://u@h/db?sslmode=require&password={pw}",
        "mysql+mysqldb://u@h/db?passwd={pw}&charset=utf8mb4",
        "mysql://u@h/db?PWD={pw}",
        "postgresql+psycopg2://u:{pw}@h/db?password={pw}",
    ],
)
def test_the_password_is_masked_in_every_url_form(text: str) -> None:
    secret = "Zq9-very-secret"
    raw = text.format(pw=secret)
    url = DatabaseURL.parse(raw)
    assert url.password == secret or secret in url.options.values()
    shown = [str(url), repr(url), url.render(), str(url.with_database("x")), mask_password(raw)]
    shown.append(mask_password(f"see {raw} and {raw}"))
    assert all(secret not in s for s in shown), shown
    assert all("***" in s for s in shown), shown


def test_masking_keeps_other_options() -> None:
    url = DatabaseURL.parse("postgresql://u@h/db?sslmode=require&password=pw1&application_name=app")
    assert str(url) == "postgresql://u@h/db?sslmode=require&password=***&application_name=app"
    assert (
        mask_password("mysql://u@h/db?passwd=pw1&charset=utf8mb4")
        == "mysql://u@h/db?passwd=***&charset=utf8mb4"
    )
    assert url.options["password"] == "pw1"  # what the driver gets


def test_malformed_url_with_a_query_password_is_masked() -> None:
    with pytest.raises(MalformedURLError) as info:
        DatabaseURL.parse("postgresql+psycopg2://u@h:notaport/db?password=Zq9-very-secret")
    assert "Zq9-very-secret" not in str(info.value)


def test_dialect_for_connection_knows_every_driver(tmp_path: object) -> None:
    # Only the class decides, so objects of the drivers' classes made without a server do.
    assert type(dialect_for_connection(sqlite3.connect(":memory:"))).__name__ == "SQLiteDialect"
    with pytest.raises(
        UnsupportedConnectionError, match=r"sqlite3, psycopg, psycopg2, asyncpg, PyMySQL, mysqlclient$"
    ):
        dialect_for_connection(object())
