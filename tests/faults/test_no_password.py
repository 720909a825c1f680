"""No password is ever printed: the error paths that show a URL, with a URL that carries the test password.

tests/password_scan.py fails any test of the suite whose output shows TXSCOPE_TEST_PASSWORD; the tests here
go through the paths that print URLs and check the text themselves too, including the traceback as pytest
renders it (the driver's frames hold the password in their arguments, so the library must not chain them).
The last tests prove that the scan itself fails a test that prints the password.
"""

from __future__ import annotations

import fnmatch
import logging
from pathlib import Path

import pytest

from pytest_txscope import (
    BackendUnavailableError,
    ConfigurationError,
    DatabaseURL,
    Engine,
    MalformedURLError,
    Sandbox,
    TxScopeError,
    UnsafeDatabaseError,
)
from pytest_txscope.provision import provision

from ..backends import TXSCOPE_TEST_PASSWORD as PASSWORD
from ..backends import Backend, password_url

pytestmark = pytest.mark.backends("postgresql", "mysql")


def rendered(info: pytest.ExceptionInfo[BaseException]) -> str:
    """The error as pytest prints it in a report: message, chained errors, every frame with its arguments and
    (as with ``pytest -l``) its local variables; without this test's own frame, whose variables hold the URL."""
    info.traceback = info.traceback.filter(lambda entry: Path(entry.path) != Path(__file__))
    return str(info.getrepr(style="long", showlocals=True, chain=True))


def at(url: str, host: str, port: int, database: str) -> str:
    """``url`` (with its user and password) pointing at another server and database."""
    parsed = DatabaseURL.parse(url)
    return f"{parsed.scheme}://{parsed.user}:{parsed.password}@{host}:{port}/{database}"


@pytest.fixture
def secret(backend: Backend) -> str:
    """The backend's URL, with the test password in it."""
    return password_url(backend)


@pytest.fixture(params=["userinfo", "query"])
def any_secret(backend: Backend, request: pytest.FixtureRequest) -> str:
    """The backend's URL with the test password in the user info, or as the query's ``password`` option
    (which the drivers read too)."""
    url = password_url(backend)
    if request.param == "userinfo":
        return url
    parsed = DatabaseURL.parse(url)
    head, _, rest = url.partition(f":{parsed.password}@")
    return f"{head}@{rest}" + ("&" if "?" in rest else "?") + f"password={parsed.password}"


def test_reprs_and_strings_mask_the_password(any_secret: str) -> None:
    secret = any_secret
    url = DatabaseURL.parse(secret)
    engine = Engine.from_url(secret)
    with Sandbox(engine) as sandbox:
        session = sandbox.session()
        session.fetchscalar("SELECT 1")
        texts = [str(url), repr(url), url.render(), repr(engine), engine.target, repr(sandbox), repr(session)]
        texts += [repr(sandbox.connection()), repr(url.with_database("other_test"))]
    engine.dispose()
    assert PASSWORD in (url.password, url.options.get("password"))
    assert all(PASSWORD not in text for text in texts), texts
    assert f"{url.user}:***@" in str(url) or str(url).endswith("password=***")


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (("127.0.0.1", 1, "app_test"), "cannot connect to *:***@127.0.0.1:1/app_test: OperationalError: *"),
        (
            (None, None, "txscope_nosuchdb_test"),
            "cannot connect to *:***@*/txscope_nosuchdb_test: OperationalError: *",
        ),
    ],
    ids=["unreachable", "no-such-database"],
)
def test_connection_errors_do_not_chain_the_drivers_frames(
    secret: str, where: tuple[str | None, int | None, str], expected: str
) -> None:
    parsed = DatabaseURL.parse(secret)
    host, port, database = where
    engine = Engine.from_url(at(secret, host or parsed.host or "", port or parsed.port or 0, database))
    with pytest.raises(BackendUnavailableError) as info, engine.session():
        pass
    assert fnmatch.fnmatch(str(info.value), expected), str(info.value)
    assert PASSWORD not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__
    assert type(info.value.cause).__name__ == "OperationalError"  # the driver's error is still at hand
    assert PASSWORD not in rendered(info)


def test_connection_errors_mask_a_password_in_the_query(backend: Backend) -> None:
    # Issue 12: a password in the URL's query string was printed unmasked in BackendUnavailableError. (passwd=
    # and pwd= are masked the same way, tests/unit/test_urls_and_errors.py; not every driver takes them.)
    parsed = DatabaseURL.parse(password_url(backend))
    url = f"{parsed.scheme}://{parsed.user}@127.0.0.1:1/app_test?password={PASSWORD}"
    engine = Engine.from_url(url)
    with pytest.raises(BackendUnavailableError) as info, engine.session():
        pass
    assert fnmatch.fnmatch(str(info.value), "cannot connect to *@127.0.0.1:1/app_test?password=***: *")
    assert PASSWORD not in str(info.value)
    assert PASSWORD not in rendered(info)
    assert PASSWORD not in repr(engine) + engine.target


