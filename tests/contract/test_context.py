"""The current session is per thread and per asyncio task."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from pytest_txscope import Engine, MissingEngineError, Session, current_session, transaction


# One connection per :memory: engine: threads wait for it (test_memory_engine_serialises_threads).
@pytest.mark.backends("sqlite-file", "postgresql", "mysql")
def test_concurrent_threads_get_separate_sessions(engine: Engine) -> None:
    barrier = threading.Barrier(3, timeout=10)

    def work(i: int) -> tuple[int, int]:
        with engine as tx:
            barrier.wait()  # all three sessions are open at the same time
            return id(tx.session), id(tx.session.connection)

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(work, range(3)))
    assert len({s for s, _ in results}) == 3
    assert len({c for _, c in results}) == 3


def test_memory_engine_serialises_threads() -> None:
    engine = Engine.from_url("sqlite:///:memory:")
    with engine as tx:
        tx.execute("CREATE TABLE t (x INTEGER)")
    order: list[str] = []
    started = threading.Event()

    def other() -> None:
        started.set()
        with engine as tx:  # waits until the main thread's session gives the one connection back
            order.append("other")
            tx.execute("INSERT INTO t VALUES (2)")

    with engine as tx:
        thread = threading.Thread(target=other)
        thread.start()
        started.wait(5)
        tx.execute("INSERT INTO t VALUES (1)")
        order.append("main")
    thread.join(10)
    assert order == ["main", "other"]
    with engine.session() as s:
        assert s.fetchall("SELECT x FROM t ORDER BY x") == [(1,), (2,)]


def test_memory_engine_wait_has_a_timeout() -> None:
    from pytest_txscope import ConnectionBusyError

    engine = Engine.from_url("sqlite:///:memory:", acquire_timeout=0.2)
    errors: list[BaseException] = []

    def other() -> None:
        try:
            with engine.session():
                pass
        except BaseException as exc:
            errors.append(exc)

    with engine.session():
        thread = threading.Thread(target=other)
        thread.start()
        thread.join(10)
    assert len(errors) == 1
    assert isinstance(errors[0], ConnectionBusyError)
    assert str(errors[0]) == (
        "waited 0.2s for a connection of sqlite:///:memory:: all 1 are in use by other threads; close sessions "
        "sooner, raise max_connections, or (for sqlite:///:memory:) share one session"
    )


def test_a_thread_started_inside_a_session_sees_none(engine: Engine) -> None:
    seen: list[object] = []

    def child() -> None:
        seen.append(current_session())
        try:
            with transaction():
                pass
        except MissingEngineError as exc:
            seen.append(exc)

    with engine as tx:
        assert current_session() is tx.session
        thread = threading.Thread(target=child)
        thread.start()
        thread.join(10)
    assert seen[0] is None
    assert isinstance(seen[1], MissingEngineError)


@pytest.mark.backends("sqlite-file", "postgresql", "mysql")  # two tasks cannot both hold :memory:'s one
def test_asyncio_tasks_do_not_see_each_others_sessions(engine: Engine) -> None:

    async def task(name: str, mine: asyncio.Event, other: asyncio.Event) -> tuple[Session, Session | None]:
        before = current_session()
        with engine as tx:
            mine.set()
            await other.wait()  # both tasks are inside their blocks now
            await asyncio.sleep(0)
            assert current_session() is tx.session
            return tx.session, before

    async def main() -> list[tuple[Session, Session | None]]:
        a, b = asyncio.Event(), asyncio.Event()
        return list(await asyncio.gather(task("a", a, b), task("b", b, a)))

    (sa, before_a), (sb, before_b) = asyncio.run(main())
    assert sa is not sb
    assert before_a is None
    assert before_b is None


def test_a_task_created_inside_a_block_inherits_the_session(engine: Engine) -> None:
    async def main() -> bool:
        with engine as tx:
            return await asyncio.create_task(_current_is(tx.session))

    async def _current_is(session: Session) -> bool:
        return current_session() is session

    assert asyncio.run(main())


def test_context_is_restored_after_blocks(engine: Engine) -> None:
    assert current_session() is None
    with engine as tx:
        with engine.session() as s:
            assert s is tx.session
        assert current_session() is tx.session
    assert current_session() is None
