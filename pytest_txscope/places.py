"""Where code is, for messages: the innermost frame in the user's own code, found cheaply.

Frames in libraries the user calls into (this package, the drivers, and integrations that register
themselves with `add_library`) say less than the user's line that called them, so they are skipped.
"""

from __future__ import annotations

import importlib
import os
from types import CodeType, FrameType

__all__ = ["Place", "add_library", "caller_place", "describe_place"]

Place = tuple[CodeType, int]
"""Where code is: its code object and the offset of its instruction then (``f_lasti``: reading it costs
nothing, while ``f_lineno`` decodes the line table). Turned into a line only when a message needs it."""

_libraries: list[str] = [
    f"{os.sep}{name}{os.sep}" for name in ("pytest_txscope", "psycopg", "psycopg2", "pymysql", "MySQLdb")
]
_STDLIB = os.path.dirname(os.__file__)
_library_code: dict[CodeType, bool] = {}  # a few hundred entries at most: the code between users and us


def add_library(*packages: str) -> None:
    """Count frames in these top-level packages as library code (an integration names its library)."""
    for name in packages:
        part = f"{os.sep}{name}{os.sep}"
        if part not in _libraries:
            _libraries.append(part)
            _library_code.clear()


def caller_place(frame: FrameType | None) -> Place | None:
    """The innermost frame from ``frame`` outwards in the user's code (outside the libraries, the standard
    library and generated code), with where it is now; None when there is none. Code run in a greenlet
    (SQLAlchemy's asyncio layer runs its sync code in one) continues in the frames of the greenlet that
    switched to it: the user's coroutine that awaited SQLAlchemy."""
    place = _caller_place(frame)
    if place is None:
        try:  # optional (SQLAlchemy's asyncio layer needs it): looked for only when no place was found
            greenlet = importlib.import_module("greenlet")
        except ImportError:
            return None
        parent = greenlet.getcurrent().parent
        while place is None and parent is not None:
            place = _caller_place(parent.gr_frame)
            parent = parent.parent
    return place


def _caller_place(frame: FrameType | None) -> Place | None:
    while frame is not None:
        code = frame.f_code
        library = _library_code.get(code)
        if library is None:
            path = code.co_filename
            library = _library_code[code] = (
                any(part in path for part in _libraries)
                or (path.startswith(_STDLIB) and "-packages" not in path)
                or path.startswith("<")  # code generated at run time (SQLAlchemy's wrappers, <string>)
            )
        if not library:
            return code, frame.f_lasti
        frame = frame.f_back
    return None


def describe_place(place: Place | None) -> str:
    """``file:line in function``, or ``an unknown place``."""
    if place is None:
        return "an unknown place"
    code, offset = place
    line = next((n for start, end, n in code.co_lines() if start <= offset < end and n is not None), None)
    return f"{code.co_filename}:{line or code.co_firstlineno} in {code.co_name}"
