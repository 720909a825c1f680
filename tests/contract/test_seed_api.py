"""The seed's API, written exactly as its examples are, on every backend: what a new user types first."""

from __future__ import annotations

import asyncio
import threading
import warnings
from typing import Any

import pytest

from pytest_txscope import (
    Engine,
    MissingEngineError,
    Session,
    TransactionKind,
    current_session,
)

from ..backends import Backend, Peer

# Run through the sync API and, on the asyncio drivers, through the asyncio API (tests/aio_harness.py); the tests
# of Session(conn) over the caller's own connection, and of threads, are sync only.
pytestmark = pytest.mark.asyncio_twin


def _own_connection(backend: Backend) -> Any:
    """A connection opened with the driver itself, as an application would."""
    return backend.peer().conn


@pytest.mark.asyncio_twin(False)
def test_session_block_then_transaction_block(backend: Backend, engine: Engine, peer: Peer) -> None:
    conn = _own_connection(backend)
    with Session(conn) as sess:
        assert current_session() is sess
        with sess as tx:
            tx.execute("INSERT INTO items (id, name) VALUES (1, 'seed')")
    assert sess.closed
    assert current_session() is None
    assert peer.fetchall("SELECT id, name FROM items") == [(1, "seed")]
    # The connection stays the caller's: open, and usable again.
    with Session(conn) as again, again as tx:
        assert tx.fetchscalar("SELECT count(*) FROM items") == 1
    conn.close()


@pytest.mark.asyncio_twin(False)
def test_session_block_rolls_back_on_an_exception(backend: Backend, engine: Engine, peer: Peer) -> None:
    conn = _own_connection(backend)
    with pytest.raises(ValueError), Session(conn) as sess:
        sess.execute("INSERT INTO items (id, name) VALUES (1, 'kept?')")
        with sess as tx:
            assert tx.kind is TransactionKind.NESTED
            tx.execute("INSERT INTO items (id, name) VALUES (2, 'nested')")
        raise ValueError
    assert peer.fetchall("SELECT id FROM items") == []
    conn.close()


def test_engine_blocks_nest_and_only_the_topmost_commits(engine: Engine, peer: Peer) -> None:
    with engine as outer:
        outer.execute("INSERT INTO items (id, name) VALUES (1, 'outer')")
        with engine as inner:
            assert inner.kind is TransactionKind.NESTED
            inner.execute("INSERT INTO items (id, name) VALUES (2, 'inner')")
        assert peer.fetchall("SELECT id FROM items") == []  # released, not committed
    assert sorted(peer.fetchall("SELECT id FROM items")) == [(1,), (2,)]


def test_engine_session_with_session_as_tx(engine: Engine, api: Any, peer: Peer) -> None:
    with engine.session() as sess:
        assert api.current_session() is sess
        with sess as tx:
            assert tx.kind is TransactionKind.ROOT
            tx.execute("INSERT INTO items (id, name) VALUES (1, 'a')")
        with api.transaction() as tx:  # the current session, found from context
            tx.execute("INSERT INTO items (id, name) VALUES (2, 'b')")
        with api.ensure_transaction() as joined:
            assert joined.kind is TransactionKind.VIRTUAL
    assert sorted(peer.fetchall("SELECT id FROM items")) == [(1,), (2,)]


def test_ensure_transaction_needs_an_engine_when_nothing_is_current(
    engine: Engine, api: Any, peer: Peer
) -> None:
    with pytest.raises(MissingEngineError), api.ensure_transaction():
        pass
    with api.ensure_transaction(engine) as tx:
        tx.execute("INSERT INTO items (id, name) VALUES (1, 'a')")
    assert peer.fetchall("SELECT id FROM items") == [(1,)]


@pytest.mark.asyncio_twin(False)  # the async twin: tests/contract/test_aio_api.py
def test_the_current_session_is_per_thread_and_per_task(engine: Engine) -> None:
    seen: list[object] = []
    with engine.session() as sess:
        thread = threading.Thread(target=lambda: seen.append(current_session()))
        thread.start()
        thread.join()

        async def in_a_task() -> object:
            return current_session()

        async def main() -> tuple[object, object]:
            async def opens() -> object:
                with engine.session() as mine:
                    await asyncio.sleep(0)
                    return mine

            first = await asyncio.create_task(in_a_task())  # a copy of the context it was created in
            return first, await asyncio.create_task(opens())

        inherited, own = asyncio.run(main())
        assert current_session() is sess
    assert seen == [None]  # a new thread starts with nothing current
    assert inherited is sess
    assert own is sess  # engine.session() in the task yields the session it inherited as current


def test_the_left_open_hint_names_code_that_works(engine: Engine) -> None:
    from pytest_txscope.errors import TransactionLeftOpenWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text = str(TransactionLeftOpenWarning(["transaction #1 (root)"]))
    assert "'with engine.session() as session:'" in text
    with engine.session() as session:  # what the hint recommends runs
        session.execute("SELECT 1").close()
