"""Errors while building a test database: scripts, safety, restores, import paths, parameters."""

from __future__ import annotations

from pytest_txscope.errors.base import ConfigurationError, TxScopeError

__all__ = [
    "DatabaseInUseError",
    "ImportPathError",
    "MigrationError",
    "ParameterError",
    "RestoreError",
    "ScriptError",
    "UnsafeDatabaseError",
]


class ScriptError(TxScopeError, RuntimeError):
    """A statement of an SQL script failed; says which one, where, and what was kept."""

    def __init__(
        self,
        *,
        number: int,
        total: int,
        statement: str,
        line: int,
        source: str,
        cause: BaseException,
        kept: str,
    ) -> None:
        self.number = number
        self.total = total
        self.statement = statement
        self.line = line
        self.source = source
        self.cause = cause
        short = " ".join(statement.split())
        if len(short) > 120:
            short = short[:117] + "..."
        super().__init__(
            f"{source}, line {line}: statement {number} of {total} failed: {short!r}: "
            f"{type(cause).__name__}: {(str(cause).strip().splitlines() or [''])[0]}; {kept}"
        )


class MigrationError(TxScopeError, RuntimeError):
    """A migration failed while the test database was built (``txscope_schema = alembic:...``); names the
    revision and the database's error."""

    def __init__(self, source: str, where: str, error: str) -> None:
        self.source = source
        self.where = where
        self.error = error
        super().__init__(
            f"{source}: {where} failed: {error}; fix the migration (the database being built was dropped, "
            "and is built again on the next run)"
        )


class UnsafeDatabaseError(ConfigurationError):
    """A destructive action was refused because the database's name does not look like a test database."""

    def __init__(self, name: str, action: str, url: str, example: str) -> None:
        self.name = name
        self.action = action
        self.url = url
        self.fix = f"rename it (e.g. {example}) or allow it with txscope_allow_databases = {name}"
        super().__init__(
            f"refusing to {action} database {name!r} ({url}): its name does not look like a test database "
            f"(no 'test' word part); {self.fix}"
        )


class RestoreError(TxScopeError, RuntimeError):
    """A table cannot be put back as the snapshot had it."""

    def __init__(self, table: str, problem: str) -> None:
        self.table = table
        super().__init__(f"cannot restore table {table!r}: {problem}")


class ImportPathError(ConfigurationError):
    """An import path from the configuration does not import, or names the wrong kind of object."""

    def __init__(
        self, key: str, path: str, problem: str, fix: str = "write it as package.module:attribute"
    ) -> None:
        super().__init__(f"{key} entry {path!r} {problem}; {fix}")


class ParameterError(TxScopeError, TypeError):
    """SQL parameters do not match the placeholders in the statement."""


class DatabaseInUseError(TxScopeError, RuntimeError):
    """Another run holds the lock on a test database (or on its template's build) longer than this run waits."""

    def __init__(self, *, what: str, where: str, holder: str, waited: float) -> None:
        self.what = what
        self.holder = holder
        super().__init__(
            f"{what} ({where}) is in use by another run, held by {holder}; waited {waited:g} s "
            "(txscope_lock_timeout). Wait for that run to end, raise txscope_lock_timeout, or give this run a "
            "database of its own (another name in the URL): two runs never build or drop each other's databases"
        )
