"""Stateful test of the sandbox driving an async app: tests/contract/test_sandbox_machine.py's machine, whose ORM
is a SQLAlchemy ``AsyncSession`` on an ``AsyncEngine`` pinned to the sandbox, on every asyncio driver that can be
pinned (aiosqlite, psycopg's async side, aiomysql, asyncpg).

The machine owns one event loop and drives it step by step, as a test runs an async app: the sandbox starts and
stops in the thread (as the plugin's sync fixtures do), and every step runs in one long-lived task of that loop
(`AppTask`): the app's async ORM session (its commits become savepoint releases, its rollbacks roll back to the
savepoint, ``begin_nested()`` nests, failing statements and raising nested blocks roll back), and the sync
machine's other sessions, blocks and raw connections, and the test's session (``sandbox.session()``), whose
statements join whatever is innermost. Between two steps the loop is idle with the task's transactions open: a
statement of the test's session sent from the thread itself then could never get its turn, and is refused at once
(a rule checks that). An independent connection sees nothing during the run, and at the end the sandbox rolls
everything back. A second test runs the machine with a deliberately wrong model, to show that it can fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule, run_state_machine_as_test
from sqlalchemy import delete, insert, text, update
from sqlalchemy.exc import IntegrityError

from pytest_txscope import ConnectionBusyError
from pytest_txscope.sqlalchemy import sqlalchemy_async_url

from .machines import (
    LIB_SQL,
    Db,
    Write,
    _BoomError,
    _check,
    in_fresh_context,
    lib_write,
    open_db,
    quick,
)
from .sandbox_model import MAX_FRAMES, Draw, Frame
from .test_sandbox_machine import ITEMS, SandboxMachine, draw_write, op_rule

PINNABLE = {
    "sqlite-aiosqlite": "sqlite-file",
    "postgresql-psycopg_async": "postgresql",
    "mysql-aiomysql": "mysql",
    "postgresql-asyncpg-aio": "postgresql-asyncpg",
}
"""The asyncio drivers whose SQLAlchemy ``AsyncEngine`` can be pinned, and the sandbox's backend (their twin;
asyncpg's is an asyncpg sandbox)."""


class AppTask:
    """An event loop owned by the calling thread, and one task of it that runs the functions it is given, one at a
    time (awaiting what they return): the loop runs only while `run` waits for a result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._task = self.loop.create_task(self._serve(), name="app-task")

    async def _serve(self) -> None:
        while (item := await self._queue.get()) is not None:
            function, future = item
            try:
                result = function()
                if inspect.isawaitable(result):
                    result = await result
            except BaseException as exc:  # handed to the thread (hypothesis's own exceptions too)
                future.set_exception(exc)
            else:
                future.set_result(result)

    def run(self, function: Callable[[], Any]) -> Any:
        """Run ``function()`` in the task; its result (or its exception)."""
        future = self.loop.create_future()
        self._queue.put_nowait((function, future))
        return self.loop.run_until_complete(future)

    def close(self) -> None:
        self._queue.put_nowait(None)
        self.loop.run_until_complete(self._task)
        self.loop.close()


@pytest.fixture(params=sorted(PINNABLE))
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    yield from open_db(PINNABLE[request.param], tmp_path)


@pytest.fixture
def async_app(db: Db) -> Iterator[Any]:
    """The app's SQLAlchemy ``AsyncEngine`` on the test database, through the asyncio twin of its driver."""
    from sqlalchemy.ext.asyncio import create_async_engine

    made = create_async_engine(sqlalchemy_async_url(db.engine.url))  # type: ignore[arg-type]
    yield made
    asyncio.run(made.dispose())


