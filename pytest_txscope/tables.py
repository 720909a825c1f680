"""Tables and their rows: list, count, order by foreign keys, snapshot, and restore as a snapshot had them.

The plugin checks with these that a test left no rows behind, and cleans up after tests that really commit.
Every function takes an `Engine` outside any sandbox: reads are plain statements, writes one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .core import Engine, Session
from .errors import RestoreError

__all__ = [
    "RestoreError",
    "Snapshot",
    "changed_tables",
    "dependency_order",
    "list_tables",
    "restore",
    "row_counts",
    "snapshot",
]

_T = TypeVar("_T")
_SCHEMA = "n.nspname = ANY (current_schemas(false)) AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
_TABLES = {
    "sqlite": "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
    "postgresql": "SELECT DISTINCT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    f"WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND {_SCHEMA}",
    "mysql": "SELECT TABLE_NAME FROM information_schema.TABLES "
    "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE'",
}
# (referencing table, referenced table) for every foreign key.
_FOREIGN_KEYS = {
    "sqlite": 'SELECT m.name, f."table" FROM sqlite_master m JOIN pragma_foreign_key_list(m.name) f '
    "WHERE m.type = 'table'",
    "postgresql": "SELECT c.relname, p.relname FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid "
    "JOIN pg_class p ON p.oid = k.confrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
    f"WHERE k.contype = 'f' AND {_SCHEMA}",
    "mysql": "SELECT TABLE_NAME, REFERENCED_TABLE_NAME FROM information_schema.KEY_COLUMN_USAGE "
    "WHERE TABLE_SCHEMA = DATABASE() AND REFERENCED_TABLE_SCHEMA = DATABASE() "
    "AND REFERENCED_TABLE_NAME IS NOT NULL",
}
_PG_COLUMNS = (
    "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
    f"WHERE a.attnum > 0 AND NOT a.attisdropped AND {_SCHEMA}"
)
# (table, column, kind): generated columns are left out of inserts; PostgreSQL json values are sent as text.
_SPECIAL_COLUMNS = {
    "sqlite": "SELECT m.name, x.name, 'generated' FROM sqlite_master m JOIN pragma_table_xinfo(m.name) x "
    "WHERE m.type = 'table' AND x.hidden IN (2, 3)",
    "postgresql": "SELECT c.relname, a.attname, CASE WHEN a.attgenerated <> '' THEN 'generated' ELSE 'json' END "
    f"{_PG_COLUMNS} AND (a.attgenerated <> '' OR a.atttypid IN ('json'::regtype, 'jsonb'::regtype))",
    "mysql": "SELECT TABLE_NAME, COLUMN_NAME, 'generated' FROM information_schema.COLUMNS "
    "WHERE TABLE_SCHEMA = DATABASE() AND COALESCE(GENERATION_EXPRESSION, '') <> ''",
}
_PG_SEQUENCES = (
    "SELECT c.relname, a.attname, pg_get_serial_sequence(format('%I.%I', n.nspname, c.relname), a.attname) "
    f"{_PG_COLUMNS} AND c.relname = ANY (?)"
)
_PG_SETVAL = (
    "SELECT setval(s.seqrelid::regclass, CASE WHEN m.v IS NULL THEN s.seqstart ELSE GREATEST(m.v, s.seqmin) END, "
    "m.v IS NOT NULL) FROM pg_sequence s CROSS JOIN (SELECT MAX({column}) AS v FROM {table}) m "
    "WHERE s.seqrelid = CAST(? AS regclass) AND s.seqincrement > 0"
)
_MYSQL_AUTO_INCREMENT = (
    "SELECT TABLE_NAME FROM information_schema.COLUMNS "
    "WHERE TABLE_SCHEMA = DATABASE() AND EXTRA LIKE '%auto_increment%'"
)
# Foreign keys during a restore: SQLite checks them at COMMIT (and resets the pragma then); PostgreSQL defers
# the DEFERRABLE ones (the others are checked at the end of each INSERT, which holds all rows of a table); MySQL
# checks them row by row, even inside one statement, so rows that reference each other cannot go back in any
# order: checks are off until the restore ends, and an id 0 is kept as 0.
_PROLOGUE = {
    "sqlite": ("PRAGMA defer_foreign_keys = ON",),
    "postgresql": ("SET CONSTRAINTS ALL DEFERRED",),
    "mysql": (
        "SET @txscope_fkc = @@foreign_key_checks, @txscope_mode = @@sql_mode",
        "SET foreign_key_checks = 0, sql_mode = CONCAT_WS(',', NULLIF(@txscope_mode, ''), 'NO_AUTO_VALUE_ON_ZERO')",
    ),
}
_MYSQL_EPILOGUE = "SET foreign_key_checks = @txscope_fkc, sql_mode = @txscope_mode"
_PG_MAX_PARAMS = 65535


@dataclass(frozen=True)
class Snapshot:
    """The row counts of every table, and the full contents of those with at most ``limit`` rows."""

    counts: dict[str, int]
    rows: dict[str, list[tuple[Any, ...]]]
    """The rows of each table with at most ``limit`` rows, in the order the database returned them."""
    columns: dict[str, list[str]]
    """The column names of each table in ``rows``, in the order of the values in its rows."""
    too_big: frozenset[str]
    """Tables with more than ``limit`` rows: only their count was kept, so they cannot be restored."""


# ------------------------------------------------------------------------------------------------ public
def list_tables(engine: Engine) -> list[str]:
    """The user tables of the engine's database (SQLite), search-path schemas (PostgreSQL) or current
    database (MySQL/MariaDB), sorted by name."""
    with engine.session() as session:
        return _list(session)


def row_counts(engine: Engine, tables: Sequence[str] | None = None) -> dict[str, int]:
    """The exact number of rows in each of ``tables`` (default: every table), in one query on PostgreSQL and
    MySQL/MariaDB."""
    return _reading(engine, tables, _count)


def dependency_order(engine: Engine, tables: Sequence[str]) -> list[str]:
    """``tables`` sorted so that each comes after every table it references by a foreign key (parents first).

    Self-references are ignored; tables in a cycle come in name order, after the tables the cycle references.
    """
    with engine.session() as session:
        return _order(tables, _foreign_keys(session))


def snapshot(engine: Engine, *, limit: int = 10_000) -> Snapshot:
    """The row count of every table, and the rows and columns of each table with at most ``limit`` rows."""

    def take(session: Session, names: list[str]) -> Snapshot:
        counts = _count(session, names)
        rows: dict[str, list[tuple[Any, ...]]] = {}
        columns: dict[str, list[str]] = {}
        for name in names:
            if counts[name] <= limit:
                columns[name], rows[name] = _read(session, name)
                counts[name] = len(rows[name])  # the rows may have changed since they were counted
        return Snapshot(counts, rows, columns, frozenset(n for n in names if n not in rows))

    return _reading(engine, None, take)


def changed_tables(engine: Engine, snap: Snapshot) -> list[str]:
    """The tables whose row count differs from ``snap``, or whose rows (for tables it holds) differ in any
    order; and the tables created since, if they have rows. Tables dropped since are not listed."""

    def compare(session: Session, names: list[str]) -> list[str]:
        changed = []
        for name, count in _count(session, names).items():
            if count != snap.counts.get(name, 0):
                changed.append(name)
            elif name in snap.rows and count:
                columns, rows = _read(session, name)
                before = (snap.columns[name], sorted(map(repr, snap.rows[name])))
                if (columns, sorted(map(repr, rows))) != before:  # as text: values of any type compare
                    changed.append(name)
        return changed

    return _reading(engine, None, compare)


def restore(engine: Engine, snap: Snapshot, tables: Sequence[str]) -> None:
    """Make ``tables`` hold exactly the rows ``snap`` has for them (none, for tables created since), in one
    transaction: every row is deleted (referencing tables first) and the snapshot's rows inserted again.

    Tables that reference one of them by a foreign key (transitively) and have rows are restored too, so that
    no row is left referencing a deleted one. Then id counters (PostgreSQL sequences, MySQL AUTO_INCREMENT,
    SQLite AUTOINCREMENT) go on from the largest id restored. Raises `RestoreError` for a table that does not
    exist, or that ``snap`` holds only the row count of.
    """
    dialect = engine.dialect.name
    with engine.session() as session:
        edges = _foreign_keys(session)
        wanted = set(tables)
        for name in sorted(wanted - set(_list(session))):
            raise RestoreError(name, "it does not exist; restore only tables that list_tables() returns")
        candidates = {child for child, parent in edges if parent in wanted} - wanted
        while candidates:
            grown = {name for name, count in _count(session, sorted(candidates)).items() if count}
            wanted |= grown
            candidates = {child for child, parent in edges if parent in grown} - wanted
        for name in sorted(wanted & snap.too_big):
            raise RestoreError(
                name,
                f"it held {snap.counts[name]} rows when the snapshot was taken, more than the snapshot's limit, "
                "so only its row count was kept; keep seed data small, or use the rollback sandbox instead of "
                "commit=True",
            )
        order = _order(wanted, edges)
        special = {(_text(t), _text(c)): kind for t, c, kind in _rows(session, _SPECIAL_COLUMNS[dialect])}
        try:
            with engine as tx:
                for statement in _PROLOGUE[dialect]:
                    tx.execute(statement).close()
                for name in reversed(order):
                    tx.execute(f"DELETE FROM {_quote(dialect, name)}").close()
                for name in order:
                    if snap.rows.get(name):
                        _insert(tx, dialect, name, snap, special)
        finally:
            if dialect == "mysql":
                try:
                    session.execute(_MYSQL_EPILOGUE).close()
                except Exception:
                    session.connection.close()  # never pool a connection with foreign key checks off
                    raise
    _reset_counters(engine, order)


# ----------------------------------------------------------------------------------------------- helpers
def _quote(dialect: str, name: str) -> str:
    if dialect == "mysql":
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)


def _query(session: Session, sql: str, params: Any = None) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The column names and rows of a query."""
    if session.transaction is None:
        # Nothing open: a plain autocommit statement, one round trip without BEGIN and ROLLBACK around it.
        native, args = session.dialect.prepare(sql, params)
        cursor = session.dialect.execute(session.connection, native, args)
    else:
        cursor = session.execute(sql, params)
    try:
        columns = [_text(d[0]) for d in cursor.description or ()]
        return columns, [tuple(row) for row in cursor.fetchall()]
    finally:
        cursor.close()


