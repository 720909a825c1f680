"""Warnings: what pytest-txscope tolerates but tells about."""

from __future__ import annotations

__all__ = ["ConnectedBeforeSandboxWarning", "SandboxIsolationWarning", "TransactionLeftOpenWarning"]


class TransactionLeftOpenWarning(UserWarning):
    """A test ended with a transaction still open: one its code began and never ended.

    It was rolled back (with the sandbox, if it was in one), so nothing is left behind and later tests do not
    join it; but outside a test its work would never be committed. A warning, not an error: turn it into one with
    ``filterwarnings = error::pytest_txscope.TransactionLeftOpenWarning``.
    """

    def __init__(self, transactions: list[str]) -> None:
        self.transactions = transactions
        listing = "; ".join(transactions)
        super().__init__(
            f"the test ended with {len(transactions)} transaction(s) still open, which were rolled back (with "
            f"the sandbox, if they were in one): {listing}. Outside a test their work would never be committed (nor "
            "their connections given back): end each transaction (commit() or rollback(), or a 'with' block) "
            "and close sessions (session.close(), or 'with engine.session() as session:')"
        )


class SandboxIsolationWarning(UserWarning):
    """Code asked the sandbox's DB-API connection for an isolation level (or other transaction characteristics)
    that cannot apply: its statements run inside the sandbox's one transaction, begun before the test.

    Given once per connection and setting. The code goes on at the level of the sandbox's transaction; a test
    that depends on the level itself runs for real with ``@pytest.mark.txscope(commit=True)``.
    """

    def __init__(self, asked: str, how: str, in_effect: str) -> None:
        self.asked = asked
        self.in_effect = in_effect
        super().__init__(
            f"{asked} asked with {how} on the sandbox's connection cannot apply: every statement of the test runs "
            f"inside the sandbox's one transaction, which runs at {in_effect}, so the code runs at that level; "
            "to test behaviour that depends on the level, mark the test @pytest.mark.txscope(commit=True) (real "
            "transactions, tables cleaned afterwards)"
        )


class ConnectedBeforeSandboxWarning(UserWarning):
    """Code opened a real connection to the test database outside any sandbox (at import time, or in a fixture
    of a wider scope): if it keeps it, what it commits is committed for real, and no test rolls it back."""

    def __init__(self, driver: str, place: str) -> None:
        super().__init__(
            f"a real {driver} connection to the test database was opened at {place}, before any sandboxed test "
            "(when a module was imported, or in a fixture): if the code keeps it, what it commits is committed "
            "for real and no test rolls it back. Connect inside the test (per request, or in a function-scoped "
            "fixture) instead"
        )
