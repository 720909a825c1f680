"""What the sandbox machines share: ``test_sandbox_machine.py``, ``test_shared_sandbox_threads.py`` and
``test_isolation_machine.py`` (in tests/contract/).

Each runs against the real library and backends, and a second test runs it with a deliberately wrong model to
show that its invariants can fail. They write rows ``id -> val`` of one table per process (`Write`), through the
library or a raw DB-API connection, report every check through one line (`_check`), and run each hypothesis
test in a fresh context (`in_fresh_context`).
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import Phase, settings
from hypothesis import strategies as st

from pytest_txscope import Engine, Session, Transaction

from ..backends import ALL, Peer, integrity_error, make_backend

# One table per process (see tests/contract/test_transaction_stack_machine.py: two runs sharing a database
# would deadlock on DDL).
TABLE = f"sbm_items_{os.getpid()}"
DDL = f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY, val INTEGER NOT NULL)"
SELECT = f"SELECT id, val FROM {TABLE} ORDER BY id"
LIB_SQL = {
    "insert": f"INSERT INTO {TABLE} (id, val) VALUES (:id, :val)",
    "update": f"UPDATE {TABLE} SET val = :val WHERE id = :id",
    "delete": f"DELETE FROM {TABLE} WHERE id = :id",
}
VALS = st.integers(0, 99)


class _BoomError(Exception):
    """Raised inside a block to make it roll back."""


def _check(what: str, got: object, want: object) -> None:
    # One line for every check, so that hypothesis reports one failure, not one per invariant.
    assert got == want, f"{what}: the library/database has {got!r}, the model expects {want!r}"


# ------------------------------------------------------------------------------------------------- writes
@dataclass(frozen=True)
class Write:
    """One row change: ``insert`` / ``update`` (to ``val``) or ``delete`` of the row ``key``."""

    op: str
    key: int
    val: int = 0

    def params(self) -> dict[str, int]:
        return {"id": self.key} if self.op == "delete" else {"id": self.key, "val": self.val}

    def apply(self, view: dict[int, int]) -> None:
        if self.op == "delete":
            del view[self.key]
        else:
            view[self.key] = self.val


def lib_write(executor: Transaction | Session, w: Write) -> None:
    """Run ``w`` through the library (portable placeholders)."""
    cursor = executor.execute(LIB_SQL[w.op], w.params())
    if w.op != "update":  # MySQL counts changed rows, not matched ones: an update to the same value counts 0
        _check(f"rows changed by {w}", cursor.rowcount, 1)
    cursor.close()


# ------------------------------------------------------------------------------------------- fixtures
@dataclass
class Db:
    backend: str
    engine: Engine
    app: Engine
    peer: Peer | None

    @property
    def integrity_error(self) -> type[Exception]:
        error: type[Exception] = integrity_error(self.engine.dialect)
        return error

    @property
    def raw_marker(self) -> str:
        """The driver's own placeholder, for statements on a raw DB-API connection."""
        return "?" if self.engine.dialect.name == "sqlite" else "%s"

    def committed_rows(self) -> dict[int, int]:
        """What is committed, seen from outside every sandbox (the peer, or a fresh session for :memory:)."""
        if self.peer is not None:
            return dict(self.peer.fetchall(SELECT))
        with self.engine.session() as session:
            return dict(session.fetchall(SELECT))


def open_db(backend_name: str, tmp_path: Path) -> Iterator[Db]:
    """The ``db`` fixture of the sandbox and thread machines: two engines on ``backend_name`` with a fresh
    table, and a peer, all closed afterwards."""
    backend = next(make_backend(backend_name, tmp_path))  # skips (or fails, when required) if unreachable
    engine = backend.engine(acquire_timeout=5)  # a session not given back errors instead of hanging
    app = backend.engine(acquire_timeout=5)  # "the application's" engine on the same database
    engine.executescript(f"DROP TABLE IF EXISTS {TABLE}; {DDL}")
    peer = backend.peer() if backend.has_peer else None
    try:
        yield Db(backend_name, engine, app, peer)
    finally:
        if peer is not None:
            peer.close()
        engine.executescript(f"DROP TABLE IF EXISTS {TABLE}")
        engine.dispose()
        app.dispose()


backends = pytest.mark.parametrize("backend_name", ALL)
servers = pytest.mark.parametrize("backend_name", ["postgresql", "mysql"])


def in_fresh_context(run: Callable[[], None]) -> None:
    """Run a whole hypothesis test in a copy of the current context: blocks it leaves open (a failing step)
    cannot leave current sessions behind for the tests that follow."""
    contextvars.copy_context().run(run)


def quick() -> settings:
    """Settings for the wrong-model tests: finding the failure is the point; shrinking it would only cost time."""
    return settings(parent=settings.default, phases=(Phase.explicit, Phase.reuse, Phase.generate))
