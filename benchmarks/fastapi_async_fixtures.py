"""The async FastAPI example suite's two setups without pytest-txscope: what a team writes by hand.

`copy_example` copies ``examples/fastapi_async`` and, for a hand-written way, swaps its ``pytest.ini`` and
``tests/conftest.py`` for the ones below; the test files stay the same. The tables are dropped and created
once per run, and the app's engine comes from ``$APP_DATABASE_URL``.

- ``none``: no isolation at all. The tests commit for real and nothing is cleaned, so the tests that count
  rows, or sign up an email another test signed up, fail: the cost of doing nothing, for comparison.
- ``delete``: what a team writes first: the app as it is, and every table's rows deleted after each test (in
  reverse dependency order). The tests pass; it is the baseline of the sync suite (`benchmarks.fastapi_suite`).
- ``recipe``: SQLAlchemy's "join an external transaction" recipe for asyncio. Each test opens an
  ``AsyncConnection`` and begins a transaction on it; the request's session is an
  ``AsyncSession(bind=connection, join_transaction_mode="create_savepoint")`` put in ``get_db``'s place through
  ``app.dependency_overrides``, and the transaction is rolled back after the test. What the override cannot
  reach (the tests' own reads, the ``user`` fixture, and ``/summary``'s two sessions, all made by
  ``SessionLocal``) is bound to the same connection by reconfiguring the app's ``async_sessionmaker``.

Each test gets an event loop of its own (pytest-asyncio's function scope), and a pooled asyncio connection must
not be used from another loop than the one it was made on: both ways dispose of the engine's pool after each
test, as SQLAlchemy's documentation advises for this setup.
"""

from __future__ import annotations

import shutil
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fastapi_async"

HAND_INI = """\
[pytest]
pythonpath = .
testpaths = tests
addopts = -ra --strict-markers --strict-config -p no:txscope
filterwarnings = error
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""

_COMMON = '''\
import asyncio

import httpx2
import pytest
from app.api.deps import get_db
from app.core.db import SessionLocal, engine
from app.core.security import hash_password
from app.main import app
from app.models import Base, User
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession


@pytest.fixture(scope="session", autouse=True)
def tables():
    async def rebuild():
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.drop_all)
            await connection.run_sync(Base.metadata.create_all)
        await engine.dispose()  # no pooled connection bound to this loop

    asyncio.run(rebuild())


@pytest.fixture(autouse=True)
async def fresh_pool():
    yield
    await engine.dispose()  # each test has its own loop: the next one must not reuse this one's connections


@pytest.fixture
def db_sandbox():
    """The name the tests ask for when they only need the database."""


@pytest.fixture
async def user(db_sandbox):
    async with SessionLocal() as session:
        user = User(email="ada@example.com", hashed_password=hash_password("correct horse"))
        session.add(user)
        await session.commit()
    return user


@pytest.fixture
async def auth(client, user):
    token = (await client.post("/login", json={"email": user.email, "password": "correct horse"})).json()
    return {"Authorization": f"Bearer {token['access_token']}"}
'''

_CLIENT = """

@pytest.fixture
async def client(db_sandbox):
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client
"""

NONE_CONFTEST = (
    '"""Hand-written fixtures without isolation: the tables created once, the app as it is, nothing cleaned."""\n\n'
    + _COMMON
    + _CLIENT
)

DELETE_CONFTEST = (
    '"""Hand-written fixtures: the tables created once, the app as it is, every row deleted after each test."""\n\n'
    + _COMMON
    + _CLIENT
    + """

@pytest.fixture(autouse=True)
async def delete_rows(fresh_pool):
    yield
    async with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            await connection.execute(table.delete())
"""
)

RECIPE_CONFTEST = (
    '"""SQLAlchemy\'s async "join an external transaction" recipe: one AsyncConnection per test, rolled back."""\n\n'
    + _COMMON.replace(
        '@pytest.fixture\ndef db_sandbox():\n    """The name the tests ask for when they only need the database."""\n',
        '''@pytest.fixture
async def db_sandbox():
    """The test's connection, in a transaction rolled back after the test; the app's sessions join it."""
    async with engine.connect() as connection:
        transaction = await connection.begin()
        SessionLocal.configure(bind=connection, join_transaction_mode="create_savepoint")
        try:
            yield connection
        finally:
            SessionLocal.configure(bind=engine, join_transaction_mode="conservative_savepoint")
            await transaction.rollback()
''',
    )
    + """

if engine.dialect.name == "sqlite":
    # SQLAlchemy's documented fix for SQLite's driver, needed by this recipe: the driver's own transaction
    # handling would let a savepoint's RELEASE commit for real. The engine emits BEGIN itself.
    @event.listens_for(engine.sync_engine, "connect")
    def _no_driver_transactions(dbapi_connection, connection_record):
        dbapi_connection.isolation_level = None

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection):
        connection.exec_driver_sql("BEGIN")


@pytest.fixture
async def client(db_sandbox):
    async def joined_session():
        session = AsyncSession(
            bind=db_sandbox, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        async with session:
            try:
                yield session
            except BaseException:
                await session.rollback()
                raise
            await session.commit()

    app.dependency_overrides[get_db] = joined_session
    transport = httpx2.ASGITransport(app=app)
    try:
        async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client
    finally:
        app.dependency_overrides.clear()
"""
)


def copy_example(directory: Path, way: str) -> Path:
    """A copy of the example in ``directory`` (emptied first), set up for ``way``: txscope, delete, none or
    recipe."""
    shutil.rmtree(directory, ignore_errors=True)
    shutil.copytree(EXAMPLE, directory, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", "*.db"))
    if way != "txscope":
        (directory / "pytest.ini").write_text(HAND_INI)
        conftest = {"none": NONE_CONFTEST, "delete": DELETE_CONFTEST, "recipe": RECIPE_CONFTEST}[way]
        (directory / "tests" / "conftest.py").write_text(conftest)
    return directory
