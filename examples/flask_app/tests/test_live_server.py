"""The shop behind a real HTTP server running in a background thread, as a browser test or an API client sees it.

Flask's test client runs the app in the test's own thread. A live server does not: the server's thread handles
each request, and uses the app's engine, which the test's sandbox pins. Threads share the test's sandbox by
default (``txscope_threads = shared``): the server thread's work goes to the test's connection, statement by
statement, its transaction a savepoint above the test's, and is rolled back with the test like everything else.

The test's own ORM transaction (the factories flush into ``sa_session``) may stay open during a request: the
server's transaction goes on top of it and sees its rows. ``txscope_threads = strict`` (or the marker's
``threads="strict"``) refuses other threads instead.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, got_request_exception
from shop.models import Customer
from werkzeug.serving import make_server

from pytest_txscope import SandboxThreadError

EMAIL = "ada@example.com"  # the same unique email in several tests: a leaked row would make one of them fail

# The server is on the loopback interface: never go through a proxy named in the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    """The app behind werkzeug's WSGI server on a free local port, in a thread; yields the base URL."""
    # Answer any error in a view with a 500, as in production, so the test can record it with Flask's
    # got_request_exception signal instead of the server thread re-raising it.
    app.config["PROPAGATE_EXCEPTIONS"] = False
    server = make_server("127.0.0.1", 0, app)  # port 0: the system picks a free port (one per xdist worker)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="live-server", daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()  # returns once the serving loop has stopped, before the sandbox rolls back
        server.server_close()
        thread.join(10)


def request(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """Send a request; return the status and the decoded JSON body (the raw bytes if it is not JSON)."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 - live_server URLs
    try:
        with _opener.open(req, timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
        error.close()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def test_the_server_sees_rows_the_test_created(live_server, sa_session, customer_factory, order_factory):
    customer = customer_factory(email=EMAIL)
    order_factory(customer=customer, total=500)
    order_factory(customer=customer, total=700)
    customer_id = customer.id
    # The factories flushed these rows in an ORM transaction of this thread, still open: the server thread's
    # transaction goes above it on the one connection, and sees them.

    status, body = request("GET", f"{live_server}/customers/{customer_id}/orders")

    assert status == 200
    assert body["customer_id"] == customer_id
    assert [order["total"] for order in body["orders"]] == [500, 700]
    assert request("GET", f"{live_server}/stats") == (200, {"customers": 1, "orders": 2, "revenue": 1200})


def test_the_servers_commits_are_rolled_back_with_the_test(live_server, sa_session):
    # Nothing from another test is here, whichever ran first: the email is free again.
    assert request("GET", f"{live_server}/stats") == (200, {"customers": 0, "orders": 0, "revenue": 0})

    status, body = request("POST", f"{live_server}/customers", {"email": EMAIL})

    assert status == 201
    # The server thread committed into the test's sandbox (a savepoint release); the test's thread sees it.
    assert sa_session.get(Customer, body["id"]).email == EMAIL


def test_a_transaction_left_open_does_not_make_the_server_wait(live_server, sa_session, customer_factory):
    customer_factory(email=EMAIL)  # flushed, not committed: this thread's ORM transaction stays open

    assert request("GET", f"{live_server}/stats") == (200, {"customers": 1, "orders": 0, "revenue": 0})
    # The server's statements ran in its own savepoint above this thread's open transaction; the test's
    # session goes on where it was.
    assert sa_session.query(Customer).count() == 1


@pytest.mark.txscope(threads="strict")
def test_strict_mode_refuses_the_server_thread(live_server, app, db_engine):
    errors: list[Exception] = []

    def record(sender: Flask, exception: Exception, **extra: Any) -> None:
        errors.append(exception)

    with got_request_exception.connected_to(record, app):
        status, body = request("POST", f"{live_server}/customers", {"email": EMAIL})

    # The view's first use of the app's engine raised in the server thread; Flask answered with a 500.
    assert status == 500
    assert b"Internal Server Error" in body
    [error] = errors
    assert isinstance(error, SandboxThreadError)
    assert str(error) == (
        f"thread 'live-server' used {db_engine!r}, which the sandbox of thread "
        f"{threading.current_thread().name!r} pins to its connection; the sandbox is strict about threads "
        "(txscope_threads = strict), so it is refused; run the work in the test's thread, or let threads share "
        'the sandbox: mark the test @pytest.mark.txscope(threads="shared"), call db_sandbox.share() or '
        "db_sandbox.allow_thread(thread), or set txscope_threads = shared (the default)"
    )