def test_options_the_driver_refuses_are_a_configuration_error(secret: str) -> None:
    engine = Engine.from_url(secret + "?no_such_option=1")
    # psycopg checks the option itself (ProgrammingError), or leaves it to libpq, whose refusal is an
    # OperationalError like a server that cannot be reached; PyMySQL refuses the keyword (TypeError).
    with pytest.raises((ConfigurationError, BackendUnavailableError)) as info, engine.session():
        pass
    shown = DatabaseURL.parse(secret + "?no_such_option=1")
    if isinstance(info.value, ConfigurationError):
        assert str(info.value).startswith(f"the driver refused the connection options of {shown}: ")
        assert str(info.value).endswith(
            "check the options in the URL's query string and the keyword arguments of Engine.from_url()"
        )
    assert "no_such_option" in str(info.value)
    assert PASSWORD not in rendered(info)


@pytest.mark.parametrize("text", ["{scheme}://u:{pw}@h:port/app_test", "{scheme}://u:{pw}/x@h/app_test"])
def test_malformed_urls_mask_the_password(backend: Backend, text: str) -> None:
    with pytest.raises(MalformedURLError) as info:
        Engine.from_url(text.format(scheme=backend.family, pw=PASSWORD))
    assert "u:***@h" in str(info.value)
    assert PASSWORD not in rendered(info)


def test_unsafe_database_error_masks_the_password(secret: str, tmp_path: Path) -> None:
    url = DatabaseURL.parse(secret).with_database("txscope_production")
    with pytest.raises(UnsafeDatabaseError) as info:
        provision(url, key="k", build=lambda engine: None, reuse=False, allow=(), lock_dir=tmp_path)
    assert f"({url})" in str(info.value)
    assert PASSWORD not in rendered(info)


def test_logs_do_not_show_the_password(secret: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, the drivers' included
    engine = Engine.from_url(secret)
    with engine as tx:
        tx.fetchscalar("SELECT 1")
    engine.dispose()
    broken = Engine.from_url(at(secret, "127.0.0.1", 1, "app_test"))
    with pytest.raises(TxScopeError), broken.session():
        pass
    logging.getLogger("txscope.test").exception("while connecting to %s", broken.url)
    assert PASSWORD not in caplog.text


def test_a_generated_project_never_prints_the_password(pytester: pytest.Pytester, any_secret: str) -> None:
    secret = any_secret
    """The header, reprs in assertion failures, local variables (-l), and a connection error in a test."""
    pytester.makepyfile(
        test_leaks="""
import pytest
from pytest_txscope import Engine

def test_engine_in_an_assertion(db_engine):
    url = db_engine.url
    assert db_engine is None, repr(db_engine)

def test_connection_error_in_the_test(db_engine):
    parsed = db_engine.url
    other = Engine.from_url(f"{parsed.scheme}://{parsed.user}:{parsed.password}@127.0.0.1:1/app_test")
    with other.session():
        pass

def test_session_in_locals(db_session):
    session = db_session
    assert session.fetchscalar("SELECT 1") == 2
"""
    )
    result = pytester.runpytest(f"--txscope-url={secret}", "-l", "-p", "no:randomly")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines([f"txscope: {DatabaseURL.parse(secret)} *"])
    assert PASSWORD not in result.stdout.str() + result.stderr.str()


# ------------------------------------------------------------------------------------ the scan itself
SCANNED_PROJECT = """
import logging
from tests.backends import TXSCOPE_TEST_PASSWORD as PW

def test_prints_it():
    print("connecting with", PW)

def test_logs_it():
    logging.getLogger("app").warning("password is %s", PW)

def test_fails_with_it():
    assert PW == "", PW

def test_clean():
    print("nothing to see")
"""


@pytest.fixture
def scan_project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A project whose tests print the password, run in a process of its own: in this one, its log records
    would reach this test's own log capture."""
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parents[2]))  # for `tests.password_scan`
    pytester.makepyfile(test_scanned=SCANNED_PROJECT)
    return pytester


@pytest.mark.backends("sqlite-file")  # the scan does not depend on the backend
def test_the_scan_fails_tests_that_print_the_password(
    scan_project: pytest.Pytester, backend: Backend
) -> None:
    scan_project.makeconftest('pytest_plugins = ["tests.password_scan"]\n')
    result = scan_project.runpytest_subprocess("-p", "no:randomly", "-rf")
    result.assert_outcomes(failed=3, passed=1)
    message = (
        "the test password (TXSCOPE_TEST_PASSWORD, masked here) appeared in {}: something printed a database "
        "password; print URLs with str(DatabaseURL) or mask_password(), never the raw text"
    )
    result.stdout.fnmatch_lines(
        [
            "*_ test_prints_it _*",
            message.format("the section 'Captured stdout call'"),
            "*_ test_logs_it _*",
            message.format("the section 'Captured log call'"),
            "*_ test_fails_with_it _*",
            message.format("the failure report"),
            "*AssertionError: ****",  # what the report showed, password masked
        ]
    )
    # The scan masked every place it found the password in: this run's own output does not show it either
    # (the pytester fixture of this suite checks that too).
    assert PASSWORD not in result.stdout.str()


@pytest.mark.backends("sqlite-file")
def test_the_scan_fails_a_pytester_run_that_prints_the_password(
    scan_project: pytest.Pytester, backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    # No scan in this project: the password reaches the run's output.
    with pytest.raises(AssertionError, match=r"pytester: the test password \(TXSCOPE_TEST_PASSWORD, masked"):
        scan_project.runpytest_subprocess("-p", "no:randomly", "-rA")
    # pytester echoes what the run printed into this test's own output: take it away before this test's
    # report is scanned too (which would rightly fail it).
    echoed = capsys.readouterr()
    assert PASSWORD in echoed.out
