"""Misuse of a transaction or of the sandbox: escapes, refusals, engines and event loops."""

from __future__ import annotations

from pytest_txscope.errors.base import ConfigurationError, TransactionStateError, TxScopeError

__all__ = [
    "AsyncContextError",
    "DatabaseAccessError",
    "EngineMismatchError",
    "ImplicitCommitError",
    "MissingEngineError",
    "QueryCountError",
    "SandboxEscapeError",
    "SandboxRefusedError",
    "SandboxThreadError",
    "SyncWithError",
    "UnpinnedEngineError",
    "UnsupportedAsyncBackendError",
    "UnsupportedConnectionError",
    "WrongEventLoopError",
]


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


class UnsupportedAsyncBackendError(TxScopeError, RuntimeError):
    """A sandboxed async test runs on an async library other than asyncio (anyio's trio backend)."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        super().__init__(
            f"this test runs on anyio's {backend!r} backend; pytest-txscope's sandbox supports asyncio only "
            "(SQLAlchemy's async engines and the async API run on asyncio); run it on asyncio: return "
            '"asyncio" from the anyio_backend fixture, or leave out the test\'s other backends'
        )


class SyncWithError(TxScopeError, TypeError):
    """An object of the asyncio API was used in a sync ``with`` statement."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(
            f"{what} belongs to the asyncio API and cannot be used in a sync 'with' statement; write "
            f"'async with {what}' in async code, or use a sync Engine (Engine.from_url) in sync code"
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


class QueryCountError(TxScopeError, AssertionError):
    """A ``db_assert_num_queries`` block sent another number of statements than expected."""

    def __init__(self, expected: int, sent: list[str], scope: str = "") -> None:
        self.expected = expected
        self.sent = sent
        word = "query" if expected == 1 else "queries"
        verb = "was" if len(sent) == 1 else "were"
        head = f"expected {expected} {word}{scope}, {len(sent)} {verb} sent"
        listing = "".join(f"\n{number}. {line}" for number, line in enumerate(sent, 1))
        super().__init__(f"{head}:{listing}" if sent else head)
