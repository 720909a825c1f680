"""asyncio tasks in a sandbox, on every backend: each task is a worker of its own, as threads are.

Tasks of one event loop run in one thread but interleave at every ``await``: one task's statement must not land
inside another task's open savepoint (its rollback would undo it). The sync core runs for them through the
greenlet bridge (`pytest_txscope.bridge.run_sync`, what the asyncio API and the async faces use), so a task
that must wait lets its loop run the task it waits for.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from pytest_txscope import ConnectionBusyError, Engine, Sandbox, Transaction
from pytest_txscope.bridge import run_sync

from ..backends import Peer

WAIT = 10.0  # bound of every wait for an event: never reached when the code under test is right

pytest.importorskip("greenlet")


_ids = iter(range(1, 1_000_000))


def insert(tx: Transaction, name: str) -> None:
    tx.execute("INSERT INTO items (id, name) VALUES (:id, :name)", {"id": next(_ids), "name": name})


def names(engine: Engine) -> list[str]:
    with engine.session() as session:
        return sorted(row[0] for row in session.fetchall("SELECT name FROM items"))


async def two_tasks(engine: Engine, a_late: Callable[[Transaction], Any]) -> list[str]:
    """Task A opens a transaction and writes; task B opens one above it and writes; A then calls ``a_late``
    on its transaction while B's is open, and B rolls back a moment later. Returns the order of events."""
    order: list[str] = []
    a_wrote, b_wrote = asyncio.Event(), asyncio.Event()

    async def task_a() -> None:
        tx = await run_sync(engine.begin)
        await run_sync(insert, tx, "a1")
        a_wrote.set()
        await asyncio.wait_for(b_wrote.wait(), WAIT)
        await run_sync(a_late, tx)
        order.append("a2")
        await run_sync(tx.commit)

    async def task_b() -> None:
        await asyncio.wait_for(a_wrote.wait(), WAIT)
        tx = await run_sync(engine.begin)
        await run_sync(insert, tx, "b1")
        b_wrote.set()
        await asyncio.sleep(0.05)  # A tries its statement meanwhile
        order.append("b rolls back")
        await run_sync(tx.rollback)

    await asyncio.wait_for(asyncio.gather(task_a(), task_b()), 3 * WAIT)
    return order


def test_a_task_waits_for_the_transaction_another_task_opened_above_its_own(
    engine: Engine, peer: Peer
) -> None:
    with Sandbox(engine) as sandbox:
        order = asyncio.run(two_tasks(engine, lambda tx: insert(tx, "a2")))
        # Without tasks as workers, a2 would go inside B's savepoint and be rolled back with it.
        assert order == ["b rolls back", "a2"]
        assert names(engine) == ["a1", "a2"]
        assert sandbox.lease is not None
    assert peer.fetchall("SELECT count(*) FROM items") == [(0,)]


def test_a_sync_call_that_would_wait_for_a_task_of_its_own_loop_is_told_at_once(engine: Engine) -> None:
    async def main() -> None:
        a_open, b_done = asyncio.Event(), asyncio.Event()

        async def task_b() -> None:
            tx = await run_sync(engine.begin)
            await run_sync(insert, tx, "b1")
            a_open.set()
            await asyncio.wait_for(b_done.wait(), WAIT)
            await run_sync(tx.rollback)

        b = asyncio.create_task(task_b(), name="task-b")
        tx = await run_sync(engine.begin)  # the test's task: its transaction is below B's
        await asyncio.wait_for(a_open.wait(), WAIT)
        try:
            with pytest.raises(ConnectionBusyError) as caught:
                insert(tx, "blocked")  # sync, outside the bridge: it cannot let the loop run task-b
        finally:
            b_done.set()
            await b
        await run_sync(tx.rollback)
        message = str(caught.value)
        assert message.startswith("task 'Task-")
        assert "must wait for task 'task-b', on the same event loop" in message
        assert "make the call from async code" in message

    with Sandbox(engine):
        asyncio.run(main())


def test_tasks_of_the_owner_thread_share_a_strict_sandbox(engine: Engine) -> None:
    async def write(name: str) -> None:
        tx = await run_sync(engine.begin)
        await run_sync(insert, tx, name)
        await run_sync(tx.commit)

    async def main() -> None:
        await asyncio.gather(write("t1"), write("t2"))

    with Sandbox(engine, threads="strict"):
        asyncio.run(main())
        assert names(engine) == ["t1", "t2"]


def test_a_thread_that_would_wait_for_a_task_of_its_own_idle_loop_is_told_at_once(engine: Engine) -> None:
    # The thread owns an event loop that is not running now (between two run_until_complete calls, as a test
    # driving an async app step by step does): a task of that loop holds a transaction open above the thread's,
    # and can never end it while the thread waits, so waiting out the timeout would only hide the cause.
    loop = asyncio.new_event_loop()

    async def events() -> tuple[asyncio.Event, asyncio.Event]:
        return asyncio.Event(), asyncio.Event()

    opened, release = loop.run_until_complete(events())

    async def holder() -> None:
        tx = await run_sync(engine.begin)
        await run_sync(insert, tx, "b1")
        opened.set()
        await asyncio.wait_for(release.wait(), WAIT)
        await run_sync(tx.rollback)

    try:
        with Sandbox(engine) as sandbox:
            sandbox.share(timeout=3)  # before the fix: this long, then a timeout naming no loop
            tx = engine.begin()  # the thread's transaction, below the task's
            task = loop.create_task(holder(), name="holder")
            loop.run_until_complete(asyncio.wait_for(opened.wait(), WAIT))
            try:
                with pytest.raises(ConnectionBusyError) as caught:
                    insert(tx, "blocked")
            finally:
                release.set()
                loop.run_until_complete(task)
            insert(tx, "after")  # the task's transaction has ended: the thread goes on
            tx.rollback()
            assert sandbox.lease is not None
            assert sandbox.lease.timeouts == []  # told at once, not after the timeout
    finally:
        loop.close()
    message = str(caught.value)
    # The test's own thread: MainThread, except on the workers of pytest-xdist < 3.6, which run tests in another.
    me = threading.current_thread().name
    assert message.startswith(f"thread '{me}' must wait for task 'holder', which runs on an event loop of ")
    assert "this same thread" in message
    assert "run the call on that loop" in message
