"""Test databases: building a database once per schema (PostgreSQL through a template database, MySQL/MariaDB
and SQLite directly), locks while building, and dropping them. Their names, and the rule that guards every
destructive action, are in `pytest_txscope.database_names` (re-exported here).

Nothing here imports pytest: the plugin decides when to call these functions.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .core import Engine
from .database_names import (
    base_name,
    check_safe,
    is_memory,
    looks_like_test_database,
    schema_key,
    sqlite_path,
    template_name,
    template_prefix,
    worker_url,
)
from .dialects import DBAPIConnection, dialect_for_url
from .errors import BackendUnavailableError, ConfigurationError, TxScopeError, UnsafeDatabaseError
from .run_locks import DEFAULT_TIMEOUT, FileLocks, ServerLocks
from .url import DatabaseURL

__all__ = [
    "Provisioned",
    "UnsafeDatabaseError",
    "check_safe",
    "drop",
    "drop_templates",
    "end_connection",
    "looks_like_test_database",
    "provision",
    "schema_key",
    "worker_url",
]

_MARK = "txscope:"  # prefix of the key recorded on each database we build
_PG_OBJECT_IN_USE = "55006"


# ------------------------------------------------------------------------------------------- databases
@dataclass
class Provisioned:
    """What `provision` did."""

    url: DatabaseURL
    """The database the run uses."""
    created: bool
    """The run created it (so it may drop it at the end)."""
    reused: bool
    """An existing database built from the same schema key was kept."""
    hold: FileLocks | _Server | None = None
    """What holds the run's lock on the database: give it to `drop`, or `release` it when the run ends."""

    def release(self) -> None:
        """Let other runs use the database (the lock also ends with this process)."""
        if self.hold is not None:
            self.hold.close()
            self.hold = None


def _build(url: DatabaseURL, build: Callable[[Engine], None]) -> None:
    engine = Engine.from_url(url)
    try:
        build(engine)
    finally:
        engine.dispose()


class _SQLiteFile:
    """An SQLite database file; the schema key lives in ``<file>.txscope-key`` next to it."""

    def __init__(self, url: DatabaseURL) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self.key_file = Path(f"{self.path}.txscope-key")

    def close(self) -> None:
        pass

    def recorded(self) -> str | None:
        if not self.path.exists():
            return None
        return self.key_file.read_text().strip() if self.key_file.exists() else ""

    def remove(self) -> None:
        for end in ("", "-wal", "-shm", "-journal", ".txscope-key"):
            Path(f"{self.path}{end}").unlink(missing_ok=True)

    def replace(self, key: str, build: Callable[[Engine], None], *, via_template: bool) -> None:
        self.remove()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()
        try:
            _build(self.url, build)
        except BaseException:
            self.remove()
            raise
        self.key_file.write_text(_MARK + key + "\n")


