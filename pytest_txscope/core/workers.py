"""Who takes a step on a connection: a thread, or an asyncio task running in one.

A connection shared by several workers stacks each one's transactions and lets one step run at a time (see
`pytest_txscope.lease`). For threads the worker is the `threading.Thread`. Tasks on one event loop run in the
same thread but interleave at every ``await``: each is a worker of its own, so that one task's statement never
lands inside another task's open savepoint. Outside a running task the worker is the thread, as before.
"""

from __future__ import annotations

import itertools
import sys
import threading
import weakref
from typing import Any, Protocol

__all__ = [
    "TaskWorker",
    "Worker",
    "current_worker",
    "find_worker",
    "thread_of",
    "worker_ident",
    "worker_label",
]


class Worker(Protocol):
    """A thread or a `TaskWorker`: what a shared connection tells apart."""

    @property
    def name(self) -> str:
        """Its name, for messages."""
        ...

    @property
    def ident(self) -> int | None:
        """A number no other live worker has (a thread's ``ident``; a task's is negative)."""
        ...

    def is_alive(self) -> bool:
        """False once it has ended (a task that is done, a thread that returned)."""
        ...


_numbers = itertools.count(1)


class TaskWorker:
    """An asyncio task, as a worker: its thread, its name, and whether it is done (the task is held weakly)."""

    __slots__ = ("__weakref__", "_task", "ident", "name", "thread")

    def __init__(self, task: Any, thread: threading.Thread) -> None:
        self._task = weakref.ref(task)
        self.thread = thread
        """The thread whose event loop runs the task: blocking it would stop every task of that loop."""
        self.ident = -next(_numbers)  # negative: never a thread's ident
        self.name = task.get_name()

    def is_alive(self) -> bool:
        """Whether the task is still running (not done, not collected)."""
        task = self._task()
        return task is not None and not task.done()


_tasks: weakref.WeakKeyDictionary[Any, TaskWorker] = weakref.WeakKeyDictionary()
_by_ident: weakref.WeakValueDictionary[int, TaskWorker] = weakref.WeakValueDictionary()
_lock = threading.Lock()


def current_worker() -> Worker:
    """The running asyncio task as a `TaskWorker` (the same object for the same task), else the thread."""
    thread = threading.current_thread()
    asyncio = sys.modules.get("asyncio")  # never imported here: code that uses no asyncio runs no task
    if asyncio is None:
        return thread
    # A running event loop installs its async-generator hooks in its thread for as long as it runs (asyncio's
    # and uvloop's run_forever do): without them no task runs here. Checked first because current_task()
    # raises outside a loop, and that exception cost more than the rest of a statement on SQLite.
    if sys.get_asyncgen_hooks().firstiter is None:
        return thread
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running event loop in this thread
        return thread
    if task is None:
        return thread
    worker = _tasks.get(task)
    if worker is None:
        with _lock:  # two threads' loops may meet a task of their own at once: the dicts are shared
            worker = _tasks.get(task)
            if worker is None:
                worker = _tasks[task] = TaskWorker(task, thread)
                _by_ident[worker.ident] = worker
    return worker


def worker_ident() -> int:
    """The ident of `current_worker` (what a transaction records as the worker that opened it)."""
    ident = current_worker().ident
    return ident if ident is not None else 0


def find_worker(ident: int | None) -> Worker | None:
    """The live thread or task whose ident is ``ident``, or None."""
    if ident is None:
        return None
    if ident < 0:
        return _by_ident.get(ident)
    return next((t for t in threading.enumerate() if t.ident == ident), None)


def worker_label(worker: Worker) -> str:
    """``thread 'MainThread'`` or ``task 'Task-3'``, for messages."""
    kind = "task" if isinstance(worker, TaskWorker) else "thread"
    return f"{kind} {worker.name!r}"


def thread_of(worker: Worker) -> Worker:
    """The thread a worker runs in: the thread itself, or the thread whose event loop runs the task."""
    return worker.thread if isinstance(worker, TaskWorker) else worker
