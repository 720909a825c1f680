"""Hypothesis inside the sandbox: every example, and every state-machine run, rolled back on its own.

**@given tests.** pytest sets a test's fixtures up once, and hypothesis then calls the test body once per example,
so rows one example writes through ``db_session`` / ``sa_session`` / the application's engines would be seen by the
next (HypothesisWorks/hypothesis#377). Under the plugin, each example of a ``@given`` test that has a sandbox (it
requests ``db_sandbox``, ``db_session``, ``async_db_session`` or ``sa_session``, directly or through its own
fixtures, or is marked ``@pytest.mark.txscope``) runs in a `Sandbox` nested in the test's: a savepoint, rolled back
when the example ends. After each example the test's ORM session (``sa_session``, ``current_session()``) is closed,
so no object or connection of one example reaches the next; objects loaded before the first example (in fixtures)
are detached then. Work such a session left uncommitted before the first example is committed first (a savepoint
release inside the test's sandbox), so that every example starts from it.

**The function_scoped_fixture health check.** Hypothesis fails a ``@given`` test that names a function-scoped
fixture among its arguments, since such fixtures are not reset between examples. Ours are, by the above. When every
function-scoped fixture hypothesis would name is one of those four (it looks at the test's own arguments only, not
at the fixtures the plugin puts in front of them, nor at the arguments of direct parametrization), the check is
suppressed for that test; its other settings are kept. When the test also names any other function-scoped fixture
(``tmp_path``, or one of the project's), the check is left alone, so the warning about that fixture still comes. The
suppression is applied with the public ``@settings`` decorator; for a test that already has its own ``@settings``
(which hypothesis refuses to decorate twice, and offers no public way to amend) it is set on the attribute
hypothesis reads at call time, as hypothesis' own pytest plugin does for its ``differing_executors`` check.

**Async @given tests.** An ``async def`` test under ``@given`` (run by pytest-asyncio or anyio's plugin, which
wrap hypothesis' inner test when it runs) gets the same nested sandbox per example, from an ``async def``
wrapper: those plugins recognise an async test by its inner test being a coroutine function, at collection and
again at call time, so the wrapper has to stay one. The sandbox's connection is a sync driver's (or lives on the
driver loop), so starting and stopping it needs no event loop of the test's.

**State machines.** `SandboxStateMachine` is a ``RuleBasedStateMachine`` whose every run has a sandbox of its own
(nested in the test's), rolled back in ``teardown()``::

    class Inventory(SandboxStateMachine):
        @rule(k=st.integers(0, 5))
        def add(self, k):
            self.session.execute("INSERT INTO items (id) VALUES (:k)", {"k": k})

    def test_inventory(db_session):
        run_state_machine_as_test(Inventory)
"""

from __future__ import annotations

import functools
import inspect
import sys
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from hypothesis import HealthCheck, settings
from hypothesis.errors import InvalidArgument
from hypothesis.stateful import RuleBasedStateMachine

from .core import Engine, Session
from .errors import TxScopeError
from .sandbox import Sandbox

if TYPE_CHECKING:
    import pytest
    from sqlalchemy.orm import Session as ORMSession

__all__ = [
    "NoMachineEngineError",
    "SandboxStateMachine",
    "note_fixture",
    "prepare_items",
    "settle_health_check",
]

_OURS = frozenset({"async_db_session", "db_sandbox", "db_session", "sa_session"})
_WRAPPED = "_txscope_per_example"
# Prepared items (by node id; items cannot be weakly referenced) -> their arguments, which hypothesis' check
# looks at, until the end of their setup; those naming a function-scoped fixture of their own; the tests whose
# check is suppressed already (parametrized items share one function).
_pending: dict[str, frozenset[str]] = {}
_foreign: set[str] = set()
_suppressed: weakref.WeakSet[Callable[..., Any]] = weakref.WeakSet()


class NoMachineEngineError(TxScopeError, RuntimeError):
    """A `SandboxStateMachine` started with no ``engine`` set and no active sandbox to nest in."""

    def __init__(self, machine: str) -> None:
        self.machine = machine
        super().__init__(
            f"{machine} found no engine for its sandbox: it has no 'engine' class attribute and no sandbox is "
            "active; run it inside a test that requests db_session or db_sandbox (or is marked "
            f"@pytest.mark.txscope), or set {machine}.engine to a pytest_txscope.Engine (db_engine)"
        )


# ------------------------------------------------------------------------------------------ @given tests
def prepare_items(items: Iterable[pytest.Item]) -> None:
    """Run each example of the sandboxed ``@given`` tests among ``items`` in a nested sandbox (collection)."""
    for item in items:
        handle: Any = getattr(getattr(item, "obj", None), "hypothesis", None)
        inner = getattr(handle, "inner_test", None)
        if inner is None or not _sandboxed(item):
            continue
        if not getattr(inner, _WRAPPED, False):
            wrap = _per_async_example if inspect.iscoroutinefunction(inner) else _per_example
            handle.inner_test = wrap(inner)
        _pending[item.nodeid] = frozenset(inspect.signature(getattr(item, "function", inner)).parameters)
        _foreign.discard(item.nodeid)


def _sandboxed(item: pytest.Item) -> bool:
    if not _OURS.isdisjoint(getattr(item, "fixturenames", ())):
        return True
    marker = item.get_closest_marker("txscope")
    return marker is not None and marker.kwargs.get("commit") is not True


