"""PostgreSQL through asyncpg (``postgresql+asyncpg://``), behind `AsyncpgAdapter`'s DB-API face.

asyncpg is an asyncio driver with no sync twin: a sync `Engine` (a sandbox) runs its connections on the driver
loop (`pytest_txscope.bridge.driver_loop`), the asyncio API on the caller's loop. The SQL, error codes and
transaction states are PostgreSQL's (`PostgreSQLBackend`); the adapter supplies the status libpq would report.

Control statements queued before a statement are not combined with it (`combines_control` is False): asyncpg
sends a text with several statements only through the simple query protocol, which returns no rows and takes no
parameters, so the statement after the control would lose its result. They go in a round trip of their own,
batched into one text.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from ..bridge import LoopRunner, driver_loop
from ..errors import BackendUnavailableError
from ..url import DatabaseURL
from .asyncpg_adapter import AsyncpgAdapter
from .base import DBAPIConnection
from .postgresql import PostgreSQLBackend

__all__ = ["AsyncpgDialect"]


async def _connect(asyncpg: Any, params: dict[str, Any]) -> Any:
    """An asyncpg connection whose json and jsonb values are Python objects, as psycopg's are (the dialect's
    code and the DB-API face read them so); a str parameter goes as JSON text, as psycopg sends it."""
    raw = await asyncpg.connect(**params)
    try:
        for name in ("json", "jsonb"):
            await raw.set_type_codec(name, encoder=_json_text, decoder=json.loads, schema="pg_catalog")
    except BaseException:
        raw.terminate()
        raise
    return raw


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _settings(options: str) -> dict[str, str]:
    """libpq's ``options`` (``-c statement_timeout=5s -c search_path=app``) as asyncpg's ``server_settings``."""
    words = options.replace("-c", " -c ").split()
    pairs = [word for word in words if word != "-c"]
    return dict(pair.split("=", 1) for pair in pairs if "=" in pair)


def _connect_failure(url: DatabaseURL, exc: Exception, asyncpg: Any) -> Exception:
    """What to raise for asyncpg's failure to connect. A server that cannot be reached (OSError, a timeout) or
    refuses the login or the database (a PostgresError) is `BackendUnavailableError`, as the DB-API drivers'
    OperationalError is; anything else (a bad keyword) is raised as it is, for the engine to name. Raised
    unchained: asyncpg's frames hold the password as arguments, which pytest prints."""
    if isinstance(exc, OSError | TimeoutError | asyncpg.PostgresError | asyncpg.InterfaceError):
        return BackendUnavailableError(str(url), exc)
    return exc


class AsyncpgDialect(PostgreSQLBackend):
    """PostgreSQL through asyncpg."""

    driver = "asyncpg"
    url_driver = "asyncpg"
    driver_display = "asyncpg"
    extra = "asyncpg"
    combines_control = False

    def connect_params(self, url: DatabaseURL, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``asyncpg.connect()`` keywords for ``url``: its query options (``sslmode``...) go in a DSN, which is
        where asyncpg reads them."""
        params: dict[str, Any] = self.server_params(url, "database")
        options = url.options
        for key in options:
            params.pop(key, None)
        if options:
            from urllib.parse import urlencode

            params["dsn"] = f"postgresql:///?{urlencode(options)}"
        params.update(kwargs)
        params.setdefault("timeout", 10)
        if "connect_timeout" in params:  # libpq's name, as the other PostgreSQL drivers take it
            params["timeout"] = float(params.pop("connect_timeout"))
        if "options" in params:  # libpq's "-c name=value ..." become asyncpg's server settings
            params["server_settings"] = {
                **_settings(params.pop("options")),
                **params.get("server_settings", {}),
            }
        return params

    def connect_from_url(self, url: DatabaseURL, kwargs: dict[str, Any]) -> Callable[[], DBAPIConnection]:
        asyncpg = self.load_driver()
        params = self.connect_params(url, kwargs)

        def connect() -> DBAPIConnection:
            runner = driver_loop()
            try:
                raw = runner(_connect(asyncpg, params))
            except Exception as exc:
                raise _connect_failure(url, exc, asyncpg) from None
            return AsyncpgAdapter(raw, runner, params)

        return connect

    def connect_async(
        self, url: DatabaseURL, kwargs: dict[str, Any]
    ) -> Callable[[], Awaitable[DBAPIConnection]]:
        asyncpg = self.load_driver()
        params = self.connect_params(url, kwargs)
        what = f"asyncpg connection to {url}"

        async def connect() -> DBAPIConnection:
            try:
                raw = await _connect(asyncpg, params)
            except Exception as exc:
                raise _connect_failure(url, exc, asyncpg) from None
            return AsyncpgAdapter(raw, LoopRunner(asyncio.get_running_loop(), what), params)

        return connect

    def owns(self, connection: object) -> bool:
        return isinstance(connection, AsyncpgAdapter)

    def transaction_status(self, connection: DBAPIConnection) -> int:
        return int(connection.transaction_status)

    def sqlstate(self, error: BaseException) -> str:
        return getattr(error, "sqlstate", None) or ""

    def is_integrity_error(self, error: BaseException) -> bool:
        # asyncpg's classes are named after the SQLSTATE (IntegrityConstraintViolationError): class 23.
        return self.sqlstate(error).startswith("23")

    def statement_runner(self, connection: DBAPIConnection) -> tuple[Callable[[str, Any], Any], Any]:
        return connection.execute, None

    def transaction_probe(self, connection: DBAPIConnection) -> Callable[[], bool]:
        return lambda: connection.transaction_status != 0

    def execute(self, connection: DBAPIConnection, sql: str, params: Any) -> Any:
        return connection.execute(sql, params)

    def reset(self, connection: DBAPIConnection) -> None:
        super().reset(connection)
        # Codecs an application set (pgvector's register_vector ...) are connection state: not for the next test.
        connection.restore_codecs()
