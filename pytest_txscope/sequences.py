"""Where generated ids stand, and putting them back (``@pytest.mark.txscope(reset_sequences=True)``).

A rolled-back test leaves its ids used on PostgreSQL (``nextval`` is not transactional) and MySQL/MariaDB
(InnoDB's ``AUTO_INCREMENT`` counter is not either); on SQLite the rollback gives them back (``sqlite_sequence``
and the highest rowid are ordinary data), but a test with real commits does not. `read` notes where each
counter stands at the start of the run; `reset` puts every counter back there, before a test that asks for it.

The reset runs outside the test's transaction, because no backend can undo it inside one: PostgreSQL's
``setval`` is not rolled back either, and MySQL's ``ALTER TABLE ... AUTO_INCREMENT`` commits.
"""

from __future__ import annotations

from dataclasses import dataclass

from .core import Engine

__all__ = ["Counters", "read", "reset"]


@dataclass(frozen=True)
class Counters:
    """Each counter of a database and the value it stood at."""

    backend: str
    values: tuple[tuple[str, int | None, int], ...]
    """(name, last value or None when never used, start value)."""


def read(engine: Engine) -> Counters:
    """Where every sequence (PostgreSQL), ``AUTO_INCREMENT`` counter (MySQL/MariaDB) or ``sqlite_sequence``
    row (SQLite) of ``engine``'s database stands now."""
    backend = engine.url.backend if engine.url is not None else "sqlite"
    with engine.session() as session:
        if backend == "postgresql":
            rows = session.fetchall(
                "SELECT format('%I.%I', schemaname, sequencename), last_value, start_value FROM pg_sequences "
                "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
            )
        elif backend == "mysql":
            rows = session.fetchall(
                "SELECT TABLE_NAME, AUTO_INCREMENT, 1 FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = DATABASE() AND AUTO_INCREMENT IS NOT NULL"
            )
        elif session.fetchscalar("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_sequence'"):
            rows = session.fetchall("SELECT name, seq, 0 FROM sqlite_sequence")
        else:
            rows = []
    return Counters(backend, tuple((str(n), None if v is None else int(v), int(s)) for n, v, s in rows))


def reset(engine: Engine, counters: Counters) -> None:
    """Put every counter of ``counters`` back where it stood (one statement on PostgreSQL, one per table with
    an ``AUTO_INCREMENT`` column on MySQL/MariaDB, two on SQLite); committed at once."""
    if counters.backend == "postgresql":
        if counters.values:
            with engine as tx:
                tx.execute(
                    "SELECT setval(s::regclass, v, c) FROM unnest(:s::text[], :v::bigint[], :c::boolean[]) "
                    "AS t(s, v, c)",
                    {
                        "s": [name for name, _, _ in counters.values],
                        "v": [start if last is None else last for _, last, start in counters.values],
                        "c": [last is not None for _, last, _ in counters.values],
                    },
                )
    elif counters.backend == "mysql":
        # Below the highest id in the table, MySQL/MariaDB take the highest id + 1: the run's own data stays.
        script = [
            f"ALTER TABLE `{name.replace('`', '``')}` AUTO_INCREMENT = {last}"
            for name, last, _ in counters.values
        ]
        if script:
            engine.executescript(";\n".join(script), source="txscope reset_sequences")
    else:
        with engine as tx:
            if tx.fetchscalar("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_sequence'"):
                tx.execute("DELETE FROM sqlite_sequence")
                tx.executemany(
                    "INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)",
                    [(n, v) for n, v, _ in counters.values],
                )
