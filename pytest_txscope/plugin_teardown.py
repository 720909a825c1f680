"""The end of a sandboxed test, and of a run, when something went wrong: the plugin's fault handling.

- A thread that still holds a shared sandbox's connection when the test ends is displaced after
  ``txscope_thread_timeout`` (a statement it is running is interrupted), everything is rolled back, and
  `SandboxStillHeldError` names the thread and where it is.
- Transactions the test's code began and never ended are rolled back with the sandbox and reported once, as a
  `TransactionLeftOpenWarning` naming where each began.
- A test that failed on a lock wait or deadlock gets a note saying how its sandbox causes that.
- Databases of pytest-xdist workers that crashed are dropped at the end of the run.
- The leak check, and the cleaning of tables that a test changed for real.

Import-light like the plugin: drivers and SQLAlchemy are reached only when a fault needs them.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import time
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from typing import Any

import pytest

from .core import Engine, Session, Transaction, TransactionState
from .core.context import Scope, current_scope, restore_scope
from .core.workers import Worker
from .dbapi import SandboxConnection
from .errors import SandboxStillHeldError, TransactionLeftOpenWarning
from .lease import Holding, Lease
from .places import Place, caller_place, describe_place
from .sandbox import Sandbox
from .url import DatabaseURL

__all__ = [
    "PluginSandbox",
    "check_leaks",
    "clean_changed",
    "drop_crashed_workers",
    "end_sandbox",
    "explain_lock_wait",
    "leave_blocks",
    "unpinned",
]


class PluginSandbox(Sandbox):
    """The test's sandbox: a `Sandbox` that also notes where the test's code begins its transactions."""

    label: str | None = None
    """For a sandbox of a wider scope (``db_module_sandbox`` ...): which one, for messages."""

    def start(self) -> PluginSandbox:
        # Keyed by session (a transaction's ``session``).
        self._began: dict[object, Place | None] = {}
        self._raw: dict[object, SandboxConnection] = {}
        super().start()
        return self

    def guest_session(self, engine: Engine) -> Session:
        session = super().guest_session(engine)
        # A pinned engine makes a session per unit of work (``with engine:``, ``engine.begin()``): where it is
        # made is where the work began.
        self._began[session] = caller_place(inspect.currentframe())
        return session

    def connection(self, connect_kwargs: Mapping[str, Any] | None = None) -> SandboxConnection:
        connection = super().connection(connect_kwargs)
        self._raw[connection.session] = connection
        return connection

    @property
    def lease(self) -> Lease | None:
        """The lease of a shared sandbox that nests in no other (a wider one owns its parent's lease)."""
        return None if self.parent is not None else super().lease

    def end_connection(self) -> bool:
        """End the sandbox's connection from outside (see `provision.end_connection`); False if not done."""
        from .provision import end_connection

        url = self.engine.url
        return url is not None and self._channel is not None and end_connection(url, self._channel.connection)

    def open_transactions(self) -> list[str]:
        """The transactions still open above the sandbox's own, the outermost of each session, described."""
        assert self._channel is not None
        outermost: dict[object, Transaction] = {}
        tx = self._channel.stack.top
        while tx is not None and tx is not self._base:
            if tx.state is TransactionState.ACTIVE and self._counts(tx):
                outermost[tx.session] = tx
            tx = tx.below  # type: ignore[assignment]  # the stack holds Transactions
        return [self._describe(session, tx) for session, tx in reversed(outermost.items())]

    def _counts(self, tx: Transaction) -> bool:
        """Whether an open ``tx`` is worth reporting: a transaction the code began explicitly, or the implicit
        one of a DB-API connection (an ORM session's) that changed data; a connection or session that only
        read and was never closed loses nothing."""
        if not tx.implicit or tx.parent is not None:
            return True
        raw = self._raw.get(tx.session)
        return raw is not None and raw.wrote

    def _describe(self, session: object, tx: Transaction) -> str:
        if session in self._began:
            return (
                f"{tx.describe()} of {tx.session.engine!r}, begun at {describe_place(self._began[session])}"
            )
        raw = self._raw.get(session)
        if raw is not None:
            return (
                f"{tx.describe()} of a DB-API connection from db_sandbox.connection() (the application's "
                f"SQLAlchemy engines use these), begun at {describe_place(raw.began_at)}"
                + (", which changed data" if tx.implicit and raw.wrote else "")
            )
        return f"{tx.describe()} of db_session, whose 'with' block was entered and never left"


def end_sandbox(sandbox: PluginSandbox, reported: Callable[[BaseException], bool], *, failed: bool) -> None:
    """Stop the test's sandbox; then raise `SandboxStillHeldError` for a thread that had to be displaced, or
    warn about transactions left open (unless the test ``failed``: its failure may have left them open).
    ``reported(error)`` tells whether the test failed with ``error``."""
    __tracebackhide__ = True  # pytest: the message says it all, this function's lines add nothing
    lease = sandbox.lease
    displaced: Holding | None = None
    interrupted = False
    if lease is not None:
        displaced = lease.seize(sandbox.thread_timeout)
        lease.close()  # a thread that outlives the test must not reach the connection afterwards
        if displaced is not None and displaced.running:
            interrupted = _interrupt(sandbox, displaced.thread)
    left_open: list[str] = []
    if displaced is None and not failed:
        if "pytest_txscope.sqlalchemy" in sys.modules:  # sa_session's transaction is the test's own
            orm_session = sys.modules["pytest_txscope.sqlalchemy"].existing_session(sandbox)
            if orm_session is not None:
                orm_session.close()
        left_open = sandbox.open_transactions()
    sandbox.stop()
    if displaced is not None:
        assert lease is not None
        if any(holder is displaced.thread and reported(error) for holder, error in lease.timeouts):
            return  # the test failed waiting for that very thread: one error says it all
        raise SandboxStillHeldError(
            displaced.thread.name,
            displaced.since,
            displaced.now,
            waited=sandbox.thread_timeout,
            alive=displaced.alive,
            interrupted=interrupted,
        )
    if left_open:
        warnings.warn(TransactionLeftOpenWarning(left_open), stacklevel=1)


def _interrupt(sandbox: PluginSandbox, thread: Worker) -> bool:
    """End the statement ``thread`` is running on the sandbox's connection, and wait (a little) until it has
    let go of the connection: rolling back meanwhile would mix two threads' traffic on one connection."""
    lease = sandbox.lease
    if lease is None or not sandbox.end_connection():
        return False
    deadline = time.monotonic() + max(sandbox.thread_timeout, 1.0)
    while lease.is_sending(thread) and time.monotonic() < deadline:
        time.sleep(0.01)
    return True


def leave_blocks(before: Scope | None, *, warn: bool) -> None:
    """After a test's body: drop what it made current and never left (``with`` blocks entered by hand, or in a
    generator that never finished), so that later tests do not join those sessions. Sessions of no sandbox
    among them are rolled back and closed (a sandbox's own are left to it), and reported if ``warn``."""
    scope = current_scope()
    left: list[Session] = []
    while scope is not None and scope is not before:
        if isinstance(scope.session, Session) and scope.session not in left:
            left.append(scope.session)
        scope = scope.parent
    restore_scope(before)
    described = []
    for session in reversed(left):  # the outermost first
        root = session.lane.root
        if session.closed or session.is_guest or root is None:
            continue
        described.append(
            f"{root.describe()} of {session.engine!r}, of a 'with' block that the test entered and never left, "
            "outside any sandbox"
        )
        with contextlib.suppress(Exception):  # a broken connection is discarded by close() all the same
            session.close()
    if described and warn:
        warnings.warn(TransactionLeftOpenWarning(described), stacklevel=1)


# -------------------------------------------------------------------------------------------- lock waits
_PG_LOCK_STATES = ("55P03", "40P01")  # lock_not_available (lock_timeout), deadlock_detected
_MYSQL_LOCK_CODES = (1205, 1213)  # lock wait timeout exceeded, deadlock found
_SQLITE_BUSY = (5, 6)  # SQLITE_BUSY ("database is locked"), SQLITE_LOCKED

LOCK_WAIT_NOTE = (
    "pytest-txscope: a connection gave up waiting for a lock. This test runs in a sandbox: a transaction that "
    "stays open until the test ends, and keeps locked every row the test wrote (or locked) until then. A "
    "second connection that writes or locks those rows waits for the test, while the test waits for that "
    "connection. Send that work through the sandbox instead (db_session, the engines in txscope_engines, "
    "db_sandbox.connection()), or mark the test @pytest.mark.txscope(commit=True) to run it with real commits"
)


def explain_lock_wait(error: BaseException) -> None:
    """Add `LOCK_WAIT_NOTE` to ``error`` (a test's failure) if it, or an error it wraps, is a lock wait timeout
    or a deadlock of PostgreSQL, MySQL/MariaDB or SQLite."""
    if not any(_is_lock_wait(e) for e in _chain(error)) or LOCK_WAIT_NOTE in getattr(error, "__notes__", ()):
        return
    if sys.version_info >= (3, 11):
        error.add_note(LOCK_WAIT_NOTE)
    else:  # what add_note() does; pytest shows the notes
        vars(error)["__notes__"] = [*getattr(error, "__notes__", ()), LOCK_WAIT_NOTE]


def _chain(error: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen or len(seen) > 20:
            continue
        seen.add(id(e))
        yield e
        orig = getattr(e, "orig", None)  # SQLAlchemy's DBAPIError wraps the driver's error
        todo.extend((e.__cause__, e.__context__, orig if isinstance(orig, BaseException) else None))


def _is_lock_wait(error: BaseException) -> bool:
    module = type(error).__module__
    if module.startswith("psycopg"):  # psycopg 3 names the SQLSTATE sqlstate, psycopg2 pgcode
        return (getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)) in _PG_LOCK_STATES
    if module.startswith(("pymysql", "MySQLdb")):
        return bool(error.args) and error.args[0] in _MYSQL_LOCK_CODES
    if module == "sqlite3":
        return getattr(error, "sqlite_errorcode", None) in _SQLITE_BUSY or "database is locked" in str(error)
    return False


# ----------------------------------------------------------------------------------------------- xdist
def drop_crashed_workers(url: DatabaseURL | None, workers: Iterable[str], allow: Iterable[str]) -> None:
    """Drop the databases of pytest-xdist workers that crashed (a worker drops its own when it ends normally).

    The embedded SQLite default lives in a worker's temporary directory, which pytest removes itself."""
    if url is None:
        return
    from .provision import drop, worker_url

    for worker in sorted(set(workers)):
        drop(worker_url(url, worker), allow=tuple(allow))


# ------------------------------------------------------------------------------ leaks and real commits
def check_leaks(item: pytest.Item, state: Any) -> None:
    """The leak check, after the test's teardown: fail ``item`` if the database holds more or fewer rows than
    ``state.baseline`` (the start of the run), counted on ``state.engine``; and the same for each of the
    ``txscope_databases`` opened so far (``state.others``, compared with ``state.other_baselines``). Each
    leak is reported once: the next test is compared with what this one left."""
    if state.engine is None or state.baseline is None:
        return
    state.baseline, found = _compare_rows(state.engine, state.baseline)
    problems = [f": {found}"] if found else []
    for name, engine in state.others.items():
        state.other_baselines[name], found = _compare_rows(engine, state.other_baselines[name])
        problems += [f" in the database {name!r}: {found}"] if found else []
    if problems:
        pytest.fail(
            f"{item.nodeid} left rows behind{'; '.join(problems)} (compared with the start of the run); "
            "write through db_session / the sandboxed engines, or mark the test @pytest.mark.txscope",
            pytrace=False,
        )


def _compare_rows(engine: Engine, baseline: dict[str, int]) -> tuple[dict[str, int], str]:
    """The row counts now, and the tables whose counts differ from ``baseline`` (empty: none)."""
    from .tables import row_counts

    with unpinned(engine) as counted:
        now = row_counts(counted)
    leaks = {t: now.get(t, 0) - baseline.get(t, 0) for t in set(now) | set(baseline)}
    return now, ", ".join(f"{t} ({d:+d} rows)" for t, d in sorted(leaks.items()) if d)


def clean_changed(engine: Engine, snapshot: Any, allow: Collection[str]) -> None:
    """Bring every table the test changed for real back to the run's ``snapshot``."""
    from .provision import check_safe
    from .tables import changed_tables, restore

    with unpinned(engine) as cleaner:
        changed = changed_tables(cleaner, snapshot)
        if changed:
            if engine.url is not None:
                check_safe(engine.url, "clean", allow)
            restore(cleaner, snapshot, changed)


@contextlib.contextmanager
def unpinned(engine: Engine) -> Iterator[Engine]:
    """An engine on the same database that no sandbox pins (a wider-scope sandbox may pin ``engine``)."""
    if not engine.pinned or engine.url is None or engine.url.database == ":memory:":
        yield engine
        return
    other = Engine.from_url(engine.url)
    try:
        yield other
    finally:
        other.dispose()
