"""PostgreSQL through psycopg2 (``postgresql+psycopg2://``).

The SQL, the error codes and the transaction states are PostgreSQL's, shared with psycopg 3 through
`PostgreSQLBackend`; what differs is the driver's API: autocommit is an attribute set after connecting, the
transaction state comes from ``get_transaction_status()`` (a C call that reads libpq's state, no round trip),
an error's SQLSTATE is ``pgcode``, and ``closed`` turns 2 when the driver sees the connection break.

psycopg2 keeps no prepared statements, so the statement cache that `PostgreSQLDialect` preserves across
rollbacks has no counterpart here: `run_control_keeping_cache` is plain `run_control`.

psycopg2 interpolates parameters on the client and sends one text: control statements queued before a statement
go in front of it, in its round trip (`execute_after`), and the cursor shows the last statement's result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..url import DatabaseURL
from .base import DBAPIConnection, DBAPICursor, cursor_runner
from .postgresql import PostgreSQLBackend

__all__ = ["Psycopg2Dialect"]

_IDLE = 0  # psycopg2.extensions.TRANSACTION_STATUS_IDLE


class Psycopg2Dialect(PostgreSQLBackend):
    """PostgreSQL through psycopg2 (or psycopg2-binary: the same module)."""

    driver = "psycopg2"
    url_driver = "psycopg2"
    driver_display = "psycopg2"
    extra = "psycopg2"

    def connect_from_url(self, url: DatabaseURL, kwargs: dict[str, Any]) -> Callable[[], DBAPIConnection]:
        psycopg2 = self.load_driver()
        params = self.server_connect_params(url, kwargs)
        params.pop("autocommit", None)  # not a connect() keyword of psycopg2: set on the connection below

        def connect() -> DBAPIConnection:
            connection = psycopg2.connect(**params)
            try:
                connection.autocommit = True
            except BaseException:
                connection.close()
                raise
            return connection

        return connect

    def owns(self, connection: object) -> bool:
        # psycopg2.extensions.connection, and subclasses such as psycopg2.extras' connection factories.
        return any(cls.__module__.startswith("psycopg2.") for cls in type(connection).__mro__) and hasattr(
            connection, "get_transaction_status"
        )

    def transaction_status(self, connection: DBAPIConnection) -> int:
        # UNKNOWN (4) once the connection is closed or broken: not IDLE, so "in a transaction" as libpq says.
        return int(connection.get_transaction_status())

    def sqlstate(self, error: BaseException) -> str:
        return getattr(error, "pgcode", None) or ""

    def string_literal(self, connection: DBAPIConnection, text: str) -> str:
        from psycopg2.extensions import QuotedString, encodings

        quoted = QuotedString(text)
        quoted.prepare(connection)  # the connection's encoding and standard_conforming_strings
        return str(quoted.getquoted().decode(encodings[connection.encoding]))

    def statement_runner(self, connection: DBAPIConnection) -> tuple[Callable[[str, Any], DBAPICursor], Any]:
        # psycopg2 has no execute() shortcut on the connection; cursor.execute(sql, None) sends the text as it
        # is (no %-formatting), so None serves for "no parameters" without a branch.
        return cursor_runner(connection), None

    def transaction_probe(self, connection: DBAPIConnection) -> Callable[[], bool]:
        status = connection.get_transaction_status
        return lambda: status() != _IDLE

    def execute_after(
        self, connection: DBAPIConnection, statements: Sequence[str], sql: str, params: Any, keep_cache: bool
    ) -> DBAPICursor | None:
        # psycopg2 %-formats the whole text when there are parameters: the control has no "%" to escape. A
        # multi-statement text runs in the simple query protocol, and the cursor holds the last result: the
        # statement's (or its last one's, as when the code sends several alone).
        cursor = connection.cursor()
        cursor.execute("; ".join([*statements, sql]), params)
        return cursor
