"""Provisioning test databases, for real on SQLite, PostgreSQL and MySQL/MariaDB.

Every database these tests create is named ``txscope_prov_test_<random>...`` and dropped afterwards.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_txscope import BackendUnavailableError, ConfigurationError, DatabaseURL, Engine
from pytest_txscope.dialects import dialect_for_backend
from pytest_txscope.provision import (
    Provisioned,
    UnsafeDatabaseError,
    check_safe,
    drop,
    drop_templates,
    looks_like_test_database,
    provision,
    schema_key,
    worker_url,
)

from ..backends import ENV, unavailable

KEY_A = schema_key(["CREATE TABLE items (a)"])
KEY_B = schema_key(["CREATE TABLE items (b)"])
SCHEMA = "CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(50)); INSERT INTO items VALUES (1, 'seed')"


class Builder:
    """A build function that counts its calls (from any thread) and can be told to fail or to be slow."""

    def __init__(self, *, fail: bool = False, delay: float = 0.0) -> None:
        self.calls = 0
        self.fail = fail
        self.delay = delay
        self._lock = threading.Lock()

    def __call__(self, engine: Engine) -> None:
        with self._lock:
            self.calls += 1
        time.sleep(self.delay)
        engine.executescript(SCHEMA)
        if self.fail:
            raise RuntimeError("seed data is broken")


# ------------------------------------------------------------------------------------------- helpers
def _connect(url: DatabaseURL) -> Any:
    return dialect_for_backend(url.backend).connect_from_url(url, {})()


def _admin(url: DatabaseURL) -> Any:
    return _connect(url.with_database("postgres" if url.backend == "postgresql" else ""))


def _query(url: DatabaseURL, sql: str, admin: bool = False) -> list[tuple[Any, ...]]:
    conn = _admin(url) if admin else _connect(url)
    try:
        cur = conn.cursor()
        cur.execute(sql)
        rows = [tuple(r) for r in cur.fetchall()] if cur.description else []
        cur.close()
        return rows
    finally:
        conn.close()


def _databases(url: DatabaseURL, prefix: str) -> set[str]:
    """The databases on ``url``'s server whose names start with ``prefix`` (SQLite: the files)."""
    if url.backend == "sqlite":
        folder = Path(url.database).parent
        return {p.name for p in folder.iterdir() if p.name.startswith(prefix)}
    sql = "SELECT datname FROM pg_database" if url.backend == "postgresql" else "SHOW DATABASES"
    return {r[0] for r in _query(url, sql, admin=True) if r[0].startswith(prefix)}


def _drop_all(url: DatabaseURL, prefix: str) -> None:
    assert prefix.startswith("txscope_prov_test")
    if url.backend == "sqlite":
        return  # tmp_path goes away by itself
    conn = _admin(url)
    try:
        for name in _databases(url, prefix):
            if url.backend == "postgresql":
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
                )
                conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            else:
                conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


def _names(url: DatabaseURL) -> list[str]:
    return [r[0] for r in _query(url, "SELECT name FROM items ORDER BY id")]


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def family(request: pytest.FixtureRequest) -> str:
    unavailable(request.param)
    return str(request.param)


@pytest.fixture
def name() -> str:
    return f"txscope_prov_test_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def target(family: str, name: str, tmp_path: Path) -> Iterator[DatabaseURL]:
    """A database URL on ``family`` that nothing exists for yet; everything named after it is dropped."""
    if family == "sqlite":
        url = DatabaseURL.parse(f"sqlite:///{tmp_path / 'data' / name}.db")
    else:
        url = DatabaseURL.parse(os.environ[ENV[family]]).with_database(name)
    yield url
    _drop_all(url, name)


@pytest.fixture
def lock_dir(tmp_path: Path) -> Path:
    return tmp_path / "locks"


@pytest.fixture
def pg(name: str) -> Iterator[DatabaseURL]:
    unavailable("postgresql")
    url = DatabaseURL.parse(os.environ[ENV["postgresql"]]).with_database(name)
    yield url
    _drop_all(url, name)


def _exists(url: DatabaseURL) -> bool:
    if url.backend == "sqlite":
        return Path(url.database).exists()
    return url.database in _databases(url, url.database)


# ------------------------------------------------------------------------------------- naming rules
@pytest.mark.parametrize(
    ("db", "expected"),
    [
        ("txscope_test", True),
        ("test", True),
        ("myapp-tests", True),
        ("Test01", True),
        ("app_testing", True),
        ("testdb", True),
        ("app2test", True),
        ("APP.TEST", True),
        ("production", False),
        ("app", False),
        ("contest", False),
        ("latest", False),
        ("attest_db", False),
        ("", False),
    ],
)
def test_name_rule(db: str, expected: bool) -> None:
    assert looks_like_test_database(db) is expected


