"""Observers of what the application does on its connections, for tools built above the core (the plugin's
query counts and on-commit capture). Empty lists cost one truth test where the core consults them.

`STATEMENT_OBSERVERS` are told each statement the application sends through a `Channel` (its SQL and the
lane of the session sending it), just before it goes; the library's own traffic (``BEGIN``, ``SAVEPOINT``,
``RELEASE``, statement savepoints, its own queries) is not told. `COMMIT_CAPTURES` take the ``on_commit``
callbacks of an application's top-level commit instead of their running then: the last one added wins.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["COMMIT_CAPTURES", "STATEMENT_OBSERVERS"]

STATEMENT_OBSERVERS: list[Callable[[str, Any], None]] = []
"""Called with ``(sql, lane)`` before each application statement is sent (``lane``: the sending session's
`Lane`, or None). Mutated in place: the core holds this very list."""

COMMIT_CAPTURES: list[Callable[[Sequence[Callable[[], object]]], None]] = []
"""While not empty, the last one gets the callbacks of each top-level commit, which then do not run."""
