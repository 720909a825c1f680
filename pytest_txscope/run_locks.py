"""Locks that keep two runs out of each other's test databases: two terminals, two CI jobs on one server.

A run holds the lock of each database it uses from before it builds it until after it drops it, and the lock of
a PostgreSQL template while it builds or clones it. A lock that is taken waits at most ``timeout`` seconds,
then raises `DatabaseInUseError` naming the holder. On PostgreSQL and MySQL/MariaDB the lock lives on the
server (a session-level advisory lock, ``GET_LOCK``): it serves every machine, costs one round trip when free,
and ends with the connection when a run crashes. SQLite files get a file lock next to pytest's cache.

Nothing here imports pytest.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from .errors import DatabaseInUseError

__all__ = ["DEFAULT_TIMEOUT", "FileLocks", "ServerLocks"]

DEFAULT_TIMEOUT = 300.0
"""Seconds a run waits for another's lock (``txscope_lock_timeout``)."""
_LONGEST_PAUSE = 0.5  # between two tries: a free lock is noticed within this long


def _holder_label() -> str:
    """Who this process is, for the message another run shows (PostgreSQL keeps 63 bytes of it)."""
    return f"pytest-txscope pid {os.getpid()} on {socket.gethostname()}"[:63]


def _wait(try_lock: Callable[[], bool], timeout: float, failed: Callable[[], DatabaseInUseError]) -> None:
    """Call ``try_lock`` until it succeeds, pausing longer each time, for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause = 0.02
    while not try_lock():
        left = deadline - time.monotonic()
        if left <= 0:
            raise failed()
        time.sleep(min(pause, left))
        pause = min(pause * 2, _LONGEST_PAUSE)


class ServerLocks:
    """Named locks held by one connection to a PostgreSQL or MySQL/MariaDB server (released when it closes).

    PostgreSQL: ``pg_try_advisory_lock`` on a 64-bit key derived from the name, from the ``postgres`` database
    every run connects to for its administration (advisory locks are per database). MySQL/MariaDB:
    ``GET_LOCK``, server-wide.
    """

    def __init__(self, run: Callable[[str, Any], list[tuple[Any, ...]]], backend: str, where: str) -> None:
        self.run = run
        self.backend = backend
        self.where = where

    def acquire(self, name: str, what: str, timeout: float) -> None:
        """Take lock ``name`` (about ``what``, for the message), waiting at most ``timeout`` seconds."""
        _wait(lambda: self._try(name), timeout, lambda: self._failed(name, what, timeout))

    def release(self, name: str) -> None:
        """Give lock ``name`` back."""
        if self.backend == "postgresql":
            self.run("SELECT pg_advisory_unlock(%s)", (_pg_key(name),))
        else:
            self.run("SELECT RELEASE_LOCK(%s)", (_mysql_name(name),))

    def _try(self, name: str) -> bool:
        if self.backend == "postgresql":  # the label rides along: the holder's name for whoever waits
            rows = self.run(
                "SELECT pg_try_advisory_lock(%s), set_config('application_name', %s, false)",
                (_pg_key(name), _holder_label()),
            )
        else:
            rows = self.run("SELECT GET_LOCK(%s, 0)", (_mysql_name(name),))
        return bool(rows[0][0])

    def _failed(self, name: str, what: str, timeout: float) -> DatabaseInUseError:
        return DatabaseInUseError(what=what, where=self.where, holder=self._holder(name), waited=timeout)

    def _holder(self, name: str) -> str:
        if self.backend == "postgresql":
            key = _pg_key(name) & 0xFFFFFFFFFFFFFFFF  # pg_locks shows the key's two halves, unsigned
            rows = self.run(
                "SELECT a.pid, a.client_addr, a.application_name FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                "AND l.classid::bigint = %s AND l.objid::bigint = %s AND l.objsubid = 1",
                (key >> 32, key & 0xFFFFFFFF),
            )
            if rows:
                pid, client, application = rows[0]
                return f"server session {pid} from {client or 'a local socket'} ({application or 'no name'})"
        else:
            rows = self.run(
                "SELECT ID, HOST FROM information_schema.PROCESSLIST WHERE ID = IS_USED_LOCK(%s)",
                (_mysql_name(name),),
            )
            if rows:
                return f"server connection {rows[0][0]} from {rows[0][1]}"
        return "a session that has just ended (try again)"


def _pg_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"txscope:{name}".encode()).digest()[:8], "big", signed=True)


def _mysql_name(name: str) -> str:
    full = f"txscope:{name}"  # GET_LOCK takes 64 characters
    return full if len(full) <= 64 else f"{full[:47]}:{hashlib.sha256(full.encode()).hexdigest()[:16]}"


class FileLocks:
    """Named locks shared by the processes of this machine: a locked file each in ``lock_dir``, which also
    says who holds it. Closing releases them (so does the end of the process)."""

    def __init__(self, lock_dir: Path) -> None:
        self.lock_dir = lock_dir
        self.files: dict[str, IO[bytes]] = {}

    def acquire(self, name: str, what: str, timeout: float) -> None:
        """Take lock ``name`` (about ``what``, for the message), waiting at most ``timeout`` seconds."""
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        path = self.lock_dir / f"{_file_name(name)}.lock"
        opened: list[IO[bytes]] = []

        def attempt() -> bool:
            if not opened:
                opened.append(open(path, "a+b"))  # noqa: SIM115 -- kept open while the lock is held
            if not _try_file(opened[0]):
                return False
            if _is_at(opened[0], path):
                return True
            opened.pop().close()  # its holder removed the file as it let go: lock the one at the path now
            return False

        try:
            _wait(attempt, timeout, lambda: self._failed(path, what, timeout))
        except BaseException:
            while opened:
                opened.pop().close()
            raise
        handle = opened[0]
        handle.truncate(0)
        handle.write(_holder_label().encode())
        handle.flush()
        self.files[name] = handle

    def release(self, name: str) -> None:
        """Give lock ``name`` back, and remove its file (while still holding it: a waiter that locks the removed
        file sees it is no longer at the path and tries again), so that no lock file outlives the database."""
        _remove_and_close(self.files.pop(name))

    def close(self) -> None:
        """Release every lock held."""
        while self.files:
            _remove_and_close(self.files.popitem()[1])

    def _failed(self, path: Path, what: str, timeout: float) -> DatabaseInUseError:
        try:
            holder = path.read_text(errors="replace").strip() or "another process"
        except OSError:
            holder = "another process"
        return DatabaseInUseError(what=what, where=f"lock file {path}", holder=holder, waited=timeout)


def _remove_and_close(handle: IO[bytes]) -> None:
    with contextlib.suppress(OSError):  # Windows cannot remove an open file: it stays, harmless
        os.unlink(handle.name)
    handle.close()


def _is_at(handle: IO[bytes], path: Path) -> bool:
    """Whether the open file ``handle`` is still the file at ``path`` (not removed or replaced since)."""
    try:
        at_path = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(handle.fileno())
    return (mine.st_dev, mine.st_ino) == (at_path.st_dev, at_path.st_ino)


def _file_name(label: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", label)
    if len(safe) > 120 or safe != label:
        safe = f"{safe[:100]}_{hashlib.sha256(label.encode()).hexdigest()[:8]}"
    return safe


def _try_file(handle: IO[bytes]) -> bool:
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True
