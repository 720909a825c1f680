"""The benchmark harness writes the async strategies' suites (issue 14) as their docs describe: ``async def``
tests on a loop per test, the app's AsyncEngine pinned for txscope-aio, and --aio-driver naming the sandbox's
driver. Nothing here runs or times a suite."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import suites
from pytest_txscope import DatabaseURL

SERVER = DatabaseURL.parse("postgresql://app:secret@127.0.0.1:5432/shop_test")


def _ini(directory: Path) -> list[str]:
    return (directory / "pytest.ini").read_text().splitlines()


def test_txscope_aio_pins_the_apps_async_engine_on_a_loop_per_test(tmp_path: Path) -> None:
    strategy = suites.STRATEGIES["txscope-aio"]
    directory = suites.generate(tmp_path, strategy, SERVER, suites.Config(), 2)
    assert _ini(directory) == [
        "[pytest]",
        "txscope_url = postgresql://app:secret@127.0.0.1:5432/shop_test",
        "asyncio_mode = auto",
        "asyncio_default_fixture_loop_scope = function",
        "asyncio_default_test_loop_scope = function",
        "txscope_engines = benchmarks.suite_aio:engine",
    ]
    tests = (directory / "test_bench_000.py").read_text()
    assert "async def test_1(aio_app_session):\n    await work_aio(aio_app_session, 1)\n" in tests
    assert tests.startswith("from benchmarks.suite_aio import work_aio\n")
    assert strategy.baseline == "aio-none"


def test_aio_driver_names_the_sandboxs_driver_on_its_backend_only(tmp_path: Path) -> None:
    strategy = suites.STRATEGIES["txscope-aio"]
    directory = suites.generate(tmp_path / "pg", strategy, SERVER, suites.Config(), 1, aio_driver="asyncpg")
    assert "txscope_url = postgresql+asyncpg://app:secret@127.0.0.1:5432/shop_test" in _ini(directory)
    assert json.loads((directory / "bench.json").read_text())["aio_driver"] == "postgresql+asyncpg"
    mysql = DatabaseURL.parse("mysql://root@127.0.0.1:3306/shop_test")
    directory = suites.generate(tmp_path / "my", strategy, mysql, suites.Config(), 1, aio_driver="asyncpg")
    assert "txscope_url = mysql://root@127.0.0.1:3306/shop_test" in _ini(directory)
    assert "aio_driver" not in json.loads((directory / "bench.json").read_text())


def test_sync_strategies_keep_their_plain_tests(tmp_path: Path) -> None:
    directory = suites.generate(tmp_path, suites.STRATEGIES["txscope"], SERVER, suites.Config(), 1)
    assert not any(line.startswith("asyncio_") for line in _ini(directory))
    assert (
        "def test_0(db_session):\n    work_tx(db_session, 0)\n"
        in (directory / "test_bench_000.py").read_text()
    )
