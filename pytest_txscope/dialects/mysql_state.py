"""MySQL and MariaDB session state that outlives a rollback, and the statements that undo it.

Session variables (``SET FOREIGN_KEY_CHECKS=0``, ``SET sql_mode=''``), user variables (``SET @x``,
``@x := ...``, ``INTO @x``), temporary tables and named locks (``GET_LOCK``) all survive the rollback that ends
a test, on a connection the next test gets from the pool. Each is undone by a statement worked out before the
code's statement runs: a variable's current value is read then (one round trip, only when the code sets one).
``SET NAMES`` and ``SET CHARACTER SET`` are undone by restoring the character-set variables they change
(SQLAlchemy's MySQL dialect sends ``SET NAMES`` on every new connection: dropping the connection for it cost a
reconnect per test). What cannot be undone that way (``SET ROLE``, a statement this module cannot read) makes
the connection go instead of back to the pool.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .base import STATE

__all__ = ["undo_mysql_state", "watch_mysql"]

_INTO_USER_VARIABLE = re.compile(r"\bINTO\s+@", re.IGNORECASE)
_TEMPORARY = re.compile(
    r"\bCREATE\s+TEMPORARY\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?((?:`[^`]+`|\w+)(?:\.(?:`[^`]+`|\w+))?)",
    re.IGNORECASE,
)
_USER_VARIABLE = re.compile(r"(?<![@\w])@(\w+)\s*:=|\bINTO\s+((?:@\w+\s*,?\s*)+)", re.IGNORECASE)
_ASSIGNMENT = re.compile(
    r"\s*(?:(?P<scope>GLOBAL|SESSION|LOCAL)\s+|@@(?P<at_scope>GLOBAL|SESSION|LOCAL)\.|@@)?"
    r"(?P<user>@)?(?P<name>\w+)\s*:?=",
    re.IGNORECASE,
)
_CHARSET = re.compile(r"\s*(?:NAMES|CHARACTER\s+SET|CHARSET)\b", re.IGNORECASE)
_CHARSET_VARIABLES = (
    "character_set_client",
    "character_set_connection",
    "character_set_results",
    "collation_connection",  # last: setting character_set_connection resets it to that set's default
)
"""What ``SET NAMES`` and ``SET CHARACTER SET`` change."""
_NO_STATE = ("TRANSACTION", "STATEMENT")  # SET TRANSACTION: the next transaction only; SET STATEMENT ... FOR


def watch_mysql(sql: str) -> int:
    """`STATE` for a statement that may change what a rollback leaves in place; 0 otherwise."""
    # Substrings first: an unanchored regular expression costs microseconds on every statement.
    upper = sql.upper()
    if (
        "TEMPORARY" in upper
        or "GET_LOCK" in upper
        or ":=" in sql
        or upper.lstrip().startswith("SET")
        or ("@" in sql and _INTO_USER_VARIABLE.search(sql))
    ):
        return STATE
    return 0


def undo_mysql_state(
    sql: str, read: Callable[[str], tuple[Any, ...]], literal: Callable[[str], str]
) -> list[str] | None:
    """The statements undoing what ``sql`` is about to change; ``read(query)`` returns the one row of a query
    (the current values), ``literal(text)`` quotes a string. None when statements cannot undo it."""
    undo: list[str] = []
    if re.search(r"\bGET_LOCK\b", sql, re.IGNORECASE):
        undo.append("SELECT RELEASE_ALL_LOCKS()")
    undo.extend(f"DROP TEMPORARY TABLE IF EXISTS {name}" for name in _TEMPORARY.findall(sql))
    for assigned, into in _USER_VARIABLE.findall(sql):
        names = [assigned] if assigned else re.findall(r"@(\w+)", into)
        undo.extend(f"SET @{name} = NULL" for name in names)
    head = re.match(r"\s*SET\s+", sql, re.IGNORECASE)
    if head is None:
        return undo
    variables: list[str] = []
    for part in _split_assignments(sql[head.end() :]):
        if part.lstrip().upper().startswith(_NO_STATE):
            return undo
        if _CHARSET.match(part):
            variables.extend(_CHARSET_VARIABLES)
            continue
        found = _ASSIGNMENT.match(part)
        if found is None:
            return None  # SET ROLE, SET PASSWORD...: reconnecting undoes them
        scope = (found.group("scope") or found.group("at_scope") or "").upper()
        if found.group("user"):
            undo.append(f"SET @{found.group('name')} = NULL")
        elif scope != "GLOBAL":  # a global change is not the session's; nothing here can undo it
            variables.append(found.group("name"))
    if variables:
        variables = list(dict.fromkeys(variables))
        try:
            values = read("SELECT " + ", ".join(f"@@SESSION.{name}" for name in variables))
        except Exception:
            return undo  # no such variable: the code's SET fails the same way
        undo.append(
            "SET "
            + ", ".join(
                f"@@SESSION.{n} = {_sql_value(v, literal)}" for n, v in zip(variables, values, strict=True)
            )
        )
    return undo


def _sql_value(value: object, literal: Callable[[str], str]) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, int | float):
        return str(value)
    return literal(str(value))


def _split_assignments(text: str) -> list[str]:
    """``a = 1, b = CONCAT('x,', @y)`` split at the commas outside parentheses and quotes."""
    parts: list[str] = []
    depth, quote, start = 0, "", 0
    for i, char in enumerate(text):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"`":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts
