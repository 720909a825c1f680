"""Every error pytest-txscope raises on purpose.

All of them derive from `TxScopeError`, and each also derives from the built-in exception that fits
(``ValueError`` for bad configuration, ``ImportError`` for a missing driver, ``RuntimeError`` for misuse of a
transaction), so callers can catch either. Messages are built from fields and always end with what to do.
"""

from __future__ import annotations

__all__ = [
    "AsyncContextError",
    "BackendUnavailableError",
    "ConfigurationError",
    "ConnectedBeforeSandboxWarning",
    "ConnectionBusyError",
    "ConnectionLostError",
    "DatabaseAccessError",
    "EngineMismatchError",
    "ImplicitCommitError",
    "ImportPathError",
    "MalformedURLError",
    "MissingDriverError",
    "MissingEngineError",
    "ParameterError",
    "RestoreError",
    "SandboxEscapeError",
    "SandboxIsolationWarning",
    "SandboxRefusedError",
    "SandboxStillHeldError",
    "SandboxThreadError",
    "ScriptError",
    "TransactionLeftOpenWarning",
    "TransactionStateError",
    "TxScopeError",
    "UnknownDriverError",
    "UnknownSchemeError",
    "UnpinnedEngineError",
    "UnsafeDatabaseError",
    "UnsupportedConnectionError",
    "WrongEventLoopError",
]


class TxScopeError(Exception):
    """Root of every error pytest-txscope raises on purpose."""


class ConfigurationError(TxScopeError, ValueError):
    """A URL, option or argument is not valid."""


class UnknownSchemeError(ConfigurationError):
    """A database URL names a scheme no dialect handles."""

    def __init__(self, scheme: str, url: str, known: tuple[str, ...]) -> None:
        self.scheme = scheme
        self.url = url
        self.known = known
        super().__init__(
            f"unknown database URL scheme {scheme!r} in {url}; "
            f"use one of: {', '.join(s + '://' for s in known)}"
        )


class UnknownDriverError(UnknownSchemeError):
    """A database URL names a driver (``postgresql+pg8000://``) that pytest-txscope does not drive."""

    def __init__(self, scheme: str, url: str, driver: str, known: tuple[str, ...]) -> None:
        ConfigurationError.__init__(
            self,
            f"unknown driver {driver!r} in database URL {url}; for this database use one of: "
            f"{', '.join(s + '://' for s in known)} (the first is the default, also used when the scheme "
            "names no driver)",
        )
        self.scheme = scheme
        self.url = url
        self.driver = driver
        self.known = known


class MalformedURLError(ConfigurationError):
    """A database URL cannot be parsed."""

    def __init__(self, url: str, problem: str, example: str) -> None:
        self.url = url
        self.problem = problem
        self.example = example
        super().__init__(f"malformed database URL {url}: {problem}; write it like {example}")


class MissingDriverError(TxScopeError, ImportError):
    """The DB-API driver a URL needs is not installed."""

    def __init__(self, backend: str, module: str, extra: str, hint: str = "") -> None:
        self.backend = backend
        self.module = module
        self.extra = extra
        super().__init__(
            f"the {backend} backend needs the {module!r} driver, which is not installed; "
            f"install it with: pip install 'pytest-txscope[{extra}]'" + (f" ({hint})" if hint else ""),
            name=module,
        )


class BackendUnavailableError(TxScopeError, ConnectionError):
    """The database server could not be reached."""

    def __init__(self, target: str, cause: BaseException) -> None:
        self.target = target
        self.cause = cause
        super().__init__(
            f"cannot connect to {target}: {type(cause).__name__}: {' '.join(str(cause).split())}; "
            "check that the server is running and the URL (host, port, user, database) is right"
        )


class TransactionStateError(TxScopeError, RuntimeError):
    """A transaction or session was used in a state that does not allow it."""