def test_check_safe_refuses_with_the_exact_message() -> None:
    url = DatabaseURL.parse("postgresql://u:secret@h/myapp")
    with pytest.raises(UnsafeDatabaseError) as info:
        check_safe(url, "drop", ())
    assert str(info.value) == (
        "refusing to drop database 'myapp' (postgresql://u:***@h/myapp): its name does not look like a test "
        "database (no 'test' word part); rename it (e.g. myapp_test) or allow it with "
        "txscope_allow_databases = myapp"
    )
    assert isinstance(info.value, ConfigurationError)
    assert isinstance(info.value, ValueError)
    assert (info.value.name, info.value.action) == ("myapp", "drop")
    check_safe(url, "drop", {"myapp"})
    check_safe(url.with_database("myapp_test"), "truncate", ())


def test_check_safe_looks_at_the_sqlite_file_name_only() -> None:
    unsafe = DatabaseURL.parse("sqlite:////tmp/tests/app.db")  # the folder's name does not count
    with pytest.raises(
        UnsafeDatabaseError, match=r"refusing to clone database 'app' \(sqlite:////tmp/tests/app.db\)"
    ):
        check_safe(unsafe, "clone", ())
    with pytest.raises(UnsafeDatabaseError, match=r"\(e\.g\. app_test\.db\)"):
        check_safe(unsafe, "create", ())
    check_safe(unsafe, "create", ["app"])
    check_safe(DatabaseURL.parse("sqlite:///data/app_test.sqlite3"), "drop", ())


@pytest.mark.parametrize(
    ("url", "worker", "expected"),
    [
        ("postgresql://u:pw@h/txscope_test", "gw0", "postgresql://u:pw@h/txscope_test_gw0"),
        ("postgresql://u@h/txscope_test", None, "postgresql://u@h/txscope_test"),
        ("postgresql://u@h/txscope_test", "master", "postgresql://u@h/txscope_test"),
        ("mysql://root@h:3306/app_test", "gw12", "mysql://root@h:3306/app_test_gw12"),
        ("sqlite:///data/app_test.db", "gw1", "sqlite:///data/app_test_gw1.db"),
        ("sqlite:////abs/dir/tests.sqlite3", "gw0", "sqlite:////abs/dir/tests_gw0.sqlite3"),
        ("sqlite:///testdb", "gw2", "sqlite:///testdb_gw2"),
        ("sqlite:///:memory:", "gw0", "sqlite:///:memory:"),
    ],
)
def test_worker_url(url: str, worker: str | None, expected: str) -> None:
    parsed = DatabaseURL.parse(url)
    result = worker_url(parsed, worker)
    assert result == DatabaseURL.parse(expected)
    assert result.password == parsed.password


def test_worker_url_keeps_long_names_within_server_limits_and_distinct() -> None:
    url = DatabaseURL.parse("postgresql://u@h/" + "app_test_" + "x" * 60)
    names = {worker_url(url, f"gw{i}").database for i in range(12)}
    assert len(names) == 12
    assert all(len(n.encode()) <= 63 and n.startswith("app_test_") for n in names)
    mysql = DatabaseURL.parse("mysql://u@h/" + "é" * 62 + "_test")
    assert all(len(worker_url(mysql, f"gw{i}").database) <= 64 for i in range(3))


def test_schema_key() -> None:
    assert schema_key(["a", b"b"]) == schema_key([b"a", "b"])
    assert len(KEY_A) == 12
    assert int(KEY_A, 16) >= 0
    assert KEY_A != KEY_B
    assert schema_key(["ab", "c"]) != schema_key(["a", "bc"])


# ------------------------------------------------------------------------------------- provisioning
def test_provision_creates_and_builds(target: DatabaseURL, lock_dir: Path) -> None:
    build = Builder()
    result = provision(target, key=KEY_A, build=build, reuse=True, allow=(), lock_dir=lock_dir)
    assert result == Provisioned(target, created=True, reused=False)
    assert build.calls == 1
    assert _names(target) == ["seed"]


def test_reuse_keeps_a_database_built_with_the_same_key(target: DatabaseURL, lock_dir: Path) -> None:
    build = Builder()
    provision(target, key=KEY_A, build=build, reuse=True, allow=(), lock_dir=lock_dir)
    _query(target, "INSERT INTO items VALUES (2, 'added')")
    again = provision(target, key=KEY_A, build=build, reuse=True, allow=(), lock_dir=lock_dir)
    assert again == Provisioned(target, created=False, reused=True)
    assert build.calls == 1
    assert _names(target) == ["seed", "added"]