def _rows(session: Session, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    return _query(session, sql, params)[1]


def _reading(engine: Engine, tables: Sequence[str] | None, work: Callable[[Session, list[str]], _T]) -> _T:
    """``work(session, tables)``; when ``tables`` is None, every table, and if reading them fails, they are
    listed again and read again (another connection may have dropped one in between), up to 5 times."""
    attempt = 0
    while True:
        with engine.session() as session:
            names = list(tables) if tables is not None else _list(session)
            try:
                return work(session, names)
            except Exception:
                attempt += 1
                if tables is not None or attempt == 5:
                    raise


def _list(session: Session) -> list[str]:
    return sorted({_text(row[0]) for row in _rows(session, _TABLES[session.dialect.name])})


def _count(session: Session, names: Sequence[str]) -> dict[str, int]:
    dialect = session.dialect.name
    selects = [f"SELECT {i}, COUNT(*) FROM {_quote(dialect, name)}" for i, name in enumerate(names)]
    # One query for all on a server; SQLite (no round trips, at most 500 SELECTs in one) takes one per table.
    batches = [[select] for select in selects] if dialect == "sqlite" else [selects] if selects else []
    found = {int(i): int(n) for batch in batches for i, n in _rows(session, " UNION ALL ".join(batch))}
    return {name: found[i] for i, name in enumerate(names)}


def _read(session: Session, name: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    return _query(session, f"SELECT * FROM {_quote(session.dialect.name, name)}")


def _foreign_keys(session: Session) -> list[tuple[str, str]]:
    """(referencing table, referenced table) for every foreign key."""
    edges = [(_text(c), _text(p)) for c, p in _rows(session, _FOREIGN_KEYS[session.dialect.name])]
    if session.dialect.name == "sqlite":  # REFERENCES may spell the table name in another case
        spelled = {name.lower(): name for name in _list(session)}
        edges = [(c, spelled.get(p.lower(), p)) for c, p in edges]
    return edges


def _order(tables: Iterable[str], edges: Sequence[tuple[str, str]]) -> list[str]:
    """Parents first, ties broken by name; a cycle is entered at its first name once nothing outside it is
    left that it references."""
    remaining = set(tables)
    parents: dict[str, set[str]] = {name: set() for name in remaining}
    for child, parent in edges:
        if child in remaining and parent in remaining and child != parent:
            parents[child].add(parent)

    def ancestors(name: str) -> set[str]:
        seen: set[str] = set()
        stack = [name]
        while stack:
            for parent in parents[stack.pop()] & remaining:
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        return seen

    order: list[str] = []
    while remaining:
        ready = [name for name in remaining if not parents[name] & remaining]
        if not ready:  # only cycles and what hangs below them: enter a cycle that references no other
            ready = [name for name in remaining if all(name in ancestors(a) for a in ancestors(name))]
        order.append(min(ready))
        remaining.discard(order[-1])
    return order


def _param(value: Any, as_json: bool) -> Any:
    return json.dumps(value) if as_json and value is not None else value


def _insert(tx: Any, dialect: str, name: str, snap: Snapshot, special: dict[tuple[str, str], str]) -> None:
    columns = snap.columns[name]
    keep = [i for i, column in enumerate(columns) if special.get((name, column)) != "generated"]
    as_json = {i for i in keep if special.get((name, columns[i])) == "json"}  # psycopg takes no dict or list
    values = [[_param(row[i], i in as_json) for i in keep] for row in snap.rows[name]]
    head = f"INSERT INTO {_quote(dialect, name)} ({', '.join(_quote(dialect, columns[i]) for i in keep)})"
    one = "(" + ", ".join(["?"] * len(keep)) + ")"
    if dialect != "postgresql":
        tx.executemany(f"{head} VALUES {one}", values).close()
        return
    # executemany runs one statement per row, and PostgreSQL checks foreign keys after each: one INSERT with
    # every row of the table lets rows reference each other in any order.
    step = max(1, _PG_MAX_PARAMS // max(1, len(keep)))
    for start in range(0, len(values), step):
        chunk = values[start : start + step]
        sql = f"{head} OVERRIDING SYSTEM VALUE VALUES {', '.join([one] * len(chunk))}"
        tx.execute(sql, [value for row in chunk for value in row]).close()


def _reset_counters(engine: Engine, tables: Sequence[str]) -> None:
    """Make the id counters of ``tables`` continue after their largest id (start over when empty)."""
    dialect = engine.dialect.name
    if not tables:
        return
    script: list[str] = []
    with engine.session() as session:
        if dialect == "sqlite":
            if _rows(session, "SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'"):
                with engine as tx:  # without its row there, AUTOINCREMENT goes on after the largest id
                    tx.executemany(
                        "DELETE FROM sqlite_sequence WHERE name = ?", [[t] for t in tables]
                    ).close()
        elif dialect == "postgresql":
            found = [row for row in _rows(session, _PG_SEQUENCES, [list(tables)]) if row[2]]
            with engine as tx:
                for name, column, sequence in found:
                    sql = _PG_SETVAL.format(column=_quote(dialect, column), table=_quote(dialect, name))
                    tx.execute(sql, [sequence]).close()
        else:  # InnoDB moves an AUTO_INCREMENT set below the largest id to just after it
            auto = {_text(row[0]) for row in _rows(session, _MYSQL_AUTO_INCREMENT)}
            script = [
                f"ALTER TABLE {_quote(dialect, name)} AUTO_INCREMENT = 1" for name in tables if name in auto
            ]
    if script:  # MySQL commits ALTER TABLE by itself: outside any transaction, on a connection of its own
        engine.executescript("; ".join(script), source="txscope restore")