class ImplicitCommitError(TransactionStateError):
    """A statement made the server commit the open transaction behind the library's back.

    MySQL and MariaDB commit implicitly before and after DDL (``CREATE``, ``ALTER``, ``DROP``, ``TRUNCATE`` ...);
    the open transaction and every savepoint in it are gone, and what ran before the statement is committed.
    """

    def __init__(self, statement: str, backend: str) -> None:
        self.statement = statement
        self.backend = backend
        short = " ".join(statement.split())
        if len(short) > 120:
            short = short[:117] + "..."
        last = statement.strip().rstrip(";").rsplit(";", 1)[-1].split()
        verb = last[0].upper() if last else ""
        self.rolled_back = verb in ("ROLLBACK", "ABORT")
        """True when the statement was a ``ROLLBACK`` sent as SQL: the work was undone, nothing committed."""
        gone = (
            "the transaction and its savepoints are gone, and the session refuses further statements in them"
        )
        if self.rolled_back or verb in ("COMMIT", "END"):
            ended = "rolled back" if self.rolled_back else "committed"
            call = "rollback" if self.rolled_back else "commit"
            super().__init__(
                f"{backend} {ended} the transaction when {short!r} was sent as a statement: {gone}; end "
                f"transactions through the library instead (tx.{call}(), the end of a 'with' block, or {call}() "
                "of a DB-API connection from sandbox.connection()), never as SQL text"
            )
            return
        if verb in ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "VALUES", "REPLACE"):
            # These cannot end a transaction: it had ended before them, and they ran (and committed) alone.
            super().__init__(
                f"{backend} held no transaction any more after {short!r}, which cannot end one: code had ended it "
                "behind the library's back, on the driver's connection (a COMMIT on session.connection, or "
                f"sqlite3's isolation_level = None, which commits); {gone}, and what ran is committed; end "
                "transactions through the library (tx.commit(), or commit() of a DB-API connection from "
                "sandbox.connection()) and leave the driver connection's settings alone"
            )
            return
        super().__init__(
            f"{backend} committed the transaction implicitly while running {short!r}: {gone}; run DDL outside "
            "transactions (engine.executescript(...)) or use CREATE TEMPORARY TABLE, which does not commit"
        )


class SandboxEscapeError(TxScopeError, RuntimeError):
    """The sandbox's outer transaction was ended before the sandbox could roll it back: work escaped."""

    def __init__(self, reason: str, reported: BaseException | None = None) -> None:
        self.reason = reason
        self.reported = reported
        """The error already raised to the code when the transaction ended (None if nothing was raised)."""
        super().__init__(
            f"the test's outer transaction was ended before the sandbox rolled it back ({reason}); what was "
            "committed then is in the database now. Send the code's commits through the sandbox (its engines, "
            "sandbox.connection()), run DDL on MySQL/MariaDB outside the test, or mark the test "
            "@pytest.mark.txscope(commit=True) so that it runs without a sandbox and its tables are cleaned"
        )


class SandboxRefusedError(TxScopeError, RuntimeError):
    """Something was asked of a sandbox's DB-API connection that would end the test's transaction."""

    def __init__(self, what: str, why: str) -> None:
        self.what = what
        super().__init__(
            f"{what} is refused on the sandbox's connection: {why}; the test's transaction must stay open "
            "until the sandbox rolls it back (mark the test @pytest.mark.txscope(commit=True) to run it with "
            "real commits instead)"
        )


class SandboxThreadError(TxScopeError, RuntimeError):
    """A thread other than the sandbox's used an engine the sandbox pins."""

    def __init__(self, thread: str, owner: str, engine: str) -> None:
        self.thread = thread
        self.owner = owner
        self.engine = engine
        super().__init__(
            f"thread {thread!r} used {engine}, which the sandbox of thread {owner!r} pins to its connection; "
            "the sandbox is strict about threads (txscope_threads = strict), so it is refused; run the work in "
            "the test's thread, or let threads share the sandbox: mark the test "
            '@pytest.mark.txscope(threads="shared"), call db_sandbox.share() or db_sandbox.allow_thread(thread), '
            "or set txscope_threads = shared (the default)"
        )


class DatabaseAccessError(TxScopeError, RuntimeError):
    """A test that asked for no sandbox used a database engine while blocking is on."""

    def __init__(self, test: str, engine: str) -> None:
        self.test = test
        self.engine = engine
        super().__init__(
            f"{test} used {engine}, but it asked for no database sandbox and txscope_block is on; request the "
            "db_session or db_sandbox fixture, or mark it @pytest.mark.txscope (or "
            "@pytest.mark.txscope(commit=True) for real commits)"
        )


class EngineMismatchError(ConfigurationError):
    """An application's engine cannot be pinned to the test database: another database, backend or driver, or
    an asyncio engine."""

    def __init__(self, engine: str, problem: str, fix: str) -> None:
        self.engine = engine
        self.problem = problem
        super().__init__(f"txscope_engines: {engine} {problem}; {fix}")


class UnpinnedEngineError(TxScopeError, RuntimeError):
    """An engine that no sandbox pins connected to the test database during a sandboxed test: its work would
    be committed for real."""

    def __init__(self, engine: str, database: str, place: str, fix: str) -> None:
        self.engine = engine
        self.place = place
        super().__init__(
            f"{engine} connected to the test database ({database}) at {place}, but it is not pinned to the "
            f"test's sandbox: what it writes would be committed for real and outlive the test; {fix}"
        )