@pytest.mark.parametrize(("key", "reuse"), [(KEY_B, True), (KEY_A, False)], ids=["other-key", "no-reuse"])
def test_other_key_or_no_reuse_rebuilds(target: DatabaseURL, lock_dir: Path, key: str, reuse: bool) -> None:
    build = Builder()
    provision(target, key=KEY_A, build=build, reuse=True, allow=(), lock_dir=lock_dir)
    _query(target, "INSERT INTO items VALUES (2, 'added')")
    again = provision(target, key=key, build=build, reuse=reuse, allow=(), lock_dir=lock_dir)
    assert again == Provisioned(target, created=True, reused=False)
    assert _names(target) == ["seed"]
    # the rebuilt database records the key it was built with
    assert provision(target, key=key, build=build, reuse=True, allow=(), lock_dir=lock_dir).reused


def test_build_failure_leaves_nothing_behind(target: DatabaseURL, lock_dir: Path, name: str) -> None:
    with pytest.raises(RuntimeError, match="seed data is broken"):
        provision(target, key=KEY_A, build=Builder(fail=True), reuse=True, allow=(), lock_dir=lock_dir)
    assert not _exists(target)
    assert _databases(target, name) == set()  # no template, key file, -journal ... either
    # and a later run builds it properly
    assert provision(target, key=KEY_A, build=Builder(), reuse=True, allow=(), lock_dir=lock_dir).created


def test_existing_database_without_a_key_is_rebuilt(target: DatabaseURL, lock_dir: Path) -> None:
    # e.g. the test database a user made by hand, or one a killed run left half-built
    if target.backend == "sqlite":
        Path(target.database).parent.mkdir()
    else:
        _query(target, f"CREATE DATABASE {target.database}", admin=True)
    engine = Engine.from_url(target)
    engine.executescript("CREATE TABLE leftover (id INTEGER)")
    engine.dispose()
    result = provision(target, key=KEY_A, build=Builder(), reuse=True, allow=(), lock_dir=lock_dir)
    assert result == Provisioned(target, created=True, reused=False)
    assert _names(target) == ["seed"]
    with pytest.raises(Exception, match="leftover"):
        _query(target, "SELECT * FROM leftover")


def test_drop_removes_the_database(target: DatabaseURL, lock_dir: Path, name: str) -> None:
    provision(target, key=KEY_A, build=Builder(), reuse=True, allow=(), lock_dir=lock_dir)
    engine = Engine.from_url(target)  # an open connection does not stop the drop
    with engine.session() as session:
        session.execute("SELECT 1").close()
    drop(target, allow=())
    assert not _exists(target)
    if target.backend == "sqlite":
        assert _databases(target, name) == set()  # the key file went with it
    engine.dispose()
    drop(target, allow=())  # dropping what is gone is fine


def test_unsafe_database_is_refused_before_anything_happens(family: str, tmp_path: Path) -> None:
    if family == "sqlite":
        url = DatabaseURL.parse(f"sqlite:///{tmp_path / 'app.db'}")
    else:
        url = DatabaseURL.parse(os.environ[ENV[family]]).with_database(f"prov_unsafe_{uuid.uuid4().hex[:8]}")
    build = Builder()
    with pytest.raises(UnsafeDatabaseError, match="refusing to create database"):
        provision(url, key=KEY_A, build=build, reuse=True, allow=(), lock_dir=tmp_path / "locks")
    assert build.calls == 0
    assert not _exists(url)
    with pytest.raises(UnsafeDatabaseError, match="refusing to drop database"):
        drop(url, allow=())


def test_allow_list_permits_other_names(tmp_path: Path) -> None:
    url = DatabaseURL.parse(f"sqlite:///{tmp_path / 'app.db'}")
    provision(url, key=KEY_A, build=Builder(), reuse=True, allow={"app"}, lock_dir=tmp_path)
    assert _names(url) == ["seed"]
    drop(url, allow={"app"})
    assert not (tmp_path / "app.db").exists()


def test_memory_database_is_left_to_the_plugin(tmp_path: Path) -> None:
    url = DatabaseURL.parse("sqlite:///:memory:")
    build = Builder()
    assert provision(url, key=KEY_A, build=build, reuse=True, allow=(), lock_dir=tmp_path) == Provisioned(
        url, created=False, reused=False
    )
    assert build.calls == 0
    drop(url, allow=())
    drop_templates(url, allow=())


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
def test_unreachable_server_names_the_target_without_password(scheme: str, tmp_path: Path) -> None:
    url = DatabaseURL.parse(f"{scheme}://someone:sekrit@127.0.0.1:1/app_test")
    with pytest.raises(BackendUnavailableError) as info:
        provision(url, key=KEY_A, build=Builder(), reuse=True, allow=(), lock_dir=tmp_path)
    assert "sekrit" not in str(info.value)
    assert "someone:***@127.0.0.1:1" in str(info.value)