class AsyncAppMachine(SandboxMachine):
    def __init__(self, db: Db, async_app: Any) -> None:
        super().__init__(db)
        self.async_app = async_app
        self.aio = AppTask()

    def extra_engines(self) -> tuple[Any, ...]:
        return (self.async_app,)

    def step(self, op: str, draw: Draw) -> None:
        self.aio.run(lambda: getattr(self, f"do_{op}")(draw))

    def teardown(self) -> None:
        try:
            if self.sandbox is not None:
                blocks = [f for f in self.frames if f.kind == "block"]
                try:
                    if self._orm is not None:  # the app's session ends before the test (an `async with`)
                        self.aio.run(self._orm.close)
                finally:
                    self.sandbox.stop()  # in the thread, as the plugin's fixture: the task holds nothing now
                self.aio.run(lambda: self.leave_blocks(blocks))  # their context is the task's
                self.check_after_stop()
        finally:
            self.aio.close()

    # --------------------------------------------------------------------------------- the async ORM
    @property
    def orm(self) -> Any:
        if self._orm is None:
            from sqlalchemy.ext.asyncio import AsyncSession

            self._orm = AsyncSession(self.async_app)
        return self._orm

    async def orm_execute(self, w: Write, draw: Draw) -> None:  # type: ignore[override]
        """Run ``w`` through the async ORM session, as a Core statement or as text()."""
        if draw(st.sampled_from(("core", "text"))) == "text":
            statement: Any = text(LIB_SQL[w.op]).bindparams(**w.params())
        elif w.op == "insert":
            statement = insert(ITEMS).values(id=w.key, val=w.val)
        elif w.op == "update":
            statement = update(ITEMS).where(ITEMS.c.id == w.key).values(val=w.val)
        else:
            statement = delete(ITEMS).where(ITEMS.c.id == w.key)
        result = await self.orm.execute(statement)
        if w.op == "delete":  # SQLAlchemy documents rowcount for UPDATE/DELETE only
            _check(f"rows changed by {w} (async ORM)", result.rowcount, 1)

    async def do_write(self, draw: Draw) -> None:  # type: ignore[override]
        top = self.frames[-1]
        if not top.kind.startswith("orm"):
            return super().do_write(draw)
        self.orm_sent()
        top = self.frames[-1]
        w = draw_write(draw, top.view)
        await self.orm_execute(w, draw)
        w.apply(top.view)
        return None

    async def do_orm_write(self, draw: Draw) -> None:  # type: ignore[override]
        """A statement on the async ORM session: its first one opens the ORM's transaction (a savepoint)."""
        if self.orm_group() is not None:
            return await self.do_write(draw)
        view = dict(self.top_view())
        w = draw_write(draw, view)
        await self.orm_execute(w, draw)
        w.apply(view)
        _check("the async ORM session is in a transaction", self.orm.in_transaction(), True)
        self.push(Frame("orm", "orm", self.orm, view))
        return None

    async def do_orm_nested_begin(self, draw: Draw) -> None:  # type: ignore[override]
        nested = await self.orm.begin_nested()
        self.push(Frame("orm_nested", "orm", nested, self.frames[-1].view, sent=False))
        if draw(st.booleans()):
            await self.orm.connection()  # makes SQLAlchemy send the SAVEPOINT now
            self.orm_sent()

    async def do_orm_nested_end(self, draw: Draw) -> None:  # type: ignore[override]
        top = self.frames[-1]
        if draw(st.booleans()):
            await top.handle.commit()
            self.model_commit_top()
        else:
            await top.handle.rollback()
            self.model_rollback_from(len(self.frames) - 1)
        _check("the async ORM's nested transaction after it ended", top.handle.is_active, False)

    async def do_orm_end(self, draw: Draw) -> None:  # type: ignore[override]
        """The app commits or rolls back its session (and with it any nested transaction still open)."""
        root = self.orm_group()
        assert root is not None
        if draw(st.booleans()):
            await self.orm.commit()
            while len(self.frames) > root:
                self.model_commit_top()
        else:
            await self.orm.rollback()
            self.model_rollback_from(root)
        _check("the async ORM session after it ended its transaction", self.orm.in_transaction(), False)

    async def do_orm_nested_block(self, draw: Draw) -> None:
        """``async with session.begin_nested():`` around a write: it ends cleanly (released), or its body raises
        (the app's own error, or the server's duplicate key) and it rolls back to its savepoint."""
        self.orm_sent()
        parent = self.frames[-1]
        view = dict(parent.view)
        # A duplicate needs a row left after the write (which may delete one).
        how = draw(st.sampled_from(("clean", "boom", "duplicate")[: 3 if len(view) > 1 else 2]))
        expected = {"clean": None, "boom": _BoomError, "duplicate": IntegrityError}[how]
        with pytest.raises(expected) if expected is not None else contextlib.nullcontext():
            async with self.orm.begin_nested():
                w = draw_write(draw, view)
                await self.orm_execute(w, draw)
                w.apply(view)
                if how == "duplicate":
                    await self.orm.execute(text(LIB_SQL["insert"]), {"id": min(view), "val": 0})
                elif how == "boom":
                    raise _BoomError
        if how == "clean":
            parent.view.clear()
            parent.view.update(view)
        _check("the async ORM session after its nested block", self.orm.in_transaction(), True)

    async def do_orm_error(self, draw: Draw) -> None:
        """A statement of the app fails (duplicate key); the app rolls its session back."""
        root = self.orm_group()
        assert root is not None
        key = draw(st.sampled_from(sorted(self.frames[-1].view)))
        with pytest.raises(IntegrityError):
            await self.orm.execute(text(LIB_SQL["insert"]), {"id": key, "val": 0})
        await self.orm.rollback()
        self.model_rollback_from(root)
        _check("the async ORM session after its rollback", self.orm.in_transaction(), False)

    def do_outside_loop_write(self, draw: Draw) -> None:
        """The test's session, called from the thread between two steps (not from the task): with no transaction
        of the task open it runs as usual; with one, it could never get its turn and is refused at once."""
        assert self.ts is not None
        view = self.top_view()
        w = draw_write(draw, view)
        if not self.frames:
            lib_write(self.ts, w)
            w.apply(view)
            return
        with pytest.raises(ConnectionBusyError, match="which runs on an event loop of this same thread"):
            lib_write(self.ts, w)

    def valid_ops(self) -> dict[str, bool]:
        orm_top = bool(self.frames) and self.frames[-1].kind.startswith("orm")
        return {
            **super().valid_ops(),
            "orm_nested_block": orm_top and len(self.frames) < MAX_FRAMES,
            "orm_error": orm_top and bool(self.frames[-1].view),
        }

    orm_nested_block = op_rule("orm_nested_block")
    orm_error = op_rule("orm_error")

    @precondition(lambda self: not self.ts_frames())
    @rule(data=st.data())
    def outside_loop_write(self, data: st.DataObject) -> None:
        self.do_outside_loop_write(data.draw)  # in the thread itself, on purpose

    # ------------------------------------------------------------------------------------ invariants
    @invariant()
    def test_session_sees_innermost_view(self) -> None:
        self.aio.run(super().test_session_sees_innermost_view)  # the test's task, as an async test's


class ForgetfulAsyncAppMachine(AsyncAppMachine):
    """A deliberately wrong model: rolling back keeps the work, as if it were committed."""

    def model_rollback_from(self, k: int) -> None:
        while len(self.frames) > k:
            self.model_commit_top()


def test_async_app_matches_model(db: Db, async_app: Any) -> None:
    in_fresh_context(
        lambda: run_state_machine_as_test(lambda: AsyncAppMachine(db, async_app), settings=settings.default)
    )


def test_async_app_wrong_model_is_caught(db: Db, async_app: Any) -> None:
    with pytest.raises(AssertionError, match="the model expects"):
        in_fresh_context(
            lambda: run_state_machine_as_test(
                lambda: ForgetfulAsyncAppMachine(db, async_app), settings=quick()
            )
        )
