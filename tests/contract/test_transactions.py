"""The transaction contract, run on every backend: commit, rollback, nesting, states and their errors."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from pytest_txscope import (
    Engine,
    MissingEngineError,
    TransactionKind,
    TransactionState,
    TransactionStateError,
    ensure_transaction,
    transaction,
)

from ..aio_harness import close_engine
from ..backends import Backend, Peer

# Every test here runs through the sync API and, on the asyncio drivers, through the asyncio API (see
# tests/aio_harness.py): `api` holds transaction(), ensure_transaction() and current_session() of the flavour.
pytestmark = pytest.mark.asyncio_twin

INSERT = "INSERT INTO items (id, name, qty) VALUES (:id, :name, :qty)"
INSERT_NAME = "INSERT INTO items (id, name) VALUES (:id, :name)"


def names(tx_or_session: object) -> list[str]:
    return [r[0] for r in tx_or_session.fetchall("SELECT name FROM items ORDER BY id")]  # type: ignore[attr-defined]


def peer_names(peer: Peer) -> list[str]:
    return [r[0] for r in peer.fetchall("SELECT name FROM items ORDER BY id")]


def add(tx: object, id_: int, name: str, qty: int = 0) -> None:
    tx.execute(INSERT, {"id": id_, "name": name, "qty": qty})  # type: ignore[attr-defined]


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


# --------------------------------------------------------------------------------------------- top level
def test_clean_exit_commits_for_a_second_connection(engine: Engine, peer: Peer) -> None:
    with engine as tx:
        add(tx, 1, "a")
        assert peer_names(peer) == []  # not visible before commit
    assert peer_names(peer) == ["a"]


def test_exception_rolls_back_and_propagates(engine: Engine, peer: Peer) -> None:
    with pytest.raises(ZeroDivisionError), engine as tx:
        add(tx, 1, "a")
        1 / 0  # noqa: B018 - the point is the exception
    assert peer_names(peer) == []


def test_commit_visible_in_a_later_session_of_the_same_engine(engine: Engine) -> None:
    with engine as tx:
        add(tx, 1, "a")
    with pytest.raises(RuntimeError), engine as tx:
        add(tx, 2, "b")
        raise RuntimeError
    with engine.session() as session:
        assert names(session) == ["a"]


# ---------------------------------------------------------------------------------------------- nesting
def test_nested_block_is_a_savepoint_and_only_the_top_commits(engine: Engine, peer: Peer) -> None:
    with engine as outer:
        add(outer, 1, "outer")
        with engine as inner:
            assert inner.kind is TransactionKind.NESTED
            assert inner.session is outer.session
            add(inner, 2, "inner")
        assert inner.state is TransactionState.COMMITTED
        assert names(outer) == ["outer", "inner"]
        assert peer_names(peer) == []  # released savepoint is not a commit
    assert peer_names(peer) == ["outer", "inner"]


def test_caught_inner_exception_undoes_only_the_inner_writes(engine: Engine, peer: Peer) -> None:
    with engine as outer:
        add(outer, 1, "kept")
        with pytest.raises(ValueError, match="inner"), engine as inner:
            add(inner, 2, "undone")
            raise ValueError("inner")
        assert inner.state is TransactionState.ROLLED_BACK
        add(outer, 3, "after")  # the outer transaction is still usable
    assert peer_names(peer) == ["kept", "after"]


def test_failed_statement_inside_a_nested_block_keeps_the_outer_usable(engine: Engine, peer: Peer) -> None:
    # On PostgreSQL a failed statement aborts the transaction; the savepoint is what recovers it.
    with engine as outer:
        add(outer, 1, "a")
        with pytest.raises(Exception, match=r"(?i)unique|duplicate"), engine as inner:
            add(inner, 2, "a")
        add(outer, 3, "b")
    assert peer_names(peer) == ["a", "b"]


def test_three_levels_with_a_rollback_in_the_middle(engine: Engine) -> None:
    with engine as l1:
        add(l1, 1, "l1")
        with pytest.raises(KeyError), engine as l2:
            add(l2, 2, "l2")
            with engine as l3:
                add(l3, 3, "l3")
            assert names(l2) == ["l1", "l2", "l3"]
            raise KeyError
        assert names(l1) == ["l1"]
    with engine.session() as s:
        assert names(s) == ["l1"]


def test_nested_blocks_that_run_nothing_send_nothing_and_still_work(engine: Engine) -> None:
    with engine as outer:
        for _ in range(3):
            with engine:
                pass
        with pytest.raises(LookupError), engine:
            raise LookupError
        add(outer, 1, "a")
    with engine.session() as s:
        assert names(s) == ["a"]


def test_virtual_nesting_keeps_the_seed_behaviour(backend: Backend) -> None:
    engine = backend.engine(nested="virtual")
    engine.executescript(
        "DROP TABLE IF EXISTS items; CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(50), "
        "qty INTEGER)"
    )
    try:
        with engine as outer:
            with pytest.raises(ValueError), engine as inner:
                assert inner.kind is TransactionKind.VIRTUAL
                add(inner, 1, "stays")
                raise ValueError
            # "No impact": the virtual block neither rolled back nor committed; the outer decides.
            assert names(outer) == ["stays"]
        with engine.session() as s:
            assert names(s) == ["stays"]
    finally:
        engine.executescript("DROP TABLE IF EXISTS items")
        close_engine(engine)


# ------------------------------------------------------------------------------------- explicit control
def test_explicit_commit_inside_a_block_then_the_block_ends_quietly(engine: Engine, peer: Peer) -> None:
    with engine as tx:
        add(tx, 1, "a")
        tx.commit()
        assert peer_names(peer) == ["a"]
    assert tx.state is TransactionState.COMMITTED


def test_explicit_api_begin_nested_commit_rollback(engine: Engine, peer: Peer) -> None:
    with engine.session() as session:
        root = session.begin()
        assert root.kind is TransactionKind.ROOT
        add(root, 1, "a")
        sp = root.begin_nested()
        add(sp, 2, "b")
        sp.rollback()
        sp2 = root.begin_nested()
        add(sp2, 3, "c")
        sp2.commit()
        root.commit()
    assert peer_names(peer) == ["a", "c"]


def test_rollback_of_an_outer_transaction_rolls_back_open_inner_ones(engine: Engine) -> None:
    with engine.session() as session:
        root = session.begin()
        inner = root.begin_nested()
        add(inner, 1, "a")
        root.rollback()
        assert inner.state is TransactionState.ROLLED_BACK
        assert session.transaction is None
        assert names(session) == []


# ---------------------------------------------------------------------------------------------- sessions
def test_reads_outside_a_block_run_in_a_transaction_rolled_back_at_close(engine: Engine, peer: Peer) -> None:
    with engine.session() as session:
        assert names(session) == []
        tx = session.transaction
        assert tx is not None
        assert tx.implicit
        add(session, 1, "discarded")
    assert tx.state is TransactionState.ROLLED_BACK
    assert peer_names(peer) == []


def test_a_block_takes_over_the_implicit_transaction_and_commits_it(engine: Engine, peer: Peer) -> None:
    with engine.session() as session:
        add(session, 1, "before-block")
        with session as tx:
            assert tx.kind is TransactionKind.ROOT
            add(tx, 2, "in-block")
    assert peer_names(peer) == ["before-block", "in-block"]


def test_engine_session_yields_the_current_session(engine: Engine) -> None:
    with engine as tx, engine.session() as session:
        assert session is tx.session
    assert session.closed


def test_closed_session_refuses_work(engine: Engine) -> None:
    with engine.session() as session:
        pass
    with pytest.raises(
        TransactionStateError, match=r"this session is closed; open a new one with engine\.session"
    ):
        session.execute("SELECT 1")


# ------------------------------------------------------------------------- transaction() and ensure_transaction()
def test_transaction_nests_in_the_current_session(engine: Engine, api: Any, peer: Peer) -> None:
    with engine as outer:
        with api.transaction() as inner:
            assert inner.session is outer.session
            assert inner.kind is TransactionKind.NESTED
            add(inner, 1, "a")
        with pytest.raises(ValueError), api.transaction() as inner2:
            add(inner2, 2, "b")
            raise ValueError
    assert peer_names(peer) == ["a"]


def test_transaction_with_an_engine_and_nothing_current_opens_and_commits(
    engine: Engine, api: Any, peer: Peer
) -> None:
    with api.transaction(engine) as tx:
        assert tx.kind is TransactionKind.ROOT
        add(tx, 1, "a")
    assert peer_names(peer) == ["a"]


def test_ensure_transaction_joins_virtually(engine: Engine, api: Any, peer: Peer) -> None:
    with engine as outer:
        with pytest.raises(ValueError), api.ensure_transaction() as joined:
            assert joined.kind is TransactionKind.VIRTUAL
            add(joined, 1, "a")
            raise ValueError  # a joined block neither commits nor rolls back ...
        assert names(outer) == ["a"]
        outer.rollback()  # ... the enclosing transaction decides
    assert peer_names(peer) == []


def test_ensure_transaction_in_a_bare_session_is_rolled_back_with_it(
    engine: Engine, api: Any, peer: Peer
) -> None:
    with engine.session() as session:
        with api.ensure_transaction() as joined:
            add(joined, 1, "a")
        assert names(session) == ["a"]
    assert peer_names(peer) == []


def test_ensure_transaction_with_an_engine_and_nothing_current_commits(
    engine: Engine, api: Any, peer: Peer
) -> None:
    with api.ensure_transaction(engine) as tx:
        assert tx.kind is TransactionKind.ROOT
        add(tx, 1, "a")
    assert peer_names(peer) == ["a"]


def test_begin_nested_inside_a_joined_transaction_keeps_one_stack(
    engine: Engine, api: Any, peer: Peer
) -> None:
    with api.transaction(engine) as root:
        join = api.ensure_transaction()
        joined = join.__enter__()  # virtual: joins `root`
        nested = root.begin_nested()  # beside `joined`, it left that one off the connection's stack
        assert nested.parent is joined
        nested.execute(INSERT_NAME, {"id": 1, "name": "nested"})
        nested.commit()
        join.__exit__(None, None, None)  # raised "... is not open on this connection"
        assert joined.state is TransactionState.COMMITTED
    assert peer_names(peer) == ["nested"]


@pytest.mark.parametrize("function", [transaction, ensure_transaction])
def test_nothing_current_and_no_engine_is_a_clear_error(function: object) -> None:
    name = function.__name__  # type: ignore[attr-defined]
    with pytest.raises(MissingEngineError) as info, function():  # type: ignore[operator]
        pass
    assert str(info.value) == (
        f"{name}() found no current session in this context (thread or asyncio task) and no engine was given; "
        f"call it inside 'with engine:' / 'with engine.session():', or pass {name}(engine)"
    )


# --------------------------------------------------------------------------------------------- on_commit
def test_on_commit_runs_after_the_top_level_commit_only(engine: Engine, api: Any) -> None:
    fired: list[str] = []
    with engine as outer:
        outer.on_commit(lambda: fired.append("outer"))
        with engine as inner:
            inner.on_commit(lambda: fired.append("inner"))
        with pytest.raises(ValueError), engine as dropped:
            dropped.on_commit(lambda: fired.append("dropped"))
            raise ValueError
        with api.ensure_transaction() as joined:
            joined.on_commit(lambda: fired.append("joined"))
        assert fired == []
    assert fired == ["outer", "inner", "joined"]


def test_on_commit_is_dropped_when_the_top_level_rolls_back(engine: Engine) -> None:
    fired: list[str] = []
    with pytest.raises(ValueError), engine as tx:
        tx.on_commit(lambda: fired.append("x"))
        raise ValueError
    assert fired == []


def test_a_failing_callback_still_lets_the_others_run_after_the_commit(engine: Engine, peer: Peer) -> None:
    fired: list[str] = []

    def boom() -> None:
        raise OSError("callback failed")

    with pytest.raises(OSError, match="callback failed"), engine as tx:
        add(tx, 1, "a")
        tx.on_commit(boom)
        tx.on_commit(lambda: fired.append("second"))
    assert fired == ["second"]
    assert peer_names(peer) == ["a"]


# --------------------------------------------------------------------------------- misuse and its errors
def test_using_a_transaction_after_it_ended(engine: Engine) -> None:
    with engine as tx:
        pass
    with pytest.raises(TransactionStateError) as info:
        tx.execute("SELECT 1")
    assert str(info.value) == (
        "cannot run a statement: transaction #1 (root) is already committed; "
        "open a new transaction block for more work"
    )
    with pytest.raises(
        TransactionStateError, match=r"cannot commit: transaction #1 \(root\) is already committed"
    ):
        tx.commit()


def test_using_an_outer_transaction_while_an_inner_one_is_open(engine: Engine) -> None:
    with engine as outer, engine:
        with pytest.raises(TransactionStateError) as info:
            outer.execute("SELECT 1")
        assert str(info.value) == (
            "cannot use transaction #1 (root): transaction #2 (nested), opened inside it, is still active; "
            "use the innermost transaction, or end it first"
        )


def test_committing_with_an_inner_transaction_open_changes_nothing(engine: Engine) -> None:
    with engine.session() as session:
        root = session.begin()
        inner = root.begin_nested()
        with pytest.raises(TransactionStateError) as info:
            root.commit()
        assert str(info.value) == (
            "cannot commit transaction #1 (root): transaction #2 (nested), opened inside it, is still active; "
            "commit or roll back the inner transaction first"
        )
        assert root.is_active
        assert inner.is_active
        inner.commit()
        root.commit()


def test_leaving_blocks_out_of_order(engine: Engine, api: Any, peer: Peer) -> None:
    outer_block = api.transaction(engine)
    outer = outer_block.__enter__()
    add(outer, 1, "a")
    inner_block = api.transaction()
    inner = inner_block.__enter__()
    add(inner, 2, "b")
    with pytest.raises(TransactionStateError) as info:
        outer_block.__exit__(None, None, None)
    assert str(info.value) == (
        "the block of transaction #1 (root) ended while transaction #2 (nested) was still open; both were "
        "rolled back; leave inner blocks (or end inner transactions) before outer ones"
    )
    assert outer.state is TransactionState.ROLLED_BACK
    with pytest.raises(TransactionStateError) as info:
        inner_block.__exit__(None, None, None)
    assert str(info.value) == (
        "transaction #2 (nested) was rolled back when the block of transaction #1 (root) ended; leave inner "
        "blocks before outer ones, in the thread or task that opened them"
    )
    assert peer_names(peer) == []
    # The context is clean again: nothing is current.
    with pytest.raises(MissingEngineError), api.transaction():
        pass


def test_a_transaction_block_cannot_be_entered_twice(engine: Engine) -> None:
    with engine.session() as session:
        tx = session.begin()
        with tx, pytest.raises(TransactionStateError, match="already used as a 'with' block"), tx:
            pass
        assert tx.state is TransactionState.COMMITTED


def test_a_transaction_block_exited_without_being_entered(engine: Engine) -> None:
    for make, name in ((transaction, "transaction"), (ensure_transaction, "ensure_transaction")):
        block = make(engine)
        with pytest.raises(TransactionStateError) as info:
            block.__exit__(None, None, None)
        assert str(info.value) == (
            f"a {name}() block was exited without being entered, or twice; use it as 'with {name}(...) as tx:'"
        )


def test_engine_block_exited_in_another_context_is_an_error(engine: Engine) -> None:
    with pytest.raises(TransactionStateError) as info:
        engine.__exit__(None, None, None)
    assert str(info.value) == (
        "'with engine:' block ended, but no transaction it opened is current in this thread or task; "
        "blocks must end in the thread or task that opened them"
    )


@pytest.mark.asyncio_twin(False)  # threads: the async twin is test_aio_api's block exited in another task
def test_a_block_exited_in_another_thread_ends_nothing(engine: Engine, api: Any, peer: Peer) -> None:
    block = api.transaction(engine)
    tx = block.__enter__()
    tx.execute(INSERT_NAME, {"id": 1, "name": "kept"})
    error = in_thread(lambda: block.__exit__(None, None, None))
    assert isinstance(error, TransactionStateError)
    assert str(error) == (
        f"the block of {tx.describe()} was exited in a thread or asyncio task other than the one that entered "
        "it, and was left open; end each block in the thread or task that opened it"
    )
    assert tx.state is TransactionState.ACTIVE
    block.__exit__(None, None, None)  # its own thread ends it: committed
    assert peer_names(peer) == ["kept"]
