"""The sandbox, on every backend: nesting, stopping and restarting, the sessions and raw DB-API connections it
hands out, and the stack of transactions they share on its connection.

Most of these were found by the misuse fuzz (tests/faults/test_api_fuzz.py): a sandbox left active on a connection back
in the pool, a kept session writing after its sandbox ended (for real, outside any rollback), a join that cut
another session's transaction off the connection's stack.
"""

from __future__ import annotations

import pytest

from pytest_txscope import Engine, Sandbox, TransactionStateError, ensure_transaction

from ..backends import Backend, Peer

INSERT = "INSERT INTO items (id, name) VALUES (:id, :name)"


def committed(peer: Peer) -> list[str]:
    return [name for (name,) in peer.fetchall("SELECT name FROM items ORDER BY id")]


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


def test_joining_under_another_sessions_transaction_keeps_it_on_the_stack(engine: Engine, peer: Peer) -> None:
    with Sandbox(engine) as sandbox, ensure_transaction(engine) as outer:  # a guest's root: a savepoint
        raw = sandbox.connection()
        raw.cursor().execute("INSERT INTO items (id, name) VALUES (1, 'raw')")  # another guest's, on top
        with ensure_transaction(engine) as joined:  # joins `outer`, but sits above the raw connection's
            assert joined.parent is outer
        raw.rollback()  # raised "... is not open on this connection": the join had cut it off the stack
        assert outer.is_active
    assert committed(peer) == []


def test_raw_sandbox_begin_commits_a_pending_transaction_as_mysql_does(engine: Engine, peer: Peer) -> None:
    with Sandbox(engine) as sandbox:
        conn = sandbox.connection()
        conn.cursor().execute("INSERT INTO items (id, name) VALUES (1, 'kept')")
        conn.begin()  # MySQL's BEGIN commits the pending transaction first
        conn.cursor().execute("INSERT INTO items (id, name) VALUES (2, 'undone')")
        conn.rollback()
        assert sandbox.session().fetchall("SELECT name FROM items") == [("kept",)]
    assert peer.fetchall("SELECT count(*) FROM items") == [(0,)]


def test_a_connection_of_an_ended_sandbox_is_re_pointed_only_when_safe(
    backend: Backend, engine: Engine, peer: Peer
) -> None:
    """`Sandbox.adopt` (what sa_session's pool does instead of reconnecting at every test) re-points a raw
    connection of an ended sandbox made on the same real connection: it then works as a new one of the adopting
    sandbox, its writes rolled back with it, its autocommit mode kept (a setting of the connection). Never a
    closed one, one whose sandbox is still active (an outer one, from a nested sandbox), or one made on another
    real connection."""
    with Sandbox(engine) as first:
        kept = first.connection()
        kept.cursor().execute("INSERT INTO items (id, name) VALUES (1, 'first')")
        kept.commit()
        closed = first.connection()
        closed.close()
    with pytest.raises(TransactionStateError, match="a sandbox that has ended"):
        kept.cursor().execute("SELECT 1")
    with Sandbox(engine) as second:
        assert not second.adopt(closed)
        assert second.adopt(kept)
        kept.cursor().execute("INSERT INTO items (id, name) VALUES (2, 'second')")
        kept.commit()
        assert second.session().fetchall("SELECT name FROM items") == [("second",)]  # not the first's
        with Sandbox(engine) as inner:
            assert not inner.adopt(kept)  # the outer sandbox still uses it
            nested = inner.connection()
            nested.switch_autocommit(True)
        assert second.adopt(nested)
        assert nested.autocommit_mode
        nested.cursor().execute("INSERT INTO items (id, name) VALUES (3, 'nested')")  # no commit: autocommit
        assert second.session().fetchall("SELECT name FROM items ORDER BY id") == [("second",), ("nested",)]
    assert committed(peer) == []
    other = backend.engine()
    try:
        with Sandbox(other) as elsewhere:
            assert not elsewhere.adopt(kept)  # made on another real connection: its set-up is not there
    finally:
        other.dispose()
