"""Create the test databases CI points the suite at, and fail loudly if a server is unreachable."""

from __future__ import annotations

import os
import sys

from pytest_txscope import DatabaseURL

# The same text as TXSCOPE_TEST_PASSWORD in tests/backends.py: the suite connects with it and scans all its
# output for it, so that a password printed anywhere fails the run.
TEST_PASSWORD = "Sekr1t-pw-txscope"  # noqa: S105  # a throwaway password for a throwaway CI user
PASSWORD_USER = "txscope_pw"  # noqa: S105  # a user name, not a password


def main() -> int:
    failures = []
    pg = DatabaseURL.parse(os.environ["TXSCOPE_TEST_POSTGRESQL_URL"])
    my = DatabaseURL.parse(os.environ["TXSCOPE_TEST_MYSQL_URL"])
    try:
        import psycopg

        with psycopg.connect(
            host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname="postgres", autocommit=True
        ) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [pg.database]).fetchone():
                conn.execute(f'CREATE DATABASE "{pg.database}"')
        print(f"PostgreSQL ready: {pg}")
    except Exception as exc:
        failures.append(f"PostgreSQL at {pg} is unreachable: {type(exc).__name__}: {exc}")
    try:
        import pymysql

        conn = pymysql.connect(
            host=my.host, port=my.port or 3306, user=my.user, password=my.password or "", autocommit=True
        )
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{my.database}`")
            # A user with a password, for the tests that check no password is ever printed; it may use (and
            # create, and drop) the test database and the databases named after it.
            pattern = my.database.replace("_", "\\_") + "%"
            secret = conn.escape(TEST_PASSWORD)
            for host in ("localhost", "127.0.0.1", "%"):
                user = f"'{PASSWORD_USER}'@'{host}'"
                cur.execute(f"CREATE USER IF NOT EXISTS {user} IDENTIFIED BY {secret}")
                cur.execute(f"ALTER USER {user} IDENTIFIED BY {secret}")
                cur.execute(f"GRANT ALL ON `{pattern}`.* TO {user}")
        conn.close()
        print(f"MariaDB ready: {my}, with user {PASSWORD_USER} (password set)")
    except Exception as exc:
        failures.append(f"MariaDB at {my} is unreachable: {type(exc).__name__}: {exc}")
    for failure in failures:
        print(f"ERROR: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
