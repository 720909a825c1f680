"""The Django strategies' pytest plugin and Django app (``-p benchmarks.suite_django``).

Django is configured on the suite's database (``DATABASES["default"]`` from the harness URL: SQLite file or
``:memory:``, PostgreSQL through psycopg or psycopg2, MySQL/MariaDB through mysqlclient), with this package
as its one installed app (the models of `benchmarks.suite_django.models`, on the existing tables).

The `db` fixture emulates pytest-django's ``db`` as pytest-django 4.x writes it (``_django_db_helper``): it
takes ``request`` and reads the test's ``django_db`` marker and fixture names, unblocks database access, and
per test makes a subclass of ``django.test.TestCase`` whose class set-up is ``SimpleTestCase``'s only, then
runs the instance's ``_pre_setup()`` (``TestCase._fixture_setup``: ``_enter_atomics()``, one
``transaction.atomic()`` per database) and after the test ``_post_teardown()`` (the deferred constraint check,
then ``_rollback_atomics()``: ``set_rollback(True)`` and the atomic blocks' exits). What pytest-django does once
per session (creating the test database) is outside the timing; its other per-test autouse fixtures (mail
outbox, urlconf, template checks) are not emulated.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks import schema
from benchmarks.suite_plugin import FAMILY, MEMORY, ROWS, TABLES, URL, rows_for

_ENGINES = {"sqlite": "sqlite3", "postgresql": "postgresql", "mysql": "mysql"}


def database_settings() -> dict[str, Any]:
    """Django's ``DATABASES["default"]`` for the suite's URL."""
    settings: dict[str, Any] = {"ENGINE": f"django.db.backends.{_ENGINES[FAMILY]}", "NAME": URL.database}
    if FAMILY != "sqlite":
        settings.update(USER=URL.user or "", PASSWORD=URL.password or "", HOST=URL.host or "")
        settings["PORT"] = str(URL.port or "")
    return settings


def pytest_configure(config: pytest.Config) -> None:
    """Configure and set up Django once, as pytest-django does at start-up (outside the timing)."""
    import django
    from django.conf import settings
    from django.test.utils import setup_test_environment

    settings.configure(
        DATABASES={"default": database_settings()},
        INSTALLED_APPS=["benchmarks.suite_django"],
        USE_TZ=True,
    )
    django.setup()
    setup_test_environment()
    _BLOCKER.block()


# ------------------------------------------------------------------------------------------ the work
def work_django(_db: Any, i: int) -> None:
    """Create the rows through the ORM in one atomic block, and read them back with an ORM join."""
    from django.db import transaction

    from benchmarks.suite_django.models import MODELS, join

    with transaction.atomic():
        for table, params in rows_for(i):
            MODELS[table].objects.create(**params)
    assert len(join(schema.BASE_ID + 16 * i)) == 6


# ------------------------------------------------------------------------------------------ fixtures
class _Blocker:
    """pytest-django's database blocker: connecting is refused outside the fixtures that unblock it."""

    def __init__(self) -> None:
        self._real: Any = None

    def block(self) -> None:
        from django.db.backends.base.base import BaseDatabaseWrapper

        self._real = BaseDatabaseWrapper.ensure_connection
        BaseDatabaseWrapper.ensure_connection = _refuse  # type: ignore[method-assign]

    @contextlib.contextmanager
    def unblock(self) -> Iterator[None]:
        from django.db.backends.base.base import BaseDatabaseWrapper

        blocked = BaseDatabaseWrapper.ensure_connection
        BaseDatabaseWrapper.ensure_connection = self._real  # type: ignore[method-assign]
        try:
            yield
        finally:
            BaseDatabaseWrapper.ensure_connection = blocked  # type: ignore[method-assign]


def _refuse(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("Database access not allowed: use the db fixture")


_BLOCKER = _Blocker()


@pytest.fixture(scope="session")
def django_db_blocker() -> _Blocker:
    """pytest-django's blocker (session-scoped)."""
    return _BLOCKER


@pytest.fixture(scope="session")
def django_db_setup(django_db_blocker: _Blocker) -> None:
    """The database exists (the harness built it); in-memory SQLite gets its tables on Django's connection."""
    if not MEMORY:
        return
    from django.db import connection

    statements = schema.create_statements(FAMILY, TABLES) + schema.seed_statements(FAMILY, TABLES, ROWS)
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


@pytest.fixture(scope="session")
def django_plain(django_db_setup: None, django_db_blocker: _Blocker) -> Iterator[None]:
    """Django without pytest-django (the baseline): database access open for the whole run, real commits."""
    with django_db_blocker.unblock():
        yield


@pytest.fixture
def _django_db_helper(
    request: pytest.FixtureRequest, django_db_setup: None, django_db_blocker: _Blocker
) -> Iterator[None]:
    """pytest-django's per-test helper behind ``db``, for a test that asks for ``db`` alone."""
    import django.test

    # pytest-django reads these to choose TestCase or TransactionTestCase and their options: the same lookups.
    request.node.get_closest_marker("django_db")
    transactional = "transactional_db" in request.fixturenames or "live_server" in request.fixturenames
    reset = "django_db_reset_sequences" in request.fixturenames
    serialized = "django_db_serialized_rollback" in request.fixturenames
    assert not transactional  # the suite asks for db alone: TestCase
    with django_db_blocker.unblock():

        class PytestDjangoTestCase(django.test.TestCase):
            reset_sequences = reset
            serialized_rollback = serialized

            # As pytest-django: TestCase's class-level atomic blocks are skipped, SimpleTestCase's set-up runs.
            @classmethod
            def setUpClass(cls) -> None:
                super(django.test.TestCase, cls).setUpClass()

            @classmethod
            def tearDownClass(cls) -> None:
                super(django.test.TestCase, cls).tearDownClass()

        PytestDjangoTestCase.setUpClass()
        case = PytestDjangoTestCase(methodName="__init__")
        case._pre_setup()
        yield
        case._post_teardown()
        PytestDjangoTestCase.tearDownClass()
        PytestDjangoTestCase.doClassCleanups()


@pytest.fixture
def db(_django_db_helper: None) -> None:
    """pytest-django's ``db``: the test runs inside atomic blocks rolled back after it."""