class MissingEngineError(TxScopeError, RuntimeError):
    """No engine was given and no session is current in this context."""

    def __init__(self, function: str) -> None:
        self.function = function
        super().__init__(
            f"{function}() found no current session in this context (thread or asyncio task) and no engine "
            f"was given; call it inside 'with engine:' / 'with engine.session():', or pass {function}(engine)"
        )


class AsyncContextError(TxScopeError, RuntimeError):
    """Sync code reached an asyncio driver's connection outside the async API that runs it."""

    def __init__(self) -> None:
        super().__init__(
            "an asyncio driver's connection was used from synchronous code, outside the async API that runs it "
            "(an AsyncEngine used from a sync test, fixture or thread, or a driver callback calling back); use it "
            "from async code ('async with engine as tx:', 'async with engine.session():'), or give sync code a "
            "sync driver's URL (postgresql:// for psycopg, sqlite:///, mysql:// for PyMySQL)"
        )


class WrongEventLoopError(TxScopeError, RuntimeError):
    """An asyncio connection was used from an event loop other than the one that opened it."""

    def __init__(self, what: str, home: object, running: object) -> None:
        self.what = what
        where = (
            "outside any running event loop" if running is None else f"from another event loop ({running!r})"
        )
        super().__init__(
            f"the {what} was opened on event loop {home!r} and is used {where}; asyncio connections belong to "
            "the loop that opened them: open the engine's sessions on the loop that uses them (with "
            "pytest-asyncio, give the test and the fixtures that use the engine the same loop_scope), or "
            "dispose of the engine between loops (await engine.dispose())"
        )


class UnsupportedConnectionError(TxScopeError, TypeError):
    """``Session(conn)`` was given an object whose driver is not supported."""

    def __init__(self, obj: object, known: tuple[str, ...]) -> None:
        kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
        self.kind = kind
        super().__init__(
            f"cannot tell which database {kind} connects to; Session() accepts connections from: "
            f"{', '.join(known)}"
        )


class ScriptError(TxScopeError, RuntimeError):
    """A statement of an SQL script failed; says which one, where, and what was kept."""

    def __init__(
        self,
        *,
        number: int,
        total: int,
        statement: str,
        line: int,
        source: str,
        cause: BaseException,
        kept: str,
    ) -> None:
        self.number = number
        self.total = total
        self.statement = statement
        self.line = line
        self.source = source
        self.cause = cause
        short = " ".join(statement.split())
        if len(short) > 120:
            short = short[:117] + "..."
        super().__init__(
            f"{source}, line {line}: statement {number} of {total} failed: {short!r}: "
            f"{type(cause).__name__}: {(str(cause).strip().splitlines() or [''])[0]}; {kept}"
        )


class UnsafeDatabaseError(ConfigurationError):
    """A destructive action was refused because the database's name does not look like a test database."""

    def __init__(self, name: str, action: str, url: str, example: str) -> None:
        self.name = name
        self.action = action
        self.url = url
        self.fix = f"rename it (e.g. {example}) or allow it with txscope_allow_databases = {name}"
        super().__init__(
            f"refusing to {action} database {name!r} ({url}): its name does not look like a test database "
            f"(no 'test' word part); {self.fix}"
        )


class RestoreError(TxScopeError, RuntimeError):
    """A table cannot be put back as the snapshot had it."""

    def __init__(self, table: str, problem: str) -> None:
        self.table = table
        super().__init__(f"cannot restore table {table!r}: {problem}")


class ImportPathError(ConfigurationError):
    """An import path from the configuration does not import, or names the wrong kind of object."""

    def __init__(
        self, key: str, path: str, problem: str, fix: str = "write it as package.module:attribute"
    ) -> None:
        super().__init__(f"{key} entry {path!r} {problem}; {fix}")


class ParameterError(TxScopeError, TypeError):
    """SQL parameters do not match the placeholders in the statement."""


class ConnectionBusyError(TxScopeError, RuntimeError):
    """Waited too long for a connection that another thread holds.

    Not a ``TimeoutError`` on purpose: that is ``socket.timeout``, which servers take for a dropped client and
    answer with silence instead of an error page.
    """


