"""Table inspection and restore (pytest_txscope.tables), on every backend.

Every table here is named ``tbl_<random>_...``, so that runs sharing a database never meet; each test drops
what it created. On shared PostgreSQL/MySQL databases the functions that scan every table also see other
people's tables: assertions look only at ours.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_txscope import Engine
from pytest_txscope import tables as tables_module
from pytest_txscope.tables import (
    RestoreError,
    Snapshot,
    _order,
    changed_tables,
    dependency_order,
    list_tables,
    restore,
    row_counts,
    snapshot,
)

from ..backends import Backend, Peer

DDL = {
    "sqlite": """
        CREATE TABLE {parent} (id INTEGER PRIMARY KEY AUTOINCREMENT, name VARCHAR(50) NOT NULL);
        CREATE TABLE {child} (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL REFERENCES {parent} (id),
                              note VARCHAR(50));
        CREATE TABLE {node} (id INTEGER PRIMARY KEY, up INTEGER REFERENCES {node} (id));
    """,
    "postgresql": """
        CREATE TABLE {parent} (id SERIAL PRIMARY KEY, name VARCHAR(50) NOT NULL);
        CREATE TABLE {child} (id INTEGER GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                              parent_id INTEGER NOT NULL REFERENCES {parent} (id), note VARCHAR(50));
        CREATE TABLE {node} (id INTEGER PRIMARY KEY, up INTEGER REFERENCES {node} (id));
    """,
    "mysql": """
        CREATE TABLE {parent} (id INTEGER AUTO_INCREMENT PRIMARY KEY, name VARCHAR(50) NOT NULL) ENGINE=InnoDB;
        CREATE TABLE {child} (id INTEGER AUTO_INCREMENT PRIMARY KEY, parent_id INTEGER NOT NULL, note VARCHAR(50),
                              FOREIGN KEY (parent_id) REFERENCES {parent} (id)) ENGINE=InnoDB;
        CREATE TABLE {node} (id INTEGER PRIMARY KEY, up INTEGER, FOREIGN KEY (up) REFERENCES {node} (id))
            ENGINE=InnoDB;
    """,
}
SEED = """
    INSERT INTO {parent} (name) VALUES ('alpha'), ('beta');
    INSERT INTO {child} (parent_id, note) VALUES (1, 'a1'), (2, 'b1'), (1, 'a2');
    INSERT INTO {node} (id, up) VALUES (2, NULL);
    INSERT INTO {node} (id, up) VALUES (1, 2)
