"""MySQL and MariaDB through mysqlclient (the ``MySQLdb`` module; ``mysql+mysqldb://``, ``mariadb+mysqldb://``).

The SQL and error codes are MySQL's, shared with PyMySQL through `MySQLBackend`. What differs is how to tell
whether the server holds a transaction. Every reply of the server carries that as a status flag, but
mysqlclient keeps it in C and shows only the autocommit flag (``get_autocommit()``), so the flag cannot be read
after each statement as PyMySQL's ``server_status`` is.

Instead, a connection this dialect opens keeps track itself, at no round trip for the statements that make
up nearly all the traffic (`TrackedConnection`): every statement reaches the server through
``Connection.query()`` (mysqlclient's cursors all call it), which sorts it before sending:

* ``BEGIN`` / ``START TRANSACTION`` open a transaction, ``COMMIT`` / ``ROLLBACK`` end it;
* ``SELECT``, ``INSERT``, ``UPDATE``, ``DELETE``, ``REPLACE``, ``WITH``, ``SHOW``, savepoints... change nothing:
  MySQL commits implicitly only on DDL, account, lock, admin and transaction statements, and refuses a commit
  inside stored functions and triggers, which are all such a statement can run;
* anything else (DDL, ``CALL``, ``SET``, several statements in one text, a leading comment), and any statement
  that fails, leaves the state unknown: the next time the core asks, the server is asked, in one round trip
  (`ask_server`).

The C API's calls that end or may end a transaction without a statement through ``query()`` (``commit()``,
``rollback()``, ``autocommit()``, ``change_user()``, ``send_query()``) update the state too.

A connection opened by someone else (``Session(conn)``) is not tracked: for it the server is asked every
time, which is exact but costs a round trip per statement inside a transaction.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from ..errors import ConfigurationError, TransactionStateError
from ..url import DatabaseURL
from .base import DBAPIConnection, DBAPICursor, cursor_runner
from .mysql import DISCONNECTS, MULTI_STATEMENTS, MySQLBackend

__all__ = ["MySQLdbDialect", "TrackedConnection", "ask_server", "statement_effect"]

_ER_SP_DOES_NOT_EXIST = 1305  # "SAVEPOINT ... does not exist"
_PROBE_SAVEPOINT = b"SAVEPOINT txscope_probe"
_PROBE_RELEASE = b"RELEASE SAVEPOINT txscope_probe"
# Options that arrive as text in a URL's query string but that mysqlclient's connect() only takes as integers.
_INTEGER_OPTIONS = frozenset(
    ("connect_timeout", "read_timeout", "write_timeout", "client_flag", "local_infile")
)

UNKNOWN = object()
"""`statement_effect` of a statement after which the server must be asked."""

_OPENS = re.compile(rb"\s*(?:BEGIN(?:\s+WORK)?|START\s+TRANSACTION)\s*;?\s*\Z", re.IGNORECASE)
_ENDS = re.compile(rb"\s*(?:COMMIT|ROLLBACK)(?:\s+WORK)?\s*;?\s*\Z", re.IGNORECASE)
_SAME = re.compile(
    rb"\s*(?:SELECT|INSERT|UPDATE|DELETE|REPLACE|WITH|VALUES|TABLE|SHOW|EXPLAIN|DESCRIBE|DESC|DO|SAVEPOINT"
    rb"|RELEASE|ROLLBACK\s+(?:WORK\s+)?TO)\b",
    re.IGNORECASE,
)


def statement_effect(sql: bytes | str) -> object:
    """What running ``sql`` successfully does to the server's transaction: True (opens one), False (ends
    it), None (nothing), or `UNKNOWN`."""
    text = sql.encode() if isinstance(sql, str) else bytes(sql)
    if b";" in text.rstrip().rstrip(b";"):  # several statements (or a ";" in a literal: asking is exact too)
        return UNKNOWN
    if _SAME.match(text):
        return None
    if _OPENS.match(text):
        return True
    if _ENDS.match(text):
        return False
    return UNKNOWN


def ask_server(connection: DBAPIConnection) -> bool:
    """Whether the server holds a transaction on ``connection``, asked in one round trip.

    In autocommit mode (the dialect's own connections, always): ``SAVEPOINT`` then ``RELEASE SAVEPOINT`` of the
    same name (two round trips without multi-statements). Inside a transaction both succeed and leave nothing
    behind; outside one the savepoint ends with the statement that set it, so the release fails with error
    1305. MySQL and MariaDB alike, and no privilege needed.

    With autocommit off (a connection someone else opened, in the DB-API's default mode) a savepoint would
    itself open a transaction: MariaDB is asked ``SELECT @@in_transaction`` instead; MySQL has no such variable,
    and `TransactionStateError` says to switch autocommit on first.
    """
    raw_query = _raw_query(connection)
    if not connection.get_autocommit():
        if "mariadb" not in connection.get_server_info().lower():
            raise TransactionStateError(
                "cannot tell without side effects whether this mysqlclient connection to MySQL holds a "
                "transaction while its autocommit is off; commit or roll back, then switch it on "
                "(conn.autocommit(True)) before wrapping it in a Session"
            )
        raw_query(connection, b"SELECT @@in_transaction")
        rows = connection.store_result().fetch_row()
        return bool(int(rows[0][0]))
    try:
        if connection.client_flag & MULTI_STATEMENTS:
            raw_query(connection, _PROBE_SAVEPOINT + b"; " + _PROBE_RELEASE)
            connection.next_result()
        else:
            raw_query(connection, _PROBE_SAVEPOINT)
            raw_query(connection, _PROBE_RELEASE)
    except Exception as exc:
        if exc.args and exc.args[0] == _ER_SP_DOES_NOT_EXIST:
            return False
        raise
    return True


def _raw_query(connection: DBAPIConnection) -> Callable[[DBAPIConnection, bytes], None]:
    """The C-level ``query`` under mysqlclient's Python one (so that a probe is not itself tracked)."""
    query: Callable[[DBAPIConnection, bytes], None] = importlib.import_module(
        "MySQLdb._mysql"
    ).connection.query
    return query


class TrackedConnection:
    """Mixed into mysqlclient's ``Connection`` by `MySQLdbDialect`: keeps track of whether the server holds a
    transaction (see the module's documentation), so that the core's check after every statement costs no
    round trip."""

    txscope_session_id: int | None = None
    """The server's id of the session, read once at connect: mysqlclient refuses ``thread_id()`` while another
    thread runs a statement, which is when it is needed (to end that statement with ``KILL``)."""
    txscope_open = False
    """Whether the server held a transaction after the last statement whose effect is known."""
    txscope_known = True
    """False after a statement whose effect on the transaction is unknown, until the server is asked."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.txscope_session_id = self.thread_id()  # type: ignore[attr-defined]

    def query(self, query: bytes) -> None:
        effect = statement_effect(query)
        try:
            super().query(query)  # type: ignore[misc]  # mysqlclient's Connection, after this class in the MRO
        except BaseException:
            # A failure may have ended the transaction (a deadlock, a lost connection).
            self.txscope_known = False
            raise
        if effect is None:
            if not self.txscope_open and not self.get_autocommit():  # type: ignore[attr-defined]
                # Autocommit switched off (behind the dialect's back): any statement opens a transaction.
                self.txscope_open = True
            return
        if effect is UNKNOWN:
            self.txscope_known = False
        else:
            self.txscope_open = bool(effect)
            self.txscope_known = True

    def send_query(self, query: bytes) -> None:
        # mysqlclient's asynchronous API (send_query, then read_query_result): the same sorting as query().
        self.txscope_known = False
        super().send_query(query)  # type: ignore[misc]

    def commit(self) -> None:
        # The C API's mysql_commit(): a COMMIT not sent through query().
        try:
            super().commit()  # type: ignore[misc]
        except BaseException:
            self.txscope_known = False
            raise
        self.txscope_open, self.txscope_known = False, True

    def rollback(self) -> None:
        try:
            super().rollback()  # type: ignore[misc]
        except BaseException:
            self.txscope_known = False
            raise
        self.txscope_open, self.txscope_known = False, True

    def autocommit(self, on: bool) -> None:
        # Switching autocommit on commits an open transaction; off, every statement opens one.
        self.txscope_known = False
        super().autocommit(on)  # type: ignore[misc]

    def change_user(self, *args: Any, **kwargs: Any) -> None:
        # A new session for the new user: whatever was open is rolled back.
        self.txscope_known = False
        super().change_user(*args, **kwargs)  # type: ignore[misc]

    def txscope_in_transaction(self) -> bool:
        """Whether the server holds a transaction: tracked, or asked when unknown."""
        if not self.txscope_known:
            if self.more_results():  # type: ignore[attr-defined]
                # Result sets of an earlier text are still to be read: nothing can be sent before they are.
                return self.txscope_open
            self.txscope_open = ask_server(self)
            self.txscope_known = True
        return self.txscope_open

    def txscope_settle(self, statements: Sequence[str], was_open: bool, was_known: bool) -> None:
        """``statements`` (transaction control) all succeeded: the state is theirs, or as it was before."""
        state: object = None
        for statement in statements:
            effect = statement_effect(statement)
            if effect is not None:
                state = effect
        if state is None:
            self.txscope_open, self.txscope_known = was_open, was_known
        elif state is UNKNOWN:
            self.txscope_known = False
        else:
            self.txscope_open, self.txscope_known = bool(state), True


class MySQLdbDialect(MySQLBackend):
    """MySQL and MariaDB through mysqlclient (``MySQLdb``)."""

    driver = "MySQLdb"
    url_driver = "mysqldb"
    driver_display = "mysqlclient"
    extra = "mysqlclient"
    install_hint = (
        "mysqlclient compiles against the MariaDB or MySQL client library: on Debian or Ubuntu run "
        "apt-get install libmariadb-dev pkg-config first"
    )

    def __init__(self) -> None:
        super().__init__()
        self._connection_class: type | None = None

    def load_driver(self) -> ModuleType:
        module = super().load_driver()
        if not hasattr(module, "_mysql"):
            # pymysql.install_as_MySQLdb() puts PyMySQL under the name MySQLdb.
            raise ConfigurationError(
                f"the module imported as MySQLdb is {module.__name__!r}, not mysqlclient "
                "(pymysql.install_as_MySQLdb() was called?); use a mysql+pymysql:// URL for PyMySQL, or install "
                "mysqlclient: pip install 'pytest-txscope[mysqlclient]'"
            )
        return module

    def connection_class(self) -> type:
        """mysqlclient's ``Connection`` with `TrackedConnection` mixed in (made once, on first use)."""
        if self._connection_class is None:
            self.load_driver()
            base = importlib.import_module(
                "MySQLdb.connections"
            ).Connection  # MySQLdb.Connection is a function
            self._connection_class = type("Connection", (TrackedConnection, base), {"__module__": __name__})
        return self._connection_class

    def connect_from_url(self, url: DatabaseURL, kwargs: dict[str, Any]) -> Callable[[], DBAPIConnection]:
        self.load_driver()  # raises MissingDriverError (and refuses PyMySQL posing as MySQLdb) every time
        connection_class = self.connection_class()
        params: dict[str, Any] = {"charset": "utf8mb4", **self.server_params(url, "database"), **kwargs}
        for key in _INTEGER_OPTIONS & params.keys():
            if isinstance(params[key], str):
                try:
                    params[key] = int(params[key])
                except ValueError:
                    raise ConfigurationError(
                        f"MySQL URL option {key}={params[key]!r} is not a whole number"
                    ) from None
        params.setdefault("connect_timeout", 10)  # as PyMySQL's default: libmariadb would wait for the OS
        params["autocommit"] = True
        params["client_flag"] = int(params.get("client_flag", 0)) | MULTI_STATEMENTS

        def connect() -> DBAPIConnection:
            return connection_class(**params)

        return connect

    def owns(self, connection: object) -> bool:
        # MySQLdb.connections.Connection, its subclasses (ours among them), and not PyMySQL under that name.
        return any(cls.__module__.startswith("MySQLdb.") for cls in type(connection).__mro__) and hasattr(
            connection, "get_host_info"
        )

    def in_transaction(self, connection: DBAPIConnection) -> bool:
        if isinstance(connection, TrackedConnection):
            return connection.txscope_in_transaction()
        return ask_server(connection)

    def transaction_probe(self, connection: DBAPIConnection) -> Callable[[], bool]:
        if isinstance(connection, TrackedConnection):
            return connection.txscope_in_transaction
        return functools.partial(ask_server, connection)

    def is_alive(self, connection: DBAPIConnection) -> bool:
        # mysqlclient's `open` stays 1 when the server drops the connection; the error code of the last call
        # (read locally) says it then: 2006 or 2013 until the connection is closed.
        try:
            return bool(connection.open) and connection.errno() not in DISCONNECTS
        except Exception:  # errno() of a closed connection raises
            return False

    def statement_runner(self, connection: DBAPIConnection) -> tuple[Callable[[str, Any], DBAPICursor], Any]:
        # cursor.execute(sql, None) sends the text as it is (no %-formatting): None serves for "no parameters".
        return cursor_runner(connection), None

    def run_control(self, connection: DBAPIConnection, statements: Sequence[str]) -> None:
        tracked = isinstance(connection, TrackedConnection)
        if tracked:
            was_open, was_known = connection.txscope_open, connection.txscope_known
        super().run_control(connection, statements)
        if tracked:
            # Sent as one text, the statements left the state unknown; they all succeeded, so it is known.
            connection.txscope_settle(statements, was_open, was_known)

    def string_literal(self, connection: DBAPIConnection, text: str) -> str:
        literal: bytes = connection.string_literal(text.encode(connection.encoding))
        return literal.decode(connection.encoding)

    def session_id(self, connection: DBAPIConnection) -> int | None:
        known = getattr(connection, "txscope_session_id", None)
        return int(connection.thread_id()) if known is None else int(known)

    def describe(self, connection: DBAPIConnection) -> str:
        try:
            host = connection.get_host_info().split(" via ")[0]
        except Exception:  # a closed connection
            return "MySQL/MariaDB connection (closed)"
        return f"MySQL/MariaDB connection to {host}:{connection.port}/{connection.db}"