class _Server:
    """A PostgreSQL or MySQL/MariaDB server, through an autocommit connection to the ``postgres`` database
    (PostgreSQL) or to no database (MySQL).

    PostgreSQL keeps the schema key as a database comment, MariaDB too (``ALTER DATABASE ... COMMENT``, 10.5+).
    MySQL has no database comments: there the key goes to ``<lock_dir>/<host>_<port>_<db>.key``.
    """

    def __init__(self, url: DatabaseURL, lock_dir: Path | None = None) -> None:
        self.url = url
        self.backend = url.backend
        self.dialect = dialect_for_url(url)  # the driver the URL names
        admin = url.with_database("postgres" if self.backend == "postgresql" else "")
        try:
            self.conn: DBAPIConnection = self.dialect.connect_from_url(admin, {})()
        except TxScopeError:
            raise  # the dialect's own, already naming the cause (asyncpg's failures)
        except Exception as exc:
            # Not chained: the driver's frames hold the password as arguments, which pytest prints.
            if isinstance(exc, OSError) or type(exc).__name__ in ("OperationalError", "InterfaceError"):
                raise BackendUnavailableError(str(admin), exc) from None
            raise ConfigurationError(
                f"the driver refused the connection options of {admin}: {type(exc).__name__}: {exc}; "
                "check the options in the URL's query string"
            ) from None
        self.locks = ServerLocks(self.run, self.backend, str(url))
        self.key_file: Path | None = None
        if self.backend == "mysql":
            # DROP DATABASE waits for metadata locks: fail after a while rather than hang for a day.
            self.run("SET SESSION lock_wait_timeout = 60")
            if lock_dir is not None and not self._schema_comments():
                label = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{url.host}_{url.port}_{url.database}")
                self.key_file = lock_dir / f"{label}.key"

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()

    def run(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        cursor = self.conn.cursor()
        try:
            cursor.execute(sql, params)
            return list(cursor.fetchall()) if cursor.description else []
        finally:
            cursor.close()

    def quote(self, name: str) -> str:
        if self.backend == "postgresql":
            return '"' + name.replace('"', '""') + '"'
        return "`" + name.replace("`", "``") + "`"

    def literal(self, text: str) -> str:
        return self.dialect.string_literal(self.conn, text)

    def _schema_comments(self) -> bool:
        return bool(
            self.run(
                "SELECT 1 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'information_schema' "
                "AND TABLE_NAME = 'SCHEMATA' AND COLUMN_NAME = 'SCHEMA_COMMENT'"
            )
        )

    def comments(self) -> dict[str, str]:
        """Every database on the server, mapped to its comment ("" when none)."""
        if self.backend == "postgresql":
            rows = self.run("SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database")
        elif self.key_file is None:
            rows = self.run("SELECT SCHEMA_NAME, SCHEMA_COMMENT FROM information_schema.SCHEMATA")
        else:
            rows = self.run("SELECT SCHEMA_NAME, '' FROM information_schema.SCHEMATA")
        return {str(name): str(comment or "") for name, comment in rows}

    def recorded(self) -> str | None:
        comment = self.comments().get(self.url.database)
        if comment is None or self.key_file is None:
            return comment
        return self.key_file.read_text().strip() if self.key_file.exists() else ""

    def record(self, name: str, key: str) -> None:
        if self.key_file is not None:
            self.key_file.write_text(_MARK + key + "\n")
        elif self.backend == "postgresql":
            self.run(f"COMMENT ON DATABASE {self.quote(name)} IS {self.literal(_MARK + key)}")
        else:
            self.run(f"ALTER DATABASE {self.quote(name)} COMMENT {self.literal(_MARK + key)}")

    def terminate(self, name: str) -> None:
        """PostgreSQL: disconnect every other session on database ``name``, so it can be dropped or cloned.
        (MySQL drops a database in use; ``lock_wait_timeout`` bounds the wait for open transactions on it.)"""
        if self.backend == "postgresql":
            self.run(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )

    def drop(self, name: str) -> None:
        self.terminate(name)
        self.run(f"DROP DATABASE IF EXISTS {self.quote(name)}")

    def create(self, name: str, options: str = "") -> None:
        self.run(f"CREATE DATABASE {self.quote(name)}{options}")

    def build_into(self, name: str, build: Callable[[Engine], None]) -> None:
        """Run ``build`` on database ``name``; drop the database if it raises."""
        try:
            _build(self.url.with_database(name), build)
        except BaseException:
            self.drop(name)
            raise

    def remove(self) -> None:
        if self.key_file is not None:
            self.key_file.unlink(missing_ok=True)
        self.drop(self.url.database)

    def replace(self, key: str, build: Callable[[Engine], None], *, via_template: bool) -> None:
        name = self.url.database
        if self.backend == "postgresql" and not via_template:
            # One database to build: building it in place costs one CREATE DATABASE, where a template costs
            # two, a clone (a copy of its files) and a DROP at the end of the run.
            self._drop_stale_templates("", self.comments())  # what reusing runs kept is replaced now
            self.drop(name)
            self.create(name)
            self.build_into(name, build)
        elif self.backend == "postgresql":
            template = template_name(base_name(name), key)
            comments = self.comments()
            if comments.get(template) != _MARK + key:
                self._drop_stale_templates(template, comments)
                self.drop(template)  # half-built by a run that was killed: it has no key recorded
                self.create(template)
                self.build_into(template, build)
                self.record(template, key)
            self.drop(name)
            self.terminate(template)  # a connection build() left open would make the clone fail
            self.create(name, f" TEMPLATE {self.quote(template)}")
        else:
            # A database that is replaced keeps its character set and collation.
            charset = self.run(
                "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
                "WHERE SCHEMA_NAME = %s",
                (name,),
            )
            self.remove()
            self.create(name, f" CHARACTER SET {charset[0][0]} COLLATE {charset[0][1]}" if charset else "")
            self.build_into(name, build)
        self.record(name, key)

    def _drop_stale_templates(self, template: str, comments: Collection[str]) -> None:
        """Drop the templates of this base built for other keys (and any a killed run left half-built)."""
        prefix = template_prefix(base_name(self.url.database))
        for other in comments:
            if other != template and other.startswith(prefix):
                try:
                    self.run(f"DROP DATABASE IF EXISTS {self.quote(other)}")
                except Exception as exc:
                    if getattr(exc, "sqlstate", None) != _PG_OBJECT_IN_USE:  # in use by another run: leave it
                        raise


def provision(
    url: DatabaseURL,
    *,
    key: str,
    build: Callable[[Engine], None],
    reuse: bool,
    allow: Collection[str],
    lock_dir: Path,
    via_template: bool = True,
    lock_timeout: float = DEFAULT_TIMEOUT,
    keep_lock: bool = False,
) -> Provisioned:
    """Make ``url``'s database exist with the schema ``build(engine)`` creates, identified by ``key``.

    With ``reuse``, a database built earlier with the same key is kept as it is. Otherwise it is dropped if it
    exists and built again (both guarded by `check_safe`). If ``build`` raises, what was created is removed
    and the error propagates. PostgreSQL builds a template database ``<base>_tpl_<key>`` once (concurrent xdist
    workers wait for it) and clones it; stale templates of the same base are dropped. With
    ``via_template=False`` (one process builds one database) it builds in place.

    The database's lock is taken first (see `pytest_txscope.run_locks`); with ``keep_lock`` it is held until
    `Provisioned.release` or `drop`, else released on return. Waiting for it, or for a template another
    process builds, raises `DatabaseInUseError` after ``lock_timeout`` seconds. ``sqlite:///:memory:`` is
    returned as is: it only exists inside its own engine.
    """
    if url.backend == "sqlite" and is_memory(url):
        return Provisioned(url, created=False, reused=False)
    what = f"test database {url.database!r}"
    building = f"build {base_name(url.database)}"
    target: _SQLiteFile | _Server
    if url.backend == "sqlite":
        # Next to the file, not in this project's cache: a run from another checkout finds the same lock.
        path = sqlite_path(url).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        files = FileLocks(path.parent)
        files.acquire(f"{path.name}.txscope", what, lock_timeout)
        hold: FileLocks | _Server = files
        target = _SQLiteFile(url)
    else:
        hold = target = _Server(url, lock_dir)
    # Templates are shared by the runs on one base name: one process builds, clones or drops them at a time.
    templates = target.locks if isinstance(target, _Server) and url.backend == "postgresql" else None
    try:
        if isinstance(target, _Server):
            target.locks.acquire(f"use {url.database}", what, lock_timeout)
        if templates is not None:
            templates.acquire(building, f"the template of {base_name(url.database)!r}", lock_timeout)
        recorded = target.recorded()
        if reuse and recorded == _MARK + key:
            created = False
        else:
            if recorded is not None:
                check_safe(url, "drop", allow)
            check_safe(url, "create", allow)
            target.replace(key, build, via_template=via_template)
            created = True
        if templates is not None:
            templates.release(building)
    except BaseException:
        hold.close()
        raise
    if not keep_lock:
        hold.close()
    return Provisioned(url, created=created, reused=not created, hold=hold if keep_lock else None)


def drop(url: DatabaseURL, *, allow: Collection[str], held: Provisioned | None = None) -> None:
    """Drop ``url``'s database (guarded by `check_safe`). PostgreSQL disconnects other sessions on it first;
    SQLite removes the file and its -wal, -shm, -journal and key files.

    ``held`` is what `provision` returned: the drop runs under its lock, which is released afterwards. Without
    it, the database's lock is taken first, without waiting (`DatabaseInUseError` if another run holds it)."""
    if url.backend == "sqlite" and is_memory(url):
        return
    check_safe(url, "drop", allow)
    try:
        if url.backend == "sqlite" and held is None:  # a crashed worker's file: its lock file goes with it
            path = sqlite_path(url).resolve()
            with contextlib.closing(FileLocks(path.parent)) as files:
                files.acquire(f"{path.name}.txscope", f"test database {url.database!r}", 0)
                _SQLiteFile(url).remove()
        elif url.backend == "sqlite":
            _SQLiteFile(url).remove()
        elif held is not None and isinstance(held.hold, _Server):
            held.hold.remove()
        else:
            with contextlib.closing(_Server(url)) as server:
                server.locks.acquire(f"use {url.database}", f"test database {url.database!r}", 0)
                server.remove()
    finally:
        if held is not None:
            held.release()


def drop_templates(
    url: DatabaseURL, *, allow: Collection[str], lock_timeout: float = DEFAULT_TIMEOUT
) -> None:
    """PostgreSQL: drop every template `provision` built for ``url``'s database (``<base>_tpl_*``), once no
    other process builds or clones one; no-op on the other backends."""
    if url.backend != "postgresql":
        return
    base = base_name(url.database)
    check_safe(url.with_database(base), "drop", allow)
    prefix = template_prefix(base)
    with contextlib.closing(_Server(url)) as server:
        server.locks.acquire(f"build {base}", f"the template of {base!r}", lock_timeout)
        for name in server.comments():
            if name.startswith(prefix):
                server.drop(name)


def end_connection(url: DatabaseURL, connection: Any) -> bool:
    """End ``connection`` from outside while another thread waits on it: PostgreSQL and MySQL/MariaDB close it
    on the server (``pg_terminate_backend``, ``KILL``), which rolls back its open transaction and makes the
    waiting statement fail at once; SQLite interrupts the running statement. Returns whether it was done (a
    server may refuse a user without the right to end other sessions)."""
    if url.backend == "sqlite":
        connection.interrupt()
        return True
    dialect = dialect_for_url(url)
    try:  # from a connection to the same database: the user may reach no other
        session = dialect.session_id(connection)  # mysqlclient's thread_id() refuses while the statement runs
        killer = dialect.connect_from_url(url, {})()
    except Exception:  # the caller's error names the thread; a failed kill only means waiting for it
        return False
    try:
        cursor = killer.cursor()
        if url.backend == "postgresql":
            cursor.execute("SELECT pg_terminate_backend(%s)", (session,))
        else:
            cursor.execute(f"KILL CONNECTION {int(session or 0)}")
        cursor.close()
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            killer.close()
    return True
