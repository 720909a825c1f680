"""sqlite3's ``detect_types`` and ``text_factory`` for one face of a shared connection.

sqlite3 fixes ``detect_types`` when a connection is opened, and the sandbox's connection is opened without it
(the plugin's own sessions, and faces that did not ask, must get the values sqlite3 gives by default). A face
that asks converts in Python what sqlite3 would have converted in C, with the same rules:

* the converter is looked up in ``sqlite3.converters`` (upper-cased name) at ``execute()``: from the column
  name's ``[type]`` (``PARSE_COLNAMES``) first, else from the first word of the column's declared type
  (``PARSE_DECLTYPES``);
* it is called with the value as bytes (an empty value or NULL gives None, without calling it);
* text without a converter goes through the connection's ``text_factory``.

The declared types of a statement's columns are what SQLite's ``sqlite3_column_decltype()`` says. Python's
sqlite3 does not expose it, so the statement is prepared a second time (not run) through the SQLite library on
the same connection, which sees the tables of the test's own transaction. Only faces with ``detect_types``
pay for it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sqlite3
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ConfigurationError

__all__ = ["RawText", "RowPlan", "declared_types", "plan_rows"]


class RawText(bytes):
    """A TEXT value as fetched while a face converts: told apart from a BLOB's plain bytes."""


class RowPlan:
    """How to turn the rows of one statement into what sqlite3 would have given the face."""

    def __init__(
        self,
        names: list[str],
        converters: list[Callable[[bytes], Any] | None],
        text_factory: Any,
    ) -> None:
        self.names = names
        """The columns' names as sqlite3 shows them (``PARSE_COLNAMES`` drops the ``[type]``)."""
        # One step per column (None: the value as fetched). With the default text_factory, TEXT is fetched as
        # str already; with another one it is fetched as RawText and each value goes through the factory.
        self.steps: list[Callable[[Any], Any] | None] = [
            _converting(converter) if converter is not None else None for converter in converters
        ]
        if text_factory is not str:
            for index, step in enumerate(self.steps):
                if step is None:
                    self.steps[index] = functools.partial(_text, text_factory, names[index])

        self.described: sqlite3.Cursor | None = None
        """A cursor whose description has the shown names, for the row factory (when they differ)."""
        self._active = [(index, step) for index, step in enumerate(self.steps) if step is not None]

    def convert(self, row: Sequence[Any]) -> tuple[Any, ...]:
        """The row's values converted as sqlite3 would have."""
        values = list(row)
        for index, step in self._active:
            value = values[index]
            if value is not None:
                values[index] = step(value)
        return tuple(values)


def _converting(converter: Callable[[bytes], Any]) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        raw = _as_bytes(value)
        return converter(raw) if raw else None  # sqlite3 gives None for an empty value, without calling it

    return convert


def _text(text_factory: Any, name: str, value: Any) -> Any:
    if not isinstance(value, RawText):
        return value  # a number or a BLOB
    raw = bytes(value)
    if text_factory is str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", "replace")
            raise sqlite3.OperationalError(
                f"Could not decode to UTF-8 column '{name}' with text '{text}'"
            ) from None
    return text_factory(raw)


def plan_rows(
    connection: sqlite3.Connection,
    sql: str,
    description: Sequence[Sequence[Any]] | None,
    detect_types: int,
    text_factory: Any,
) -> RowPlan | None:
    """The plan for the rows of ``sql`` just executed (None when it returns no rows)."""
    if description is None:
        return None
    names = [str(column[0]) for column in description]
    converters: list[Callable[[bytes], Any] | None] = [None] * len(names)
    if detect_types & sqlite3.PARSE_COLNAMES:
        for index, name in enumerate(names):
            converters[index] = _colname_converter(name)
            names[index] = _shown_name(name)
    if detect_types & sqlite3.PARSE_DECLTYPES and None in converters:
        for index, declared in enumerate(declared_types(connection, sql)):
            if converters[index] is None and declared:
                word = declared.split(" ", 1)[0].split("(", 1)[0]
                converters[index] = sqlite3.converters.get(word.upper())
    plan = RowPlan(names, converters, text_factory)
    if names != [str(column[0]) for column in description]:
        # A row factory is handed a cursor, and sqlite3.Row takes the names from a real one's description: a
        # statement that selects nothing under the shown names makes one.
        columns = ", ".join('NULL AS "{}"'.format(name.replace('"', '""')) for name in names)
        plan.described = connection.execute(f"SELECT {columns} LIMIT 0")
    return plan


