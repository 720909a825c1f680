"""Synchronous code over asyncio drivers: the greenlet bridge and the driver loop.

The core is written once, synchronously. An asyncio driver's connection (asyncpg, psycopg's
``AsyncConnection``, aiosqlite, aiomysql) reaches it through a small sync adapter whose every call hands a
coroutine to a `Runner`. Two runners exist, for the two places a connection can live:

- **On the caller's event loop** (`LoopRunner`): the async API runs the sync core inside `run_sync`, a greenlet
  whose parent is the calling task. Each coroutine the adapter hands over goes up to the parent, which awaits
  it on its own loop; the greenlet resumes with the result. The loop is never blocked, and the connection is
  used only from the loop that opened it (another loop gets `WrongEventLoopError`, not a driver's obscure
  "attached to a different loop").
- **On the driver loop** (`DriverLoopRunner`): one daemon thread per process running an event loop of its own.
  A sandbox's connection lives there, so that sync fixtures, teardown after the test's loop has closed, worker
  threads and tests on any event loop reach it alike. Called from `run_sync`, the wait is awaited (the caller's
  loop keeps running); called from plain sync code, the caller blocks until the statement is done.

Only this module imports greenlet, and only when a bridge is first used.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

from .errors import AsyncContextError, WrongEventLoopError

__all__ = [
    "DriverLoopRunner",
    "LoopRunner",
    "Runner",
    "await_",
    "driver_loop",
    "in_bridge",
    "run_sync",
]

T = TypeVar("T")


class Runner(Protocol):
    """Runs one of a driver's coroutines to its result, from sync code (see the module's docstring)."""

    def __call__(self, coroutine: Coroutine[Any, Any, T]) -> T: ...

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the driver's connection belongs to."""
        ...


@functools.cache
def _bridge() -> type[Any]:
    """The greenlet subclass that marks a bridge (greenlet is imported on first use)."""
    try:
        import greenlet
    except ImportError:
        from .errors import MissingDriverError

        raise MissingDriverError("asyncio", "greenlet", "asyncio") from None

    class BridgeGreenlet(greenlet.greenlet):  # type: ignore[misc]  # greenlet ships no type for subclassing
        """A greenlet running sync code for an async caller: its parent awaits what it hands up."""

    return BridgeGreenlet


def in_bridge() -> bool:
    """Whether this code runs inside `run_sync` (so `await_` may be called)."""
    if "greenlet" not in sys.modules:  # nothing ever bridged: no need to import it
        return False
    import greenlet

    return isinstance(greenlet.getcurrent(), _bridge())


async def run_sync(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run the sync ``function`` for async code, on this task's loop, without blocking it.

    ``function`` runs in a greenlet that shares this task's context (its `ContextVar` values, set there, stay
    set here): each `await_` inside it suspends the greenlet, this task awaits the awaitable on its loop, and
    the greenlet resumes with the result or the exception.
    """
    import greenlet

    parent = greenlet.getcurrent()
    child = _bridge()(function, parent)
    # A new greenlet starts with an empty context; the task's own makes current sessions and tokens work.
    child.gr_context = parent.gr_context
    handed_up = child.switch(*args, **kwargs)
    while not child.dead:
        try:
            value = await handed_up
        except BaseException:
            handed_up = child.throw(*sys.exc_info())
        else:
            handed_up = child.switch(value)
    result: T = handed_up
    return result


def await_(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` from sync code running inside `run_sync`, and return its result.

    Raises `AsyncContextError` elsewhere: sync code reached an asyncio driver's connection without the async API
    around it (an ``AsyncEngine`` used from a sync test or fixture, for instance).
    """
    import greenlet

    current = greenlet.getcurrent()
    if not isinstance(current, _bridge()):
        if asyncio.iscoroutine(awaitable):
            awaitable.close()  # never awaited on purpose: no "was never awaited" warning
        raise AsyncContextError()
    result: T = current.parent.switch(awaitable)
    return result


class LoopRunner:
    """Runs a connection's coroutines on the loop that opened it, through `await_` (see the module's docstring)."""

    __slots__ = ("loop", "what")

    def __init__(self, loop: asyncio.AbstractEventLoop, what: str) -> None:
        self.loop = loop
        self.what = what
        """What is run, for messages (``asyncpg connection to postgresql://app@db/shop``)."""

    def __call__(self, coroutine: Coroutine[Any, Any, T]) -> T:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not self.loop:
            coroutine.close()
            raise WrongEventLoopError(self.what, self.loop, running)
        return await_(coroutine)


class DriverLoopRunner:
    """Runs coroutines on the driver loop's thread (see the module's docstring); one per process."""

    __slots__ = ("_thread", "loop")

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="txscope-driver-loop", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def __call__(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise AsyncContextError()  # a driver callback calling back into the core would wait for itself
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        if in_bridge():
            return await_(asyncio.wrap_future(future))  # the caller's loop keeps running meanwhile
        return future.result()


_driver_loop_lock = threading.Lock()


def driver_loop() -> DriverLoopRunner:
    """The process's driver loop, started on first use (a daemon thread: it never delays the end of a run)."""
    with _driver_loop_lock:  # two threads asking first must not start two loops
        return _started_driver_loop()


@functools.cache
def _started_driver_loop() -> DriverLoopRunner:
    return DriverLoopRunner()
