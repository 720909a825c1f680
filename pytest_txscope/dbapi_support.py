"""What the sandbox's DB-API connection (`pytest_txscope.dbapi`) reads statements with, and the driver errors
and flags it hands out: transaction control sent as text, isolation level names, driver error classes."""

from __future__ import annotations

import importlib
import re
from typing import Any

__all__ = [
    "CONTROL_HEADS",
    "LEVEL",
    "SENDING",
    "AutocommitFlag",
    "driver_error",
    "level_name",
    "match_control",
    "may_write",
]

# Statements that only read, or only control transactions: the rest may change data.
_READS = (
    "SELECT",
    "SHOW",
    "EXPLAIN",
    "DESCRIBE",
    "PRAGMA",
    "VALUES",
    "SET",
    "SAVEPOINT",
    "RELEASE",
    "ROLLBACK",
)

# Transaction control sent as text: it would end (or try to set up) the sandbox's own transaction. One C-level
# match per statement; an ordinary statement fails it at its first word.
match_control = re.compile(
    r"""\s*(?:
      (?P<refuse>PREPARE\s+TRANSACTION|(?:COMMIT|ROLLBACK)\s+PREPARED|XA\s)
    | (?P<begin>BEGIN|START\s+TRANSACTION)
    | (?P<commit>COMMIT|END)
    | (?P<rollback>ROLLBACK|ABORT)(?!\s+(?:WORK\s+|TRANSACTION\s+)?TO\b)
    | (?P<characteristics>SET\s+(?:SESSION\s+|LOCAL\s+|GLOBAL\s+)?TRANSACTION
        | SET\s+SESSION\s+CHARACTERISTICS\s+AS\s+TRANSACTION)
    )\b""",
    re.IGNORECASE | re.VERBOSE,
).match
# The first three characters of a statement `match_control` may match (any case, as code writes it); a statement that
# starts with whitespace is matched too.
CONTROL_HEADS = frozenset(
    h
    for word in ("BEG", "STA", "COM", "END", "ROL", "ABO", "SET", "PRE", "XA ", "XA\t")
    for h in (word, word.lower(), word.capitalize())
)
LEVEL = re.compile(
    r"ISOLATION\s+LEVEL\s+(READ\s+UNCOMMITTED|READ\s+COMMITTED|REPEATABLE\s+READ|SERIALIZABLE)", re.I
)

# Driver cursor methods other than execute/executemany that send SQL (or read a result set of one).
SENDING = frozenset(
    ("copy", "stream", "scroll", "callproc", "nextset", "copy_expert", "copy_from", "copy_to")
)

_made: dict[tuple[str, str, type[Exception]], type[Exception]] = {}


def driver_error(module: str, name: str, ours: type[Exception]) -> type[Exception]:
    """A class deriving from the driver's error ``module.name`` and from ``ours``: code that catches the
    driver's error catches it, and so does code that catches ours. Made (and the driver imported) when first
    needed."""
    key = (module, name, ours)
    made = _made.get(key)
    if made is None:
        base = getattr(importlib.import_module(module), name)
        made = type(f"Sandbox{name}", (base, ours), {"__module__": __name__})
        _made[key] = made
    return made


def may_write(sql: str) -> bool:
    return not sql.lstrip()[:9].upper().startswith(_READS)


def level_name(level: object) -> str:
    """An isolation level as SQL spells it (``REPEATABLE READ``) from a name, an enum or SQL text."""
    text = str(getattr(level, "name", level))
    return " ".join(text.replace("_", " ").replace("-", " ").split()).upper()


class AutocommitFlag:
    """``conn.autocommit`` reads as the mode (psycopg) and ``conn.autocommit(True)`` switches it (PyMySQL)."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    def __bool__(self) -> bool:
        return bool(self._connection.autocommit_mode)

    def __eq__(self, other: object) -> bool:
        return bool(self) == other

    def __hash__(self) -> int:
        return hash(bool(self))

    def __repr__(self) -> str:
        return repr(bool(self))

    def __call__(self, value: object) -> None:
        self._connection.switch_autocommit(bool(value))