def _colname_converter(name: str) -> Callable[[bytes], Any] | None:
    start = name.find("[")
    end = name.find("]", start + 1)
    if start < 0 or end < 0:
        return None
    converter: Callable[[bytes], Any] | None = sqlite3.converters.get(name[start + 1 : end].upper())
    return converter


def _shown_name(name: str) -> str:
    # As sqlite3 does: the name up to the first "[", less one space before it.
    cut = name.find("[")
    if cut < 0:
        return name
    if cut > 0 and name[cut - 1] == " ":
        cut -= 1
    return name[:cut]


def _as_bytes(value: Any) -> bytes:
    """The value as SQLite hands it to a converter: its text for numbers (REAL as SQLite prints it)."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, float):
        text = f"{value:.15g}"
        if text.isdigit() or (text[:1] == "-" and text[1:].isdigit()):
            text += ".0"
        elif "e" in text and "." not in text:
            mantissa, _, exponent = text.partition("e")
            text = f"{mantissa}.0e{exponent}"
        return text.encode("ascii")
    return str(value).encode("utf-8")


# ------------------------------------------------------------------------------------ declared types
def declared_types(connection: sqlite3.Connection, sql: str) -> list[str | None]:
    """What ``sqlite3_column_decltype()`` says of each column of ``sql``, prepared (not run) on ``connection``."""
    lib = _library()
    handle = ctypes.c_void_p.from_address(id(connection) + object.__basicsize__).value
    statement = ctypes.c_void_p()
    if lib.sqlite3_prepare_v2(handle, sql.encode("utf-8"), -1, ctypes.byref(statement), None) != 0:
        return []  # the statement ran already: it cannot fail to prepare but on a schema change in between
    try:
        count = lib.sqlite3_column_count(statement)
        return [_text_or_none(lib.sqlite3_column_decltype(statement, i)) for i in range(count)]
    finally:
        lib.sqlite3_finalize(statement)


def _text_or_none(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", "replace")


@functools.cache
def _library() -> Any:
    """The SQLite library that sqlite3 runs on, with the four functions used here declared."""
    if sys.implementation.name != "cpython":
        raise ConfigurationError(
            f"detect_types is not available on a sandbox connection under {sys.implementation.name}: the "
            "sandbox reads declared types through CPython's sqlite3; convert the values in your code"
        )
    import _sqlite3

    lib: Any = None
    for name in (_sqlite3.__file__, ctypes.util.find_library("sqlite3")):
        try:
            candidate = ctypes.CDLL(name)
            candidate.sqlite3_column_decltype  # noqa: B018  # the lookup is the check
        except (OSError, AttributeError, TypeError):
            continue
        lib = candidate
        break
    if lib is None:
        raise ConfigurationError(
            "detect_types is not available on this sandbox connection: the SQLite library behind sqlite3 could "
            "not be found to read declared types; convert the values in your code"
        )
    pointer = ctypes.c_void_p
    lib.sqlite3_prepare_v2.argtypes = [
        pointer,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.POINTER(pointer),
        ctypes.POINTER(ctypes.c_char_p),
    ]
    lib.sqlite3_column_count.argtypes = [pointer]
    lib.sqlite3_column_decltype.argtypes = [pointer, ctypes.c_int]
    lib.sqlite3_column_decltype.restype = ctypes.c_char_p
    lib.sqlite3_finalize.argtypes = [pointer]
    return lib
