"""What the misuse fuzz (tests/test_api_fuzz.py) found, each pinned down as a plain test on every backend.

Each of these was a library bug: a connection given to two sessions, a sandbox left active on a connection
back in the pool, a kept session writing after its sandbox ended (for real, outside any rollback), a block
exited in another thread ending a transaction that was not its thread's, and internal errors (AssertionError,
ValueError, an endless loop) where a `TxScopeError` naming the fix belongs.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from pytest_txscope import (
    Engine,
    Sandbox,
    TransactionState,
    TransactionStateError,
    ensure_transaction,
    transaction,
)

from .backends import Peer

INSERT = "INSERT INTO items (id, name) VALUES (:id, :name)"


def committed(peer: Peer) -> list[str]:
    return [name for (name,) in peer.fetchall("SELECT name FROM items ORDER BY id")]


def in_thread(call: Any) -> BaseException | None:
    """Run ``call`` in a new thread (a fresh context); return what it raised."""
    raised: list[BaseException] = []

    def body() -> None:
        try:
            call()
        except BaseException as exc:
            raised.append(exc)

    worker = threading.Thread(target=body)
    worker.start()
    worker.join(15)
    assert not worker.is_alive(), "the call hung"
    return raised[0] if raised else None


def test_closing_the_session_of_engine_begin_gives_its_connection_back_once(
    engine: Engine, peer: Peer
) -> None:
    tx = engine.begin()
    tx.execute(INSERT, {"id": 1, "name": "dropped"})
    tx.session.close()  # rolls back the root, whose end closes the session too: the pool got it back twice
    first, second = engine.begin(), engine.begin()
    assert first.session.connection is not second.session.connection
    first.execute(INSERT, {"id": 2, "name": "first"})
    second.fetchscalar("SELECT count(*) FROM items")
    second.rollback()  # on a shared connection this would undo the first one's work
    first.commit()
    assert committed(peer) == ["first"]


def test_stopping_an_outer_sandbox_stops_the_one_nested_in_it(engine: Engine, peer: Peer) -> None:
    outer = Sandbox(engine).start()
    inner = Sandbox(engine).start()
    inner.session().execute(INSERT, {"id": 1, "name": "inner"})
    with pytest.raises(TransactionStateError) as info:
        outer.stop()
    assert str(info.value) == (
        f"a sandbox on {engine.target} was stopped while 1 sandbox(es) nested in it were active; they were "
        "stopped first, and everything in them rolled back: stop inner sandboxes before outer ones (use them as "
        "'with' blocks, or fixtures of narrower scope)"
    )
    assert (outer.active, inner.active, engine.pinned, Sandbox.current()) == (False, False, False, None)
    with engine as tx:  # the engine is whole again: its own sessions commit for real
        tx.execute(INSERT, {"id": 2, "name": "after"})
    assert committed(peer) == ["after"]
    inner.stop()  # stopping it again is a no-op


def test_a_restarted_sandbox_forgets_the_sandbox_it_was_nested_in(engine: Engine, peer: Peer) -> None:
    first = Sandbox(engine).start()
    second = Sandbox(engine).start()
    assert second.parent is first
    second.stop()
    first.stop()
    second.start()  # on its own now: it was nested only in its first run
    assert second.parent is None
    first.start()  # nested in `second` this time; with a stale parent, the two pointed at each other
    assert first.parent is second
    first.session().execute(INSERT, {"id": 1, "name": "x"})
    first.stop()
    second.stop()
    assert (engine.pinned, committed(peer)) == (False, [])


def test_a_sandbox_session_kept_after_the_sandbox_ended_writes_nothing(engine: Engine, peer: Peer) -> None:
    sandbox = Sandbox(engine).start()
    kept = sandbox.session()
    kept.execute(
        INSERT, {"id": 1, "name": "in the sandbox"}
    )  # outside blocks: joins the sandbox's transaction
    sandbox.stop()
    with pytest.raises(TransactionStateError, match="this session belonged to a sandbox that has ended"):
        kept.execute(
            INSERT, {"id": 2, "name": "after the sandbox"}
        )  # went to the pooled connection, committed
    with engine as tx:
        tx.execute(INSERT, {"id": 3, "name": "next"})
    assert committed(peer) == ["next"]


def test_a_block_exited_in_another_thread_ends_nothing(engine: Engine, peer: Peer) -> None:
    block = transaction(engine)
    tx = block.__enter__()
    tx.execute(INSERT, {"id": 1, "name": "kept"})
    error = in_thread(lambda: block.__exit__(None, None, None))
    assert isinstance(error, TransactionStateError)
    assert str(error) == (
        f"the block of {tx.describe()} was exited in a thread or asyncio task other than the one that entered "
        "it, and was left open; end each block in the thread or task that opened it"
    )
    assert tx.state is TransactionState.ACTIVE
    block.__exit__(None, None, None)  # its own thread ends it: committed
    assert committed(peer) == ["kept"]


def test_a_transaction_block_exited_without_being_entered(engine: Engine) -> None:
    for make, name in ((transaction, "transaction"), (ensure_transaction, "ensure_transaction")):
        block = make(engine)
        with pytest.raises(TransactionStateError) as info:
            block.__exit__(None, None, None)
        assert str(info.value) == (
            f"a {name}() block was exited without being entered, or twice; use it as 'with {name}(...) as tx:'"
        )


def test_begin_nested_inside_a_joined_transaction_keeps_one_stack(engine: Engine, peer: Peer) -> None:
    with transaction(engine) as root:
        join = ensure_transaction()
        joined = join.__enter__()  # virtual: joins `root`
        nested = root.begin_nested()  # beside `joined`, it left that one off the connection's stack
        assert nested.parent is joined
        nested.execute(INSERT, {"id": 1, "name": "nested"})
        nested.commit()
        join.__exit__(None, None, None)  # raised "... is not open on this connection"
        assert joined.state is TransactionState.COMMITTED
    assert committed(peer) == ["nested"]


def test_joining_under_another_sessions_transaction_keeps_it_on_the_stack(engine: Engine, peer: Peer) -> None:
    with Sandbox(engine) as sandbox, ensure_transaction(engine) as outer:  # a guest's root: a savepoint
        raw = sandbox.connection()
        raw.cursor().execute("INSERT INTO items (id, name) VALUES (1, 'raw')")  # another guest's, on top
        with ensure_transaction(engine) as joined:  # joins `outer`, but sits above the raw connection's
            assert joined.parent is outer
        raw.rollback()  # raised "... is not open on this connection": the join had cut it off the stack
        assert outer.is_active
    assert committed(peer) == []
