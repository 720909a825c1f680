"""What production checks at COMMIT, checked before an application's top-level commit inside a test's
transaction (deferred constraints), through a `Channel`."""

from __future__ import annotations

import contextlib

from .channel import Channel
from .transaction import Transaction

__all__ = ["arm_checks", "send_checks"]


def arm_checks(channel: Channel, tx: Transaction) -> None:
    """Before ``tx``, a guest's root (the application's top-level commit), commits: have the machine check
    what production checks at COMMIT where the database has any of it (deferrable constraints, asked once
    per engine) or the code touched it (``SET CONSTRAINTS``, a new ``DEFERRABLE`` constraint)."""
    checks = channel.dialect.deferred_checks()
    if checks is None or channel.stack.commit_checks or not channel.stack.sent(tx):
        return
    query, statements = checks
    present = channel.facts.get("deferrable")
    if present is None:
        present = channel.facts["deferrable"] = bool(channel.execute(query, None).fetchone()[0])
    if present or channel.constraints_touched:
        channel.stack.commit_checks = statements


def send_checks(channel: Channel, tx: Transaction) -> None:
    """Send the checks and the release queued by ``tx``'s commit now. When a check fails, ``tx`` is rolled
    back, as production rolls back a transaction whose COMMIT fails, and the driver's error raised."""
    statements = channel.stack.statement()
    try:
        channel.control(statements)
    except Exception as exc:
        # A check fails with the DB-API's IntegrityError; anything else is the release's own failure.
        if not channel.dialect.is_integrity_error(exc) or not channel.open_now():
            channel.control_failed(statements, exc)
            raise
        channel.stack.checks_failed(tx)
        with contextlib.suppress(Exception):  # if this fails too, the next statement says so
            channel.flush()
        raise