def note_fixture(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> None:
    """Remember a function-scoped fixture that hypothesis' check would name, other than ours (fixture setup)."""
    if not _pending or fixturedef.scope != "function" or fixturedef.argname in _OURS:
        return
    nodeid = request.node.nodeid
    if fixturedef.argname not in _pending.get(nodeid, ()):
        return
    # Direct parametrization is set up as a pseudo-fixture of this name, which hypothesis does not name.
    if getattr(fixturedef.func, "__name__", "") != "get_direct_param_fixture_func":
        _foreign.add(nodeid)


def settle_health_check(item: pytest.Item) -> None:
    """Suppress function_scoped_fixture for a prepared test whose only such fixtures are ours (end of setup)."""
    arguments = _pending.pop(item.nodeid, None)
    if arguments is None or item.nodeid in _foreign or not arguments & _OURS:
        _foreign.discard(item.nodeid)
        return
    function = getattr(item, "function", None)
    if function is None or function in _suppressed:
        return
    _suppressed.add(function)
    try:
        settings(suppress_health_check=_with_check(settings()))(function)  # settings(): the defaults
    except InvalidArgument:  # the test has its own @settings: amend them where hypothesis reads them
        current: settings = getattr(function, "_hypothesis_internal_use_settings", None) or settings()
        amended = settings(parent=current, suppress_health_check=_with_check(current))
        function._hypothesis_internal_use_settings = amended


def _with_check(current: settings) -> list[HealthCheck]:
    return [*current.suppress_health_check, HealthCheck.function_scoped_fixture]


def _per_example(inner: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(inner)  # hypothesis derives the example database key and the seed from the test's source
    def run_example(*args: Any, **kwargs: Any) -> Any:
        outer = Sandbox.current()
        if outer is None:
            return inner(*args, **kwargs)
        sandbox, orm = _start_nested(outer.engine, outer)
        try:
            return inner(*args, **kwargs)
        finally:
            _stop_nested(sandbox, orm)

    setattr(run_example, _WRAPPED, True)
    return run_example


def _per_async_example(inner: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(inner)
    async def run_example(*args: Any, **kwargs: Any) -> Any:
        outer = Sandbox.current()
        if outer is None:
            return await inner(*args, **kwargs)
        sandbox, orm = _start_nested(outer.engine, outer)
        try:
            return await inner(*args, **kwargs)
        finally:
            _stop_nested(sandbox, orm)

    setattr(run_example, _WRAPPED, True)
    return run_example


def _start_nested(engine: Engine, outer: Sandbox | None) -> tuple[Sandbox, ORMSession | None]:
    """Start a sandbox in ``outer``; the ORM session of ``outer`` (if any) serves in it until `_stop_nested`."""
    orm = None
    if outer is not None and "pytest_txscope.sqlalchemy" in sys.modules:
        from . import sqlalchemy

        orm = sqlalchemy.existing_session(outer)
        if orm is not None and orm.in_transaction():
            orm.commit()  # before the savepoint: its own savepoint is below it and must end first
    sandbox = Sandbox(engine, protect_statements=outer.protect_statements if outer else None).start()
    if orm is not None:
        # current_session() in the nested sandbox is the test's sa_session, not a second ORM session.
        sqlalchemy.share_session(sandbox, orm)
    return sandbox, orm


def _stop_nested(sandbox: Sandbox, orm: ORMSession | None) -> None:
    try:
        if orm is not None:
            orm.close()  # its connection is the nested sandbox's: give it back while the sandbox is open
    finally:
        sandbox.stop()


# ------------------------------------------------------------------------------------------- state machines
class SandboxStateMachine(RuleBasedStateMachine):
    """A ``RuleBasedStateMachine`` whose every run writes into a sandbox of its own, rolled back at teardown.

    The sandbox is on ``engine`` if the class sets it (a savepoint when a sandbox pins that engine, a transaction
    of its own otherwise), else nested in the active sandbox (the test's, under the plugin). It ends after
    ``teardown()``, whether or not an override calls ``super().teardown()``, and when a subclass' ``__init__``
    fails after ``super().__init__()`` (hypothesis calls no ``teardown()`` then).
    """

    engine: ClassVar[Engine | None] = None
    """The engine of each run's sandbox; None: the active sandbox's engine."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, guard in (("__init__", _end_on_error), ("teardown", _end_after)):
            if name in cls.__dict__:
                setattr(cls, name, guard(cls.__dict__[name]))

    def __init__(self) -> None:
        super().__init__()
        outer = Sandbox.current()
        engine = type(self).engine or (outer.engine if outer is not None else None)
        if engine is None:
            raise NoMachineEngineError(type(self).__name__)
        self.sandbox, self._orm = _start_nested(engine, outer if outer and engine in outer.engines else None)
        """This run's sandbox."""

    @property
    def session(self) -> Session:
        """The run's `pytest_txscope.Session` (its sandbox's test session)."""
        return self.sandbox.session()

    @property
    def sa_session(self) -> ORMSession:
        """The run's SQLAlchemy ORM session (the test's ``sa_session`` when it has one), closed at teardown."""
        from .sqlalchemy import session_for

        return session_for(self.sandbox)

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            self._end_run()

    def _end_run(self) -> None:
        if "sandbox" in self.__dict__:  # absent when __init__ failed before starting it
            _stop_nested(self.sandbox, self._orm)


def _end_on_error(init: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(init)
    def run_init(self: SandboxStateMachine, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except BaseException:
            self._end_run()
            raise

    return run_init


def _end_after(teardown: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(teardown)
    def run_teardown(self: SandboxStateMachine) -> None:
        try:
            teardown(self)
        finally:
            self._end_run()

    return run_teardown
