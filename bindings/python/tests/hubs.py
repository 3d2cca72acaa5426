"""Where a test's hub keeps its state: a SQLite file or a PostgreSQL database
(issue 17). The conformance suite opens its hubs through a HubSite, so each
of its tests runs on both storages with the same assertions (the
`hub_storage` fixture in conftest.py; docs/TESTING.md lists the suites).

    def test_x(hub_storage):
        with hub_storage.open(SCHEMA, durability="normal") as hub: ...

A site names its hubs ("hub", "other-hub", ...): one file each in the test's
directory, or one empty database each on the test server (pg.py). Creating
a database costs about a second, so each test process keeps the databases
its sites used and empties them for the next site (every connection to it
ended, its schema dropped and created again: what the hub sees is a new
database but for its oid); they are dropped when the process exits. Tests
with hypothesis open a site per example.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import sqlite3
import subprocess
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import fieldsync
import pg
from support import SCHEMA

_OWNER = os.getpid()
_EMPTY: List[str] = []     # databases this process made, emptied, free
_MADE: List[str] = []


def take_database() -> str:
    if os.getpid() == _OWNER and _EMPTY:
        return _EMPTY.pop()
    name = "fs_" + uuid.uuid4().hex[:16]
    pg.psql(f"CREATE DATABASE {name}")
    if os.getpid() == _OWNER:
        _MADE.append(name)
    return pg.dsn_of(name)


def give_back(dsn: str) -> None:
    name = database_of(dsn)
    if os.getpid() != _OWNER or name not in _MADE:   # a forked child's: not kept
        pg.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        return
    pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid(); "
            "DROP SCHEMA public CASCADE; CREATE SCHEMA public", dsn)
    _EMPTY.append(dsn)


@atexit.register
def _drop_databases() -> None:
    if os.getpid() == _OWNER:
        for name in _MADE:
            subprocess.run(["psql", pg.DSN, "-XAtq", "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"],
                           capture_output=True)


def database_of(dsn: str) -> str:
    return dict(part.split("=", 1) for part in dsn.split())["dbname"]

STORAGES = ("sqlite", "postgres")

# The option that tunes SQLite's file: refused with postgres (docs/ABI.md).
# A test that passes it for speed gets the same hub without it there.
SQLITE_ONLY = ("durability",)


def examples(storage: str, sqlite: int, postgres: int) -> int:
    """Hypothesis examples per storage: a PostgreSQL example creates a
    database and opens connections, so its variant runs fewer (TESTING.md)."""
    return sqlite if storage == "sqlite" else postgres


def run(*argv: str) -> str:
    """A PostgreSQL client program; its stdout. Fails the test with its stderr."""
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 0, f"{argv[0]} exited {done.returncode}: {done.stderr}"
    return done.stdout


class HubSite:
    def __init__(self, storage: str, root: Path) -> None:
        assert storage in STORAGES, storage
        self.storage = storage
        self.root = Path(root)
        self._dsns: Dict[str, str] = {}

    @property
    def postgres(self) -> bool:
        return self.storage == "postgres"

    def path(self, name: str = "hub") -> str:
        """The hub's file (SQLite)."""
        assert not self.postgres, "a PostgreSQL hub has no file"
        return str(self.root / f"{name}.db")

    def dsn(self, name: str = "hub") -> str:
        """The hub's database (PostgreSQL), created at first use."""
        assert self.postgres, "a SQLite hub has no DSN"
        if name not in self._dsns:
            self._dsns[name] = take_database()
        return self._dsns[name]

    def open(self, schema: Any = SCHEMA, name: str = "hub", **options: Any) -> fieldsync.Hub:
        if self.postgres:
            for option in SQLITE_ONLY:
                options.pop(option, None)
            return fieldsync.Hub(None, schema, postgres=self.dsn(name), **options)
        return fieldsync.Hub(self.path(name), schema, **options)

    def c_open(self, options: Any = None, name: str = "hub") -> Tuple[Any, Dict[str, Any]]:
        """fs_hub_open's path and options, for the tests that call it through ctypes."""
        options = dict(options or {})
        if self.postgres:
            for option in SQLITE_ONLY:
                options.pop(option, None)
            return None, {**options, "storage": "postgres", "dsn": self.dsn(name)}
        return self.path(name), options

    def dump(self, name: str = "hub") -> List[str]:
        """Everything the hub holds, as text: equal before and after means
        nothing was written."""
        if self.postgres:
            out = run("pg_dump", "--no-owner", "--no-privileges", self.dsn(name))
            # \restrict carries a key drawn at random at every dump.
            return [line for line in out.splitlines()
                    if not line.startswith(("\\restrict", "\\unrestrict"))]
        with contextlib.closing(sqlite3.connect(self.path(name))) as db:
            return list(db.iterdump())

    def columns(self, table: str, name: str = "hub") -> set:
        """The columns of the hub's plain table for a type."""
        if self.postgres:
            out = pg.psql("SELECT column_name FROM information_schema.columns "
                          f"WHERE table_schema = current_schema() AND table_name = '{table}'",
                          self.dsn(name))
            return set(out.split("\n")) if out else set()
        with contextlib.closing(sqlite3.connect(self.path(name))) as db:
            return {row[1] for row in db.execute(f'PRAGMA table_info("{table}")')}

    def backup(self, hub: fieldsync.Hub, to: Path, name: str = "hub") -> None:
        """The operator's copy of a hub that keeps serving: fs_hub_backup of
        the file, or `pg_dump -Fc` of the database (docs/OPERATIONS.md)."""
        if self.postgres:
            run("pg_dump", "-Fc", "-f", str(to), self.dsn(name))
        else:
            hub.backup(to)

    def restore(self, copy: Path, name: str = "hub") -> None:
        """Put a backup in the hub's place, its handles closed: the file and
        its WAL replaced, or the database dropped, created again and
        `pg_restore`d (a new database to the hub, as after a rebuild)."""
        if self.postgres:
            dsn = self.dsn(name)
            database = database_of(dsn)
            pg.psql(f"DROP DATABASE {database} WITH (FORCE)")
            pg.psql(f"CREATE DATABASE {database}")
            run("pg_restore", "--no-owner", "-d", dsn, str(copy))
            return
        for suffix in ("", "-wal", "-shm"):
            Path(self.path(name) + suffix).unlink(missing_ok=True)
        shutil.copyfile(copy, self.path(name))

    def close(self) -> None:
        dsns, self._dsns = list(self._dsns.values()), {}
        for dsn in dsns:
            give_back(dsn)


@contextlib.contextmanager
def site(storage: str, root: Path) -> Iterator[HubSite]:
    if storage == "postgres":
        pg.require()
    s = HubSite(storage, root)
    try:
        yield s
    finally:
        s.close()

