"""The sync contract run through the asyncio API: `Blocking` proxies an `AsyncEngine` and what it hands out.

A contract test is written once, in sync code (``with engine as tx: tx.execute(...)``). For the async flavour
its ``engine`` is a `Blocking` proxy of an `AsyncEngine`: every call is awaited in one asyncio task of its own
(`TaskRunner`), on a loop in a thread of the harness, and every object of the asyncio API the call returns is
proxied the same way (``with`` runs ``async with``). All the calls of one test run in that one task, so the
current session and blocks behave as in an ``async def`` test written by hand; properties are read directly.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import threading
from collections.abc import Callable
from types import SimpleNamespace, TracebackType
from typing import Any

from pytest_txscope import (
    AsyncCursor,
    AsyncEngine,
    AsyncSession,
    AsyncTransaction,
    TransactionBlock,
    current_async_session,
    ensure_transaction,
    transaction,
)

_PROXIED = (AsyncEngine, AsyncSession, AsyncTransaction, AsyncCursor, TransactionBlock)


@functools.cache
def _loop() -> asyncio.AbstractEventLoop:
    """The harness's event loop, in a daemon thread of its own (started once)."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="aio-harness-loop", daemon=True).start()
    return loop


class TaskRunner:
    """One asyncio task that runs the calls it is given, one at a time, in order (a test's task)."""

    def __init__(self) -> None:
        self.loop = _loop()
        self._queue: asyncio.Queue[Any] | None = None
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._task = asyncio.run_coroutine_threadsafe(self._serve(ready), self.loop)
        ready.result(10)
        self._proxies: dict[int, tuple[object, Blocking]] = {}

    async def _serve(self, ready: concurrent.futures.Future[None]) -> None:
        self._queue = asyncio.Queue()
        ready.set_result(None)
        while True:
            item = await self._queue.get()
            if item is None:
                return
            function, args, kwargs, future = item
            try:
                result = function(*args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)

    def call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``function(*args, **kwargs)`` in the task (awaiting what it returns); its result, proxied."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        assert self._queue is not None
        self.loop.call_soon_threadsafe(self._queue.put_nowait, (function, args, kwargs, future))
        return self.wrap(future.result(60))

    def wrap(self, value: Any) -> Any:
        """``value``, or the one `Blocking` proxy of an object of the asyncio API."""
        if not isinstance(value, _PROXIED) and not hasattr(value, "__aenter__"):
            return value
        known = self._proxies.get(id(value))
        if known is None:
            known = self._proxies[id(value)] = (value, Blocking(value, self))
        return known[1]

    def close(self) -> None:
        """End the task."""
        if self._queue is not None:
            self.loop.call_soon_threadsafe(self._queue.put_nowait, None)
            self._task.result(10)


class Blocking:
    """A sync face of an asyncio API object: its calls run in the `TaskRunner`'s task (see the module)."""

    def __init__(self, target: Any, runner: TaskRunner) -> None:
        self.target = target
        self.runner = runner

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.target, name)
        if not callable(value):
            return self.runner.wrap(value)
        return functools.partial(self.runner.call, _unwrapping(value))

    def __enter__(self) -> Any:
        return self.runner.call(self.target.__aenter__)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Any:
        return self.runner.call(self.target.__aexit__, exc_type, exc, tb)


def unwrap(value: Any) -> Any:
    """The object a `Blocking` proxy stands for (anything else as it is)."""
    return value.target if isinstance(value, Blocking) else value


def _unwrapping(function: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return function(*map(unwrap, args), **{k: unwrap(v) for k, v in kwargs.items()})

    return call


def async_engine(url: str, **options: Any) -> Blocking:
    """A `Blocking` `AsyncEngine` on ``url``, in a task of its own (`close_engine` ends both)."""
    runner = TaskRunner()
    return runner.call(AsyncEngine.from_url, url, **options)  # type: ignore[no-any-return]


def close_engine(engine: Any) -> None:
    """Dispose of an engine (a `Blocking` one in its task, which then ends)."""
    engine.dispose()
    if isinstance(engine, Blocking):
        engine.runner.close()


def api_of(engine: Any) -> SimpleNamespace:
    """``transaction``, ``ensure_transaction`` and ``current_session`` as a test of ``engine``'s flavour calls
    them: the sync functions, or for a `Blocking` engine the async API's, run in its task."""
    if not isinstance(engine, Blocking):
        from pytest_txscope import current_session

        return SimpleNamespace(
            transaction=transaction, ensure_transaction=ensure_transaction, current_session=current_session
        )
    runner = engine.runner
    return SimpleNamespace(
        transaction=lambda engine=None: runner.call(transaction, unwrap(engine)),
        ensure_transaction=lambda engine=None: runner.call(ensure_transaction, unwrap(engine)),
        current_session=lambda: runner.call(current_async_session),
    )
