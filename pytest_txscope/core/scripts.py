"""Running an SQL script on a session (`Engine.executescript`), with an error that says what was kept."""

from __future__ import annotations

from ..errors import ScriptError
from .session import Session

__all__ = ["run_script"]


def run_script(session: Session, script: str, source: str) -> None:
    """Run ``script`` statement by statement on ``session``: in one transaction, except where DDL commits as it
    runs (MySQL/MariaDB outside a sandbox), then each statement on its own. A failure raises `ScriptError`
    naming ``source``, the line, the statement and what was kept."""
    statements = session.dialect.split_script(script)
    # Inside a sandbox the script runs in a savepoint like any app transaction (on MySQL its DDL then ends the
    # sandbox's transaction, which the sandbox reports).
    per_statement = session.dialect.ddl_commits and not session.is_guest
    tx = None if per_statement else session.begin()
    position = 0
    for number, statement in enumerate(statements, 1):
        position = script.find(statement, position)
        try:
            if tx is None:
                session.connection.cursor().execute(statement)
            else:
                tx.execute(statement)
        except Exception as exc:
            if tx is not None:
                tx.rollback()
            done = "statement 1 was" if number == 2 else f"statements 1 to {number - 1} were"
            kept = (
                f"{done} committed ({session.dialect.display} commits DDL as it runs)"
                if per_statement and number > 1
                else "nothing of the script was kept"
            )
            raise ScriptError(
                number=number,
                total=len(statements),
                statement=statement,
                line=script.count("\n", 0, position) + 1,
                source=source,
                cause=exc,
                kept=kept,
            ) from exc
    if tx is not None:
        tx.commit()