"""


class Tables:
    """The tables of one test: parent (2 rows), child (3 rows, references parent), node (references itself)."""

    def __init__(self, backend: Backend, engine: Engine) -> None:
        self.family = backend.family
        self.engine = engine
        self.prefix = f"tbl_{uuid.uuid4().hex[:8]}_"
        self.parent, self.child, self.node = self.name("parent"), self.name("child"), self.name("node")
        self.created = [self.parent, self.child, self.node]
        names = {"parent": self.parent, "child": self.child, "node": self.node}
        engine.executescript(DDL[self.family].format(**names))
        engine.executescript(SEED.format(**names))

    def name(self, short: str) -> str:
        return self.prefix + short

    def create(self, short: str, ddl: str) -> str:
        """Create table ``short`` (``{t}`` in ``ddl`` is its name); dropped at the end of the test."""
        name = self.name(short)
        self.created.append(name)
        self.engine.executescript(ddl.format(t=name))
        return name

    def ours(self, names: list[str]) -> list[str]:
        return [n for n in names if n.startswith(self.prefix)]

    def drop(self) -> None:
        drops = [
            f"DROP TABLE IF EXISTS {n}{' CASCADE' if self.family == 'postgresql' else ''}"
            for n in reversed(self.created)
        ]
        if self.family == "mysql":
            drops = ["SET foreign_key_checks = 0", *drops, "SET foreign_key_checks = 1"]
        self.engine.executescript("; ".join(drops))


@pytest.fixture
def tables(backend: Backend, engine: Engine) -> Iterator[Tables]:
    t = Tables(backend, engine)
    yield t
    t.drop()


def contents(peer: Peer, *names: str) -> dict[str, list[tuple[Any, ...]]]:
    """What an independent connection sees in each table, sorted."""
    return {name: sorted(peer.fetchall(f"SELECT * FROM {name}")) for name in names}


def commit(engine: Engine, *statements: str) -> None:
    with engine as tx:
        for statement in statements:
            tx.execute(statement)


# ---------------------------------------------------------------------------------------------- inspection
def test_list_tables_names_every_user_table_sorted(engine: Engine, tables: Tables) -> None:
    names = list_tables(engine)
    assert names == sorted(names)
    assert tables.ours(names) == sorted([tables.child, tables.node, tables.parent])
    assert not [n for n in names if n.startswith(("sqlite_", "pg_"))]  # sqlite_sequence exists here
    if tables.family == "sqlite":  # a database of its own (others come and go on shared servers)
        assert names == sorted(["items", tables.child, tables.node, tables.parent])


def test_row_counts_are_exact(engine: Engine, tables: Tables) -> None:
    empty = tables.create("empty", "CREATE TABLE {t} (id INTEGER PRIMARY KEY)")
    ours = [tables.parent, tables.child, tables.node, empty]
    assert row_counts(engine, ours) == {tables.parent: 2, tables.child: 3, tables.node: 2, empty: 0}
    everything = row_counts(engine)
    assert {n: everything[n] for n in ours} == {tables.parent: 2, tables.child: 3, tables.node: 2, empty: 0}
    assert all(isinstance(n, int) for n in everything.values())
    assert row_counts(engine, []) == {}


def test_dependency_order_puts_parents_first(engine: Engine, tables: Tables) -> None:
    p, c, n = tables.parent, tables.child, tables.node
    assert dependency_order(engine, [c, n, p]) == [n, p, c]  # the self-reference of node is ignored
    assert dependency_order(engine, [c]) == [c]
    # A cycle (a <-> b) with a table below it (aaa -> b): the cycle comes first, entered at its first name.
    a, b = tables.name("cyc_a"), tables.name("cyc_b")
    if tables.family == "sqlite":  # SQLite cannot add a foreign key later, but may reference a future table
        tables.create(
            "cyc_a", f"CREATE TABLE {{t}} (id INTEGER PRIMARY KEY, b_id INTEGER REFERENCES {b} (id))"
        )
        tables.create(
            "cyc_b", f"CREATE TABLE {{t}} (id INTEGER PRIMARY KEY, a_id INTEGER REFERENCES {a} (id))"
        )
        low = tables.create(
            "aaa", f"CREATE TABLE {{t}} (id INTEGER PRIMARY KEY, b_id INTEGER REFERENCES {b} (id))"
        )
    else:
        for short, column in (("cyc_a", "b_id"), ("cyc_b", "a_id"), ("aaa", "b_id")):
            tables.create(short, f"CREATE TABLE {{t}} (id INTEGER PRIMARY KEY, {column} INTEGER)")
        low = tables.name("aaa")
        engine.executescript(
            f"ALTER TABLE {a} ADD FOREIGN KEY (b_id) REFERENCES {b} (id); "
            f"ALTER TABLE {b} ADD FOREIGN KEY (a_id) REFERENCES {a} (id); "
            f"ALTER TABLE {low} ADD FOREIGN KEY (b_id) REFERENCES {b} (id)"
        )
    assert dependency_order(engine, [low, b, a]) == [a, b, low]


def test_order_breaks_ties_by_name_and_enters_cycles_from_above() -> None:
    assert _order(["z", "c", "p"], [("c", "p")]) == ["p", "c", "z"]
    assert _order(["n"], [("n", "n")]) == ["n"]
    # x <-> y is a cycle; b hangs below it (references x): b must not come first although its name does.
    assert _order(["b", "x", "y"], [("x", "y"), ("y", "x"), ("b", "x")]) == ["x", "b", "y"]
    # Two cycles, the second (r <-> s) referencing the first (p <-> q) through r -> q.
    edges = [("p", "q"), ("q", "p"), ("r", "s"), ("s", "r"), ("r", "q")]
    assert _order(["s", "r", "q", "p"], edges) == ["p", "q", "r", "s"]
    edges = [("a", "b"), ("b", "a"), ("b", "z"), ("z", "y"), ("y", "z")]  # cycle a<->b below y<->z
    assert _order(["a", "b", "y", "z"], edges) == ["y", "z", "a", "b"]


# ------------------------------------------------------------------------------------- snapshot and changes
def test_snapshot_holds_counts_columns_and_rows(engine: Engine, tables: Tables) -> None:
    snap = snapshot(engine, limit=2)
    assert snap.counts[tables.parent] == 2
    assert snap.counts[tables.child] == 3
    assert tables.child in snap.too_big
    assert tables.child not in snap.rows
    assert snap.columns[tables.parent] == ["id", "name"]
    assert sorted(snap.rows[tables.parent]) == [(1, "alpha"), (2, "beta")]
    assert sorted(snap.rows[tables.node], key=lambda r: r[0]) == [(1, 2), (2, None)]
    assert tables.parent not in snap.too_big


def test_changed_tables_names_exactly_the_changed_ones(engine: Engine, tables: Tables) -> None:
    tables.create("unused", "CREATE TABLE {t} (id INTEGER PRIMARY KEY)")
    snap = snapshot(engine)
    assert tables.ours(changed_tables(engine, snap)) == []
    later_empty = tables.create("later_empty", "CREATE TABLE {t} (id INTEGER PRIMARY KEY)")
    later_full = tables.create("later_full", "CREATE TABLE {t} (id INTEGER PRIMARY KEY)")
    commit(
        engine,
        f"INSERT INTO {tables.parent} (name) VALUES ('gamma')",  # count changes
        f"UPDATE {tables.child} SET note = 'changed' WHERE id = 2",  # same count, other contents
        f"INSERT INTO {later_full} (id) VALUES (1)",  # created since the snapshot, with rows
    )
    assert later_empty not in changed_tables(engine, snap)
    assert tables.ours(changed_tables(engine, snap)) == sorted([tables.child, later_full, tables.parent])


def test_changed_tables_sees_reordered_rows_as_unchanged(engine: Engine, tables: Tables) -> None:
    snap = snapshot(engine)
    reordered = dataclasses.replace(
        snap, rows={**snap.rows, tables.child: list(reversed(snap.rows[tables.child]))}
    )
    assert tables.ours(changed_tables(engine, reordered)) == []
    commit(engine, f"DELETE FROM {tables.node} WHERE id = 1", f"INSERT INTO {tables.node} VALUES (1, 2)")
    assert tables.ours(changed_tables(engine, snap)) == []  # deleted and put back: the same rows


# ---------------------------------------------------------------------------------------------- restore
def test_restore_brings_back_exactly_the_snapshot(engine: Engine, tables: Tables, peer: Peer) -> None:
    p, c, n = tables.parent, tables.child, tables.node
    before = contents(peer, p, c, n)
    snap = snapshot(engine)
    commit(
        engine,
        f"INSERT INTO {p} (name) VALUES ('gamma')",
        f"INSERT INTO {c} (parent_id, note) VALUES (3, 'g1')",
        f"UPDATE {p} SET name = 'ALPHA' WHERE id = 1",
        f"DELETE FROM {c} WHERE parent_id = 2",
        f"DELETE FROM {p} WHERE id = 2",
        f"UPDATE {n} SET up = NULL",
    )
    assert contents(peer, p, c, n) != before
    changed = tables.ours(changed_tables(engine, snap))
    assert changed == sorted([p, c, n])
    restore(engine, snap, changed)
    assert contents(peer, p, c, n) == before
    assert tables.ours(changed_tables(engine, snap)) == []
    # The id counters continue after the restored rows: no collision, and the ids a fresh seed would give.
    commit(
        engine,
        f"INSERT INTO {p} (name) VALUES ('delta')",
        f"INSERT INTO {c} (parent_id, note) VALUES (1, 'x')",
    )
    assert peer.fetchall(f"SELECT id FROM {p} WHERE name = 'delta'") == [(3,)]
    assert peer.fetchall(f"SELECT id FROM {c} WHERE note = 'x'") == [(4,)]


def test_restore_of_an_emptied_table_restarts_its_counter(engine: Engine, tables: Tables) -> None:
    engine.executescript(f"DELETE FROM {tables.child}; DELETE FROM {tables.parent}")
    snap = snapshot(engine)
    commit(engine, f"INSERT INTO {tables.parent} (name) VALUES ('x'), ('y')")
    restore(engine, snap, [tables.parent])
    commit(engine, f"INSERT INTO {tables.parent} (name) VALUES ('z')")
    with engine.session() as s:  # read through the engine: this test runs on sqlite:///:memory: too
        assert s.fetchall(f"SELECT id, name FROM {tables.parent}") == [(1, "z")]


def test_restore_of_nothing_changes_nothing(engine: Engine, tables: Tables) -> None:
    snap = snapshot(engine)
    restore(engine, snap, [])
    assert tables.ours(changed_tables(engine, snap)) == []


def test_names_that_need_quoting(engine: Engine, tables: Tables) -> None:
    q = "`" if tables.family == "mysql" else '"'
    odd = tables.create(
        "Odd Name", f"CREATE TABLE {q}{{t}}{q} (id INTEGER PRIMARY KEY, {q}Some Column{q} INTEGER)"
    )
    tables.created[-1] = f"{q}{odd}{q}"  # dropped by its quoted name
    commit(engine, f"INSERT INTO {q}{odd}{q} VALUES (1, 10)")
    assert odd in list_tables(engine)
    assert row_counts(engine, [odd]) == {odd: 1}
    snap = snapshot(engine)
    assert snap.columns[odd] == ["id", "Some Column"]
    commit(engine, f"UPDATE {q}{odd}{q} SET {q}Some Column{q} = 11")
    assert tables.ours(changed_tables(engine, snap)) == [odd]
    restore(engine, snap, [odd])
    assert row_counts(engine, [odd]) == {odd: 1}
    assert tables.ours(changed_tables(engine, snap)) == []


def test_reading_everything_lists_again_when_a_table_vanishes(engine: Engine, tables: Tables) -> None:
    # Another connection may drop a table between listing and reading it: reads of every table try again.
    calls: list[list[str]] = []

    def work(session: Any, names: list[str]) -> int:
        calls.append(names)
        if len(calls) == 1:
            raise RuntimeError("relation was dropped meanwhile")
        return len(names)

    assert tables_module._reading(engine, None, work) == len(calls[1])
    assert len(calls) == 2
    calls.clear()
    with pytest.raises(RuntimeError, match="dropped"):  # tables the caller named are not looked up again
        tables_module._reading(engine, [tables.parent], work)
    assert calls == [[tables.parent]]


def test_restore_takes_along_tables_that_reference_restored_ones(
    engine: Engine, tables: Tables, peer: Peer
) -> None:
    p, c = tables.parent, tables.child
    before = contents(peer, p, c, tables.node)
    snap = snapshot(engine)
    commit(
        engine,
        f"INSERT INTO {p} (name) VALUES ('gamma')",
        f"INSERT INTO {c} (parent_id, note) VALUES (3, 'g')",
    )
    restore(engine, snap, [p])  # child references parent and has rows: restored too
    assert contents(peer, p, c, tables.node) == before


def test_restore_puts_back_rows_that_reference_each_other_in_any_order(
    backend: Backend, engine: Engine, tables: Tables, peer: Peer
) -> None:
    n = tables.node
    before = contents(peer, n)
    snap = snapshot(engine)
    # Children first: inserting them one by one, each checked at once, would fail.
    child_first = sorted(snap.rows[n], key=lambda r: r[1] is None)
    snap = dataclasses.replace(snap, rows={**snap.rows, n: child_first})
    settings = "SELECT @@foreign_key_checks, @@sql_mode"
    if tables.family == "mysql":
        with engine.session() as s:
            original = s.fetchone(settings)
    commit(engine, f"DELETE FROM {n} WHERE id = 1", f"UPDATE {n} SET up = 2 WHERE id = 2")
    restore(engine, snap, [n])
    assert contents(peer, n) == before
    if tables.family == "mysql":  # the connection goes back to the pool with its settings restored
        with engine.session() as s:
            assert s.fetchone(settings) == original


def test_restore_keeps_generated_and_json_columns(engine: Engine, tables: Tables, peer: Peer) -> None:
    ddl = {
        "sqlite": "CREATE TABLE {t} (id INTEGER PRIMARY KEY, doc TEXT, raw TEXT, "
        "twice INTEGER GENERATED ALWAYS AS (id * 2) VIRTUAL)",
        "postgresql": "CREATE TABLE {t} (id INTEGER PRIMARY KEY, doc JSONB, raw JSON, "
        "twice INTEGER GENERATED ALWAYS AS (id * 2) STORED)",
        "mysql": "CREATE TABLE {t} (id INTEGER PRIMARY KEY, doc JSON, raw JSON, twice INTEGER AS (id * 2) VIRTUAL)",
    }
    docs = tables.create("docs", ddl[tables.family])
    commit(
        engine,
        f"INSERT INTO {docs} (id, doc, raw) VALUES "
        """(1, '{"a": [1, 2.5, null]}', '[1, "x"]'), (2, '"text"', '{"b": {}}'), (3, NULL, NULL)""",
    )
    before = contents(peer, docs)
    snap = snapshot(engine)
    commit(engine, f"DELETE FROM {docs}")
    restore(engine, snap, [docs])
    assert contents(peer, docs) == before


def test_restore_refuses_a_table_the_snapshot_kept_only_the_count_of(engine: Engine, tables: Tables) -> None:
    snap = snapshot(engine, limit=2)  # parent (2 rows) is kept, child (3 rows) is not
    commit(engine, f"INSERT INTO {tables.parent} (name) VALUES ('gamma')")
    with pytest.raises(RestoreError) as info:
        restore(engine, snap, [tables.parent])  # takes child along, which references parent and has rows
    assert str(info.value) == (
        f"cannot restore table '{tables.child}': it held 3 rows when the snapshot was taken, more than the "
        "snapshot's limit, so only its row count was kept; keep seed data small, or use the rollback sandbox "
        "instead of commit=True"
    )
    assert info.value.table == tables.child
    assert isinstance(info.value, RuntimeError)
    assert row_counts(engine, [tables.parent, tables.child]) == {tables.parent: 3, tables.child: 3}


def test_restore_refuses_a_table_that_does_not_exist(engine: Engine, tables: Tables) -> None:
    snap = Snapshot({}, {}, {}, frozenset())
    with pytest.raises(RestoreError, match=r"cannot restore table 'tbl_nowhere': it does not exist"):
        restore(engine, snap, ["tbl_nowhere"])
