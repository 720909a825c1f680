"""A connection that is busy, lost, or still held when the test ends."""

from __future__ import annotations

from pytest_txscope.errors.base import TxScopeError

__all__ = ["ConnectionBusyError", "ConnectionLostError", "SandboxStillHeldError"]


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