class ConnectionLostError(TxScopeError, ConnectionError):
    """The connection broke (the server dropped it, or code closed it) while the library was using it.

    The server rolls back whatever was uncommitted on a connection it loses, so the open transaction's work is
    gone (if the loss hit a ``COMMIT``, whether that took effect is unknown). The connection is discarded and
    the engine opens a new one for the next session: under the plugin the next test runs normally.

    It is a ``ConnectionError``, like `BackendUnavailableError`, and not the driver's ``OperationalError``: code
    that catches the driver's error to reconnect and retry would retry inside the same transaction, on the same
    dead connection, so it is not offered the chance. The driver's error is the ``__cause__`` and ``cause``.
    """

    def __init__(
        self, target: str, statement: str, cause: BaseException, *, committing: bool = False
    ) -> None:
        self.target = target
        self.statement = statement
        self.cause = cause
        short = " ".join(statement.split())
        if len(short) > 120:
            short = short[:117] + "..."
        detail = " ".join(str(cause).split()) or repr(cause.args)
        outcome = (
            "whether the COMMIT took effect is unknown"
            if committing
            else "what was not committed on it is rolled back, so the open transaction's work is gone"
        )
        where = f" while running {short!r}" if short else ""
        super().__init__(
            f"the connection to {target} was lost{where} ({type(cause).__name__}: {detail}); "
            f"{outcome}. The connection is discarded and the next session (the next test) opens a new one. "
            "Find out what ended it: the server restarting or dropping idle or long-running connections "
            "(pg_terminate_backend, KILL, a timeout), or code that closed the connection (session.connection)"
        )


class SandboxStillHeldError(ConnectionBusyError):
    """The test ended while another thread still held its shared sandbox's connection.

    The sandbox waited ``txscope_thread_timeout`` for the thread, then took the connection over and rolled
    everything back, that thread's work included; the thread's next use of the database fails.
    """

    def __init__(
        self, thread: str, since: str, now: str | None, *, waited: float, alive: bool, interrupted: bool
    ) -> None:
        self.thread = thread
        self.since = since
        self.now = now
        if not alive:
            super().__init__(
                f"thread {thread!r} began a transaction in the test's shared sandbox at {since} and ended "
                "without ending it, so it held the sandbox's connection until the test ended (other threads "
                "waited for it in vain); everything was rolled back; end every transaction in the thread that "
                "began it (a 'with' block ends it on every path)"
            )
            return
        position = f", and is now at {now}" if now else ""
        stopped = "; the statement it was running was interrupted" if interrupted else ""
        super().__init__(
            f"the test ended while thread {thread!r} still held the sandbox's connection: it took it at "
            f"{since}{position}. The sandbox waited {waited:g}s for it (txscope_thread_timeout), then rolled "
            f"everything back, that thread's work included{stopped}; the thread's next use of the database "
            "fails. Let threads finish before the test ends: join them, shut executors down and stop servers "
            "in the test or in a fixture it requests"
        )


class TransactionLeftOpenWarning(UserWarning):
    """A test ended with a transaction still open: one its code began and never ended.

    It was rolled back (with the sandbox, if it was in one), so nothing is left behind and later tests do not
    join it; but outside a test its work would never be committed. A warning, not an error: turn it into one with
    ``filterwarnings = error::pytest_txscope.TransactionLeftOpenWarning``.
    """

    def __init__(self, transactions: list[str]) -> None:
        self.transactions = transactions
        listing = "; ".join(transactions)
        super().__init__(
            f"the test ended with {len(transactions)} transaction(s) still open, which were rolled back (with "
            f"the sandbox, if they were in one): {listing}. Outside a test their work would never be committed (nor "
            "their connections given back): end each transaction (commit() or rollback(), or a 'with' block) "
            "and close sessions (session.close(), or 'with engine.session() as session:')"
        )


class SandboxIsolationWarning(UserWarning):
    """Code asked the sandbox's DB-API connection for an isolation level (or other transaction characteristics)
    that cannot apply: its statements run inside the sandbox's one transaction, begun before the test.

    Given once per connection and setting. The code goes on at the level of the sandbox's transaction; a test
    that depends on the level itself runs for real with ``@pytest.mark.txscope(commit=True)``.
    """

    def __init__(self, asked: str, how: str, in_effect: str) -> None:
        self.asked = asked
        self.in_effect = in_effect
        super().__init__(
            f"{asked} asked with {how} on the sandbox's connection cannot apply: every statement of the test runs "
            f"inside the sandbox's one transaction, which runs at {in_effect}, so the code runs at that level; "
            "to test behaviour that depends on the level, mark the test @pytest.mark.txscope(commit=True) (real "
            "transactions, tables cleaned afterwards)"
        )


class ConnectedBeforeSandboxWarning(UserWarning):
    """Code opened a real connection to the test database outside any sandbox (at import time, or in a fixture
    of a wider scope): if it keeps it, what it commits is committed for real, and no test rolls it back."""

    def __init__(self, driver: str, place: str) -> None:
        super().__init__(
            f"a real {driver} connection to the test database was opened at {place}, before any sandboxed test "
            "(when a module was imported, or in a fixture): if the code keeps it, what it commits is committed "
            "for real and no test rolls it back. Connect inside the test (per request, or in a function-scoped "
            "fixture) instead"
        )
