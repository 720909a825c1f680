"""The sandbox: one connection inside an outer transaction, which every pinned engine uses until it ends.

While a sandbox is active, each pinned engine's sessions are *guests* on the sandbox's connection: the code
under test's top-level transaction is sent as a SAVEPOINT, its commit releases it (and fires its ``on_commit``
callbacks), its rollback rolls back to it. When the sandbox ends, everything is rolled back, and the sandbox
checks that its outer transaction was still open, i.e. that nothing committed behind its back.

A sandbox started while its engine is already pinned by another sandbox nests inside it: its outer transaction
is a savepoint there. That is how data written once per module (or class, or run) is seen by every test in that
scope, each test rolling back to it, and the data itself rolled back when the scope ends.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

from .core import Channel, Engine, Policy, Session, SessionProvider, Transaction, TransactionState
from .core.engine import is_seconds
from .core.workers import Worker, current_worker, thread_of
from .dbapi import SandboxConnection
from .engine_kinds import pin_foreign
from .errors import (
    ConfigurationError,
    ConnectionBusyError,
    SandboxEscapeError,
    SandboxThreadError,
    TransactionStateError,
)
from .facades import facade_for
from .lease import Lease, wait_until_idle

__all__ = ["THREAD_MODES", "Sandbox"]

THREAD_MODES = ("shared", "strict")
"""The values of ``Sandbox(threads=...)`` and of the ``txscope_threads`` setting."""

_installing = threading.Lock()  # two threads arriving at once install one lease


# Active sandboxes, innermost last (wider scopes nest); integrations find the test's sandbox here.
_active: list[Sandbox] = []


class Sandbox:
    """Pin engines to one connection inside an outer transaction that is rolled back at the end.

    Args:
        engine: the engine whose connection the sandbox holds (it is pinned too).
        engines: more engines to pin: the application's own engines on the same database.
        protect_statements: run statements that the test's session (and the app's bare sessions) send
            outside any transaction block in a savepoint each, so that a failing one (``pytest.raises``) leaves
            the test usable. None (default) turns it on where one error aborts the transaction (PostgreSQL).
        threads: ``"shared"`` (default): every thread that uses a pinned engine works on the sandbox's
            connection, statement by statement, each thread's transactions stacked as savepoints (see
            docs/threads.md). ``"strict"``: other threads are refused with `SandboxThreadError` unless let in
            with `share()` or `allow_thread()`.

    Use it as a context manager:

        with Sandbox(engine, engines=[app_engine]) as sandbox:
            sandbox.session().execute("INSERT INTO t (x) VALUES (1)")
            app.do_work()  # its commits are savepoint releases
        # everything above is rolled back here
    """

    def __init__(
        self,
        engine: Engine,
        *,
        engines: Iterable[Any] = (),
        protect_statements: bool | None = None,
        threads: str = "shared",
    ) -> None:
        if threads not in THREAD_MODES:
            raise ConfigurationError(
                f"threads={threads!r} is not valid; use one of: {', '.join(THREAD_MODES)}"
            )
        self.engine = engine
        given = tuple(engines)
        self._foreign = tuple(e for e in given if not isinstance(e, Engine))
        """Engines of another library (SQLAlchemy's), pinned by the integration that registered their kind."""
        self.engines: tuple[Engine, ...] = (
            engine,
            *(e for e in given if isinstance(e, Engine) and e is not engine),
        )
        self._given = self.engines
        self.threads = threads
        """``"shared"`` or ``"strict"``: whether threads other than the one that started the sandbox may use it
        without `share()` / `allow_thread()`."""
        self.protect_statements = protect_statements
        self.active = False
        """True between `start()` and `stop()`."""
        self.parent: Sandbox | None = None
        """The sandbox this one nests in (wider scopes), or None."""
        self._channel: Channel | None = None
        self._host: Session | None = None
        self._base: Transaction | None = None
        self._state_mark = 0
        self._owner: Worker = threading.current_thread()  # start() records the worker (a task, perhaps)
        self._pins: list[tuple[Engine, SessionProvider | None]] = []
        self._guests: list[Session] = []
        self._test_session: Session | None = None
        self._cleanups: list[Callable[[], object]] = []
        self._shared = False
        self._allowed: set[threading.Thread] = set()
        self._lease: Lease | None = None
        self.thread_timeout = 10.0
        """Seconds a thread waits for the shared connection before `ConnectionBusyError` names the holder."""

    def share(self, *, timeout: float | None = None) -> None:
        """Let every thread use the pinned engines (what ``threads="shared"``, the default, does already); waits
        longer than ``timeout`` seconds for another thread raise `ConnectionBusyError`."""
        self._require_active()
        self._set_timeout(timeout)
        self._shared = True

    def allow_thread(self, thread: threading.Thread, *, timeout: float | None = None) -> None:
        """Let one more ``thread`` use the pinned engines (needed only with ``threads="strict"``)."""
        self._require_active()
        self._set_timeout(timeout)
        self._allowed.add(thread)

    def _set_timeout(self, timeout: float | None) -> None:
        if timeout is not None:
            if not is_seconds(timeout) or timeout == 0:
                raise ConfigurationError(
                    f"timeout={timeout!r} is not valid; use a number of seconds greater than 0 (and finite)"
                )
            self.thread_timeout = timeout
            if self.lease is not None:
                self.lease.timeout = timeout

    def _start_lease(self) -> Lease:
        """Share the connection from now on (a second thread came): the owner thread went without the lease
        until now, at no cost per statement; what it is doing now must end before the newcomer goes on."""
        root = self
        while root.parent is not None:
            root = root.parent
        with _installing:
            lease = root._lease
            if lease is not None:
                return lease
            assert self._channel is not None
            lease = Lease(self.thread_timeout, self._channel.stack)
            self._channel.gate = lease  # from here on the owner takes the lease too
            if not wait_until_idle(self._channel, self.thread_timeout):
                raise ConnectionBusyError(
                    f"thread {threading.current_thread().name!r} waited {self.thread_timeout:g}s for thread "
                    f"{self._owner.name!r} to finish a statement on the sandbox's connection; raise "
                    "txscope_thread_timeout"
                )
            root._lease = lease
            return lease

    @property
    def lease(self) -> Lease | None:
        """The thread lease of the connection, once the sandbox (or one it nests in) shares it."""
        root = self
        while root.parent is not None:
            root = root.parent
        return root._lease

    @staticmethod
    def current() -> Sandbox | None:
        """The innermost active sandbox (the running test's, under the plugin), or None."""
        return _active[-1] if _active else None

    @staticmethod
    def all_active() -> tuple[Sandbox, ...]:
        """Every active sandbox, the innermost last (one per database, with several databases)."""
        return tuple(_active)

    def add_cleanup(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` when the sandbox stops, before it rolls back (integrations unpin and close here)."""
        self._cleanups.append(callback)

    def __repr__(self) -> str:
        state = "active" if self.active else "inactive"
        return f"<Sandbox {self.engine.target} {state}>"

    # ----------------------------------------------------------------------------------------- life
    def start(self) -> Sandbox:
        """Take a connection (or nest in the active sandbox of ``engine``) and pin the engines."""
        if self.active:
            raise TransactionStateError("this sandbox is already active; start a new Sandbox instead")
        self._owner = current_worker()
        # A sandbox may be started again after stop(): nothing of its last run (an outer sandbox it nested in,
        # that one's engines) carries over.
        self.parent, self.engines = None, self._given
        outer = self.engine.pinned_to
        if isinstance(outer, Sandbox) and outer.active:
            outer._check_thread(self.engine)
            self.parent = outer
            assert outer._channel is not None
            self._channel = outer._channel
            policy = _guest_policy(implicit_joins=True, protect_statements=False, nested_virtual=False)
            self._host = Session.on_channel(outer._channel, self.engine, policy)
            engines = (*outer.engines, *(e for e in self.engines if e not in outer.engines))
            self.engines = engines
        else:
            self._host = self.engine.pooled_session()
            self._channel = self._host.channel
        self._base = self._host.begin()  # BEGIN (or a SAVEPOINT when nested), sent with the first statement
        self._base.thread = None  # every thread's work goes on top of it: no thread waits for it to end
        self._state_mark = len(self._channel.undo)  # session state changed from here on is undone at the end
        if self.protect_statements is None:
            self.protect_statements = self._channel.dialect.aborts_on_error
        for engine in self.engines:
            self._pins.append((engine, engine.pin(self)))
        self.active = True
        _active.append(self)
        try:
            for foreign in self._foreign:
                pin_foreign(self, foreign)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Roll everything back, unpin the engines and give the connection back.

        Raises `SandboxEscapeError` if the outer transaction had already been ended (a raw ``COMMIT``, MySQL
        DDL): what was committed then could not be rolled back. A connection that was lost is discarded
        without an error: the server rolled its work back, and the statement that found it lost has raised
        `ConnectionLostError` already.
        """
        if not self.active:
            return
        errors = self._stop_nested()
        channel, host, base = self._channel, self._host, self._base
        assert channel is not None
        assert host is not None
        assert base is not None
        lease = self.lease
        held = lease is not None and _wait_for_threads(lease, errors)
        self._run_cleanups(errors)
        self.active = False
        if self in _active:
            _active.remove(self)
        for engine, previous in reversed(self._pins):
            engine.pin(previous)
        self._pins.clear()
        try:
            escaped = self._roll_back(channel, base)
            self._restore_session(channel)
        finally:
            if lease is not None:
                if self.parent is None:  # the connection goes back to the pool unshared
                    lease.reset()
                    channel.gate = None
                    self._lease = None
                elif held:
                    lease.release()
            host.close()
        if escaped is not None:
            raise SandboxEscapeError(escaped, channel.reported)
        if errors:
            raise errors[0]

    def _roll_back(self, channel: Channel, base: Transaction) -> str | None:
        """Roll back the outer transaction with what the guests left open; return how it escaped, if the
        server no longer held it (None when nothing escaped)."""
        channel.stack.end_above(base, [guest.lane for guest in self._guests])
        self._guests.clear()
        escaped: str | None = None
        if base.state is TransactionState.BROKEN:
            # Not when the connection was lost or a ROLLBACK ended it: then nothing escaped.
            if channel.stack.escaped:
                escaped = base.failure or "the server ended it"
        elif (
            channel.stack.server_open
            and channel.dialect.is_alive(channel.connection)
            and not channel.open_now()
        ):
            escaped = "the server reports no open transaction"
            channel.break_all(escaped)  # nothing is left to roll back (SQLite would refuse a ROLLBACK)
        if base.state is TransactionState.ACTIVE:
            base.rollback()
        return escaped

    def _restore_session(self, channel: Channel) -> None:
        """Undo the session state the test changed that the rollback left in place (MariaDB variables and
        locks, PostgreSQL advisory locks, SQLite PRAGMAs), so that the next test starts on a clean connection.
        What cannot be undone is dropped with the connection: at once, or when the sandbox this one nests in
        ends (a ``:memory:`` database, which a new connection would not reach, is kept)."""
        if channel.restore_state(self._state_mark) or self.parent is not None or channel.reconnect is None:
            return
        with contextlib.suppress(Exception):  # closed, the engine's pool drops it instead of reusing it
            channel.connection.close()

    def _run_cleanups(self, errors: list[BaseException]) -> None:
        for callback in reversed(self._cleanups):
            try:
                callback()
            except Exception as exc:  # every cleanup runs; the first failure is raised by stop()
                errors.append(exc)
        self._cleanups.clear()

    def _stop_nested(self) -> list[BaseException]:
        """Stop the sandboxes still active inside this one (stopped out of order): left active, they would go on
        using the connection this one gives back to the pool. Returns the error to raise, and theirs."""
        nested = []
        for box in reversed(_active):
            outer = box.parent
            while outer is not None and outer is not self:
                outer = outer.parent
            if outer is self:
                nested.append(box)
        if not nested:
            return []
        errors: list[BaseException] = [
            TransactionStateError(
                f"a sandbox on {self.engine.target} was stopped while {len(nested)} sandbox(es) nested in it were "
                "active; they were stopped first, and everything in them rolled back: stop inner sandboxes before "
                "outer ones (use them as 'with' blocks, or fixtures of narrower scope)"
            )
        ]
        for box in nested:
            try:
                box.stop()
            except Exception as exc:  # this one stops all the same; the first error is raised at the end
                errors.append(exc)
        return errors

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------- handing out
    def session(self) -> Session:
        """The test's own session on the sandbox connection (the same one on every call).

        Statements it runs outside blocks go straight into the sandbox's transaction; ``with session as tx:``
        opens a transaction that behaves as the application's would (a savepoint, released on commit).
        """
        self._require_active()
        if self._test_session is None or self._test_session.closed:
            assert self._channel is not None
            self._test_session = self._new_guest(self.engine, implicit_savepoint=False)
        return self._test_session

    def connection(self, connect_kwargs: Mapping[str, Any] | None = None) -> SandboxConnection:
        """A DB-API connection object on the sandbox connection, for code (or a library) that wants one.

        Its ``commit()`` releases a savepoint and ``rollback()`` rolls back to it; ``close()`` leaves the real
        connection open; in autocommit mode each statement goes straight into the sandbox's transaction.
        ``connect_kwargs`` are the keyword arguments
        the code gave the driver's ``connect()`` (``detect_types``, ``row_factory``, ``cursorclass`` ...): the
        connection honours them as the driver's own would.
        """
        self._require_active()
        self._check_thread(self.engine)
        face = facade_for(self.engine.dialect.driver)
        return face(
            self._new_guest(self.engine, implicit_savepoint=True),
            lambda: self._check_thread(self.engine),
            connect_kwargs=connect_kwargs,
        )

    def adopt(self, connection: SandboxConnection) -> bool:
        """Re-point ``connection``, made by a sandbox that has ended on this sandbox's real connection, at this
        sandbox, as if `connection()` had just made it (see `SandboxConnection.rebind`): a pool that kept it
        goes on with it instead of reconnecting. False (and nothing changed) when that is not safe: it is
        closed, its sandbox is still active (an outer one), or it was made on another real connection."""
        self._require_active()
        assert self._channel is not None
        if not connection.reusable_on(self._channel.connection):
            return False
        self._check_thread(self.engine)
        connection.rebind(
            self._new_guest(self.engine, implicit_savepoint=True), lambda: self._check_thread(self.engine)
        )
        return True

    def guest_session(self, engine: Engine) -> Session:
        """A new session of a pinned ``engine`` (what ``engine.session()`` gets while the sandbox is active)."""
        self._check_thread(engine)
        return self._new_guest(engine, implicit_savepoint=True)

    def _new_guest(self, engine: Engine, *, implicit_savepoint: bool) -> Session:
        assert self._channel is not None
        policy = _guest_policy(
            implicit_joins=not implicit_savepoint,
            protect_statements=bool(self.protect_statements),
            nested_virtual=engine.nested == "virtual",
        )
        guest = Session.on_channel(self._channel, engine, policy)
        self._guests.append(guest)
        return guest

    def _require_active(self) -> None:
        if not self.active:
            raise TransactionStateError("this sandbox is not active; use it inside 'with Sandbox(...)'")

    def _check_thread(self, engine: Engine) -> None:
        if not self.active:
            raise TransactionStateError(
                f"{engine!r} is pinned to a sandbox that has ended; this is a bug in pinning, please report it"
            )
        current = current_worker()
        if current is self._owner:
            return
        # Tasks of the owner's own thread need no leave even in strict mode: strict is about threads. They
        # still take turns with the lease, as threads do.
        thread = threading.current_thread()
        if self.threads == "strict" and thread is not thread_of(self._owner) and not self._lets_in(thread):
            raise SandboxThreadError(thread.name, thread_of(self._owner).name, repr(engine))
        if self.lease is None:
            self._start_lease()

    def _lets_in(self, thread: threading.Thread) -> bool:
        box: Sandbox | None = self
        while box is not None:  # a wider-scope sandbox's sharing covers the tests inside it
            if box._shared or thread in box._allowed:
                return True
            box = box.parent
        return False


def _wait_for_threads(lease: Lease, errors: list[BaseException]) -> bool:
    """Before anything is unpinned, wait for other threads' transactions in flight; True once the lease is
    held. A wait that times out is noted in ``errors`` and the holder forgotten (its work is rolled back)."""
    try:
        lease.acquire()
    except ConnectionBusyError as exc:
        errors.append(exc)
        lease.reset()  # the holder's work is rolled back; it must not block later work
        return False
    return True


@functools.cache
def _guest_policy(*, implicit_joins: bool, protect_statements: bool, nested_virtual: bool) -> Policy:
    """The policy of a guest session (a few combinations, made once)."""
    return Policy(
        guest=True,
        implicit_joins=implicit_joins,
        protect_statements=protect_statements,
        nested_virtual=nested_virtual,
    )
