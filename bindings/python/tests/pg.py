"""The PostgreSQL server the PostgreSQL hub's tests use (issue 17).

FIELDSYNC_PG_DSN names a server on which the tests may create databases
(Tests/pg/server.sh prints one; .ci/run starts it). Without it those tests
are skipped, except under CI, which must have one: there they fail.
"""
import contextlib
import os
import subprocess
import uuid

import pytest

DSN = os.environ.get("FIELDSYNC_PG_DSN", "")


def require() -> str:
    if not DSN:
        if os.environ.get("CI"):
            pytest.fail("CI runs the PostgreSQL tests: FIELDSYNC_PG_DSN is not set (see .ci/run)")
        pytest.skip("no PostgreSQL server: set FIELDSYNC_PG_DSN (Tests/pg/server.sh start DIR)")
    return DSN


def psql(sql: str, dsn: str = "") -> str:
    """Runs SQL with psql on the test server; returns its unaligned output."""
    out = subprocess.run(["psql", dsn or require(), "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def dsn_of(name: str) -> str:
    parts = [p for p in require().split() if not p.startswith("dbname=")]
    return " ".join(parts + [f"dbname={name}"])


@contextlib.contextmanager
def database():
    """A fresh, empty database for one test; dropped after it."""
    name = "fs_" + uuid.uuid4().hex[:16]
    psql(f"CREATE DATABASE {name}")
    try:
        yield dsn_of(name)
    finally:
        psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def pg_dsn():
    with database() as dsn:
        yield dsn
