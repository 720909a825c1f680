"""Two runs against one database server (two terminals, two CI jobs): neither builds over nor drops the other's
database. The second waits for the first, then proceeds, or stops with one clear error naming the holder."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..backends import Backend, sibling_url

pytestmark = pytest.mark.backends(
    "sqlite-file", "postgresql", "mysql", exact=True
)  # the lock is the server's, not the driver's

HOLDING = """
import os, pathlib, time

def test_holds_the_database(db_session):
    pathlib.Path(os.environ["HOLD_STARTED"]).write_text("started")
    deadline = time.monotonic() + 120
    while not pathlib.Path(os.environ["HOLD_RELEASE"]).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    # Another run tried to build this database meanwhile: it is still here, as this run built it.
    assert db_session.fetchall("SELECT name FROM users") == [("seed",)]
"""
OTHER = """
def test_uses_the_database(db_session):
    assert db_session.fetchall("SELECT name FROM users") == [("seed",)]
"""


def _wait_for(path: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            output = process.communicate()[0].decode(errors="replace")
            pytest.fail(f"the first run did not reach its test:\n{output}")
        time.sleep(0.05)


def _start(pytester: pytest.Pytester, *args: str) -> subprocess.Popen[bytes]:
    return pytester.popen(
        [sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def test_a_second_run_waits_for_the_first_and_never_drops_its_database(
    pytester: pytest.Pytester, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend.family == "sqlite":
        url = f"sqlite:///{pytester.path / 'shared_test.db'}"
    else:
        url = sibling_url(backend, "shared").partition("?")[0]
    pytester.makefile(
        ".sql", schema="CREATE TABLE users (name VARCHAR(20));\nINSERT INTO users VALUES ('seed');"
    )
    pytester.makefile(".ini", pytest=f"[pytest]\ntxscope_schema = schema.sql\ntxscope_url = {url}\n")
    pytester.makepyfile(test_hold=HOLDING, test_other=OTHER)
    started, release = pytester.path / "started", pytester.path / "release"
    monkeypatch.setenv("HOLD_STARTED", str(started))
    monkeypatch.setenv("HOLD_RELEASE", str(release))
    with _start(pytester, "test_hold.py") as first:  # closes its pipe and waits for it, whatever happens
        try:
            _wait_for(started, first)
            _second_run_stops(pytester, backend, url, first.pid)
            # A run that may wait longer proceeds once the first one has ended.
            with _start(pytester, "-o", "txscope_lock_timeout=120", "test_other.py") as waiting:
                release.write_text("go")
                assert first.wait(120) == 0, first.communicate()[0].decode(errors="replace")
                output = waiting.communicate(timeout=120)[0].decode(errors="replace")
            assert waiting.returncode == 0, output
            assert "1 passed" in output
        finally:
            release.write_text("go")


def _second_run_stops(pytester: pytest.Pytester, backend: Backend, url: str, pid: int) -> None:
    """A run that may wait half a second stops, naming the first run, and builds nothing."""
    refused = pytester.runpytest_subprocess(
        "-p", "no:randomly", "-o", "txscope_lock_timeout=0.5", "test_other.py"
    )
    refused.assert_outcomes(errors=1)
    holder = "server connection * from *" if backend.family == "mysql" else f"*pytest-txscope pid {pid} on *"
    database = "shared_test.db" if backend.family == "sqlite" else url.rpartition("/")[2]
    refused.stdout.fnmatch_lines(
        [
            f"*pytest_txscope.errors.DatabaseInUseError: test database '*{database}' (*) is in use by another "
            f"run, held by {holder}; waited 0.5 s (txscope_lock_timeout). Wait for that run to end, raise "
            "txscope_lock_timeout, or give this run a database of its own (another name in the URL): two "
            "runs never build or drop each other's databases",
        ]
    )