# ---------------------------------------------------------------------------- PostgreSQL templates
def _templates(url: DatabaseURL) -> set[str]:
    return _databases(url, f"{url.database}_tpl_")


def test_postgresql_workers_share_one_template_built_once(pg: DatabaseURL, tmp_path: Path) -> None:
    build = Builder(delay=0.3)  # slow enough that both workers are waiting for the template together
    workers = [worker_url(pg, "gw0"), worker_url(pg, "gw1")]
    results: dict[str, Provisioned] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run(url: DatabaseURL) -> None:
        try:
            barrier.wait()
            results[url.database] = provision(
                url, key=KEY_A, build=build, reuse=False, allow=(), lock_dir=tmp_path / "locks"
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(url,)) for url in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert build.calls == 1
    assert {r.url.database for r in results.values() if r.created} == {
        f"{pg.database}_gw0",
        f"{pg.database}_gw1",
    }
    for url in workers:
        assert _names(url) == ["seed"]
    assert _templates(pg) == {f"{pg.database}_tpl_{KEY_A}"}
    assert not _exists(pg)  # the base database itself is not needed

    drop_templates(pg, allow=())
    assert _templates(pg) == set()
    assert _names(workers[0]) == ["seed"]  # worker databases are independent copies


def test_postgresql_one_database_without_a_template_is_built_in_place(
    pg: DatabaseURL, tmp_path: Path
) -> None:
    build = Builder()
    result = provision(
        pg, key=KEY_A, build=build, reuse=False, allow=(), lock_dir=tmp_path, via_template=False
    )
    assert result.created
    assert build.calls == 1
    assert _names(pg) == ["seed"]
    assert _templates(pg) == set()  # nothing to clone: one CREATE DATABASE, and one DROP at the end


def test_postgresql_stale_template_is_dropped(pg: DatabaseURL, tmp_path: Path) -> None:
    url = worker_url(pg, "gw0")
    provision(url, key=KEY_A, build=Builder(), reuse=True, allow=(), lock_dir=tmp_path)
    assert _templates(pg) == {f"{pg.database}_tpl_{KEY_A}"}
    _query(pg, f"CREATE DATABASE {pg.database}_tpl_0123456789ab", admin=True)  # half-built by a killed run
    build = Builder()
    provision(url, key=KEY_B, build=build, reuse=True, allow=(), lock_dir=tmp_path)
    assert build.calls == 1
    assert _templates(pg) == {f"{pg.database}_tpl_{KEY_B}"}
    # a template with the right key is reused: another worker clones it without building
    other = worker_url(pg, "gw1")
    assert provision(other, key=KEY_B, build=build, reuse=True, allow=(), lock_dir=tmp_path).created
    assert build.calls == 1
    assert _names(other) == ["seed"]


def test_postgresql_clone_works_when_build_leaves_a_connection_open(pg: DatabaseURL, tmp_path: Path) -> None:
    leaked: list[Any] = []

    def build(engine: Engine) -> None:
        engine.executescript(SCHEMA)
        assert engine.url is not None
        leaked.append(_connect(engine.url))

    try:
        assert provision(pg, key=KEY_A, build=build, reuse=True, allow=(), lock_dir=tmp_path).created
    finally:
        for conn in leaked:
            with contextlib.suppress(Exception):  # terminated by provision, as intended
                conn.close()
    assert _names(pg) == ["seed"]


# ------------------------------------------------------------------------------ MySQL without comments
def test_mysql_without_database_comments_records_the_key_in_a_file(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unavailable("mysql")
    from pytest_txscope import provision as module

    monkeypatch.setattr(module._Server, "_schema_comments", lambda self: False)  # as on MySQL proper
    url = DatabaseURL.parse(os.environ[ENV["mysql"]]).with_database(name)
    try:
        build = Builder()
        provision(url, key=KEY_A, build=build, reuse=True, allow=(), lock_dir=tmp_path)
        assert [p.name for p in tmp_path.glob("*.key")] == [f"{url.host}_{url.port}_{name}.key"]
        _query(url, "INSERT INTO items VALUES (2, 'added')")
        assert provision(url, key=KEY_A, build=build, reuse=True, allow=(), lock_dir=tmp_path).reused
        assert _names(url) == ["seed", "added"]
        assert provision(url, key=KEY_B, build=build, reuse=True, allow=(), lock_dir=tmp_path).created
        assert _names(url) == ["seed"]
    finally:
        _drop_all(url, name)
