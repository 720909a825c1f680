"""PostgreSQL through psycopg 3.

Connections run in psycopg's autocommit mode and we send ``BEGIN`` ourselves: in its default mode psycopg opens
a transaction before the first statement by itself, and ``with connect() as conn:`` commits on exit, both of
which would take the transaction out of the core's hands.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import TransactionStateError
from ..sql import PyformatConverter
from ..url import DatabaseURL
from .base import DBAPIConnection, DBAPICursor, Dialect

__all__ = ["PostgreSQLDialect"]

_IDLE = 0  # psycopg.pq.TransactionStatus.IDLE
_INERROR = 3  # psycopg.pq.TransactionStatus.INERROR


class PostgreSQLDialect(Dialect):
    """PostgreSQL through psycopg 3."""

    name = "postgresql"
    display = "PostgreSQL"
    driver = "psycopg"
    extra = "postgresql"
    batches_control = True
    aborts_on_error = True

    def __init__(self) -> None:
        self._converter = PyformatConverter(backslash_escapes=False, hash_comments=False)
        self.prepare = self._converter.convert  # type: ignore[method-assign]  # the bound converter is the hot path

    def connect_from_url(self, url: DatabaseURL, kwargs: dict[str, Any]) -> Callable[[], DBAPIConnection]:
        psycopg = self.load_driver()
        params: dict[str, Any] = {**self.server_params(url, "dbname"), **kwargs}
        params["autocommit"] = True

        def connect() -> DBAPIConnection:
            return psycopg.connect(**params)

        return connect

    def owns(self, connection: object) -> bool:
        return any(cls.__module__.startswith("psycopg.") for cls in type(connection).__mro__) and hasattr(
            connection, "pgconn"
        )

    def take_control(self, connection: DBAPIConnection) -> Callable[[], None]:
        if connection.info.transaction_status != _IDLE:
            raise TransactionStateError(
                "this psycopg connection has an open transaction; commit or roll it back before wrapping it in "
                "a Session, so that its work is neither committed nor lost without you knowing"
            )
        previous = connection.autocommit
        connection.autocommit = True

        def restore() -> None:
            if connection.info.transaction_status == _IDLE:
                connection.autocommit = previous

        return restore

    def in_transaction(self, connection: DBAPIConnection) -> bool:
        return bool(connection.info.transaction_status != _IDLE)

    def statement_runner(self, connection: DBAPIConnection) -> tuple[Callable[[str, Any], DBAPICursor], Any]:
        # psycopg's Connection.execute takes None for "no parameters": the text is then not scanned for %s.
        return connection.execute, None

    def transaction_probe(self, connection: DBAPIConnection) -> Callable[[], bool]:
        pgconn = connection.pgconn
        return lambda: pgconn.transaction_status != _IDLE

    def transaction_failed(self, connection: DBAPIConnection) -> bool:
        return bool(connection.info.transaction_status == _INERROR)

    def execute(self, connection: DBAPIConnection, sql: str, params: Any) -> DBAPICursor:
        if params is None:
            return connection.execute(sql)
        return connection.execute(sql, params)

    def split_script(self, script: str) -> list[str]:
        from ..sql import split_statements

        return split_statements(script)

    def describe(self, connection: DBAPIConnection) -> str:
        info = connection.info
        return f"PostgreSQL connection to {info.host}:{info.port}/{info.dbname} as {info.user}"
