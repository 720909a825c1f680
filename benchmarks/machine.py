"""What a harness run was measured on: the machine, the drivers and the servers, for the results page."""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import os
import platform
import sqlite3
from pathlib import Path

from benchmarks import schema
from benchmarks.suites import SERVERS, Databases

__all__ = ["machine"]


def machine(dbs: Databases, backends: list[str]) -> dict[str, str]:
    """What the figures were measured on."""

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "absent"

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    libpq = ""
    with contextlib.suppress(ImportError):
        import psycopg

        v = psycopg.pq.version()
        libpq = f" (libpq {v // 10000}.{v % 100})"
    info = {
        "Date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "CPU": f"{cpu}, {os.cpu_count()} logical CPUs",
        "OS": platform.platform(),
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "Drivers": f"psycopg {version('psycopg')}{libpq}, PyMySQL {version('PyMySQL')}, "
        f"sqlite3 (SQLite {sqlite3.sqlite_version}), SQLAlchemy {version('SQLAlchemy')}",
        "Async": f"aiosqlite {version('aiosqlite')}, psycopg's AsyncConnection, aiomysql {version('aiomysql')}, "
        f"asyncpg {version('asyncpg')}, greenlet {version('greenlet')}, pytest-asyncio {version('pytest-asyncio')}",
        "pytest": f"pytest {version('pytest')}, pytest-xdist {version('pytest-xdist')}, "
        f"pytest-txscope {version('pytest-txscope')}",
    }
    servers = []
    settings = {
        "postgresql": ("SHOW fsync", "SHOW synchronous_commit"),
        "mysql": ("SELECT @@innodb_flush_log_at_trx_commit",),
    }
    for backend in (b for b in backends if b in SERVERS):
        try:
            conn = dbs.admin(backend)
            text = schema.server_version(conn, backend).split(" on ")[0].split(",")[0]
            cursor = conn.cursor()
            values = []
            for query in settings[backend]:
                cursor.execute(query)
                values.append(f"{query.split()[-1].lstrip('@')}={cursor.fetchone()[0]}")
            conn.close()
            servers.append(f"{text} ({', '.join(values)})")
        except Exception as exc:  # described, not fatal: the runs themselves fail loudly
            servers.append(f"{backend}: unreachable ({type(exc).__name__})")
    if servers:
        info["Servers"] = "; ".join(servers) + ", on the same machine (loopback)"
    if hasattr(os, "getloadavg"):
        info["Load average at the start"] = " / ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1/5/15 min)"
    return info
