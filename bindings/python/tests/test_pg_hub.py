"""The PostgreSQL hub's own edges (issue 17): how it is chosen and refused
in fs_hub_open's options, what is the server's job (backups), opening one
new database from several processes at once, and that libfieldsync.so
still loads without libpq.
The conformance suites run on both storages elsewhere (docs/TESTING.md)."""

import subprocess

import pytest

import fieldsync
from pg import pg_dsn  # noqa: F401
from support import SCHEMA


def test_the_library_does_not_link_libpq():
    # A device without libpq loads the library; libpq is dlopen'ed by a
    # PostgreSQL hub only.
    path = fieldsync._lib.lib._name
    out = subprocess.run(["ldd", path], check=True, capture_output=True, text=True).stdout
    assert "libpq" not in out, out


def test_storage_options_are_checked_and_refused_with_a_reason(tmp_path, pg_dsn):
    cases = [
        (dict(path=str(tmp_path / "h.db"), storage="mysql"), fieldsync.ArgError, '"storage" must be'),
        (dict(path=str(tmp_path / "h.db"), storage="postgres", dsn=pg_dsn), fieldsync.ArgError, "takes no path"),
        (dict(path=None, storage="postgres"), fieldsync.ArgError, 'needs "dsn"'),
        (dict(path=None, storage="postgres", dsn=""), fieldsync.ArgError, 'needs "dsn"'),
        (dict(path=None, storage="postgres", dsn=7), fieldsync.ArgError, 'needs "dsn"'),
        (dict(path=None, storage="postgres", dsn="x" * 5000), fieldsync.TooBigError, "dsn"),
        (dict(path=None, storage="postgres", dsn=pg_dsn, durability="full"), fieldsync.ArgError, "durability"),
        (dict(path=None, storage="postgres", dsn=pg_dsn, busy_timeout_ms=-1), fieldsync.ArgError, "busy_timeout_ms"),
        (dict(path=None, storage="postgres", dsn=pg_dsn, busy_timeout_ms=2**31), fieldsync.ArgError, "busy_timeout_ms"),
        (dict(path=str(tmp_path / "h.db"), dsn=pg_dsn), fieldsync.ArgError, '"dsn" needs'),
        (dict(path=None), fieldsync.ArgError, "path is NULL"),
        # Nothing listens there: the connection is refused, reported, nothing made.
        (dict(path=None, storage="postgres", dsn="host=127.0.0.1 port=1 connect_timeout=2"), fieldsync.FieldSyncIOError, "cannot connect"),
    ]
    for case, error, words in cases:
        path = case.pop("path")
        options = dict(case)
        with pytest.raises(error, match=words):
            h = c_open(path, options)
            h.close()
    assert not (tmp_path / "h.db").exists()


def c_open(path, options):
    """fs_hub_open with raw options, as a C host would call it."""
    import json
    from ctypes import byref, c_void_p
    from fieldsync import _lib
    handle = c_void_p()
    fieldsync._check(_lib.lib.fs_hub_open(None if path is None else path.encode(), json.dumps(SCHEMA).encode(),
                                          json.dumps(options).encode(), byref(handle)))
    return _Closer(handle)


class _Closer:
    def __init__(self, handle):
        self.handle = handle

    def close(self):
        from fieldsync import _lib
        _lib.lib.fs_hub_close(self.handle)


def test_backups_are_the_servers_and_stats_say_which_storage(tmp_path, pg_dsn):
    with fieldsync.Hub(None, SCHEMA, postgres=pg_dsn) as hub:
        assert hub.stats()["storage"] == "postgres"
        with pytest.raises(fieldsync.ArgError, match="pg_dump"):
            hub.backup(str(tmp_path / "copy.db"))
        assert not (tmp_path / "copy.db").exists()
    with fieldsync.Hub(str(tmp_path / "h.db"), SCHEMA) as hub:
        assert hub.stats()["storage"] == "sqlite"


def test_a_database_holding_other_tables_is_not_made_a_hub(pg_dsn):
    import pg
    pg.psql("CREATE TABLE app_orders(id int)", pg_dsn)
    with pytest.raises(fieldsync.CorruptError, match="not a fieldsync hub"):
        fieldsync.Hub(None, SCHEMA, postgres=pg_dsn)


def test_processes_opening_one_new_database_at_once_make_it_once(pg_dsn):
    # Each open takes the database's open lock: one makes the tables and
    # the hub's key, the others find them (no "already exists" from a race,
    # and one key: before the lock covered the key too, two processes could
    # each make one and sign with their own, seen here once in four runs).
    import sys
    code = ("import sys, fieldsync; sys.path.insert(0, 'tests'); from support import SCHEMA; "
            f"h = fieldsync.Hub(None, SCHEMA, postgres={pg_dsn!r}); print(h.stats()['public_key']); h.close()")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(8)]
    keys = set()
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        keys.add(out.strip())
    assert len(keys) == 1   # one hub, one key


def test_a_writer_stuck_holding_the_sequence_makes_others_busy_not_blocked(tmp_path, pg_dsn):
    # One process's request stays open (its custom resolver hangs): the
    # others' writes wait busy_timeout_ms for the change sequence's lock,
    # then get FS_ERR_BUSY at once, not after retries, and apply nothing;
    # pulls never wait. Once the stuck request commits, the write goes through.
    import threading
    import time
    from support import task
    release = threading.Event()
    entered = threading.Event()

    def stuck(conflict):
        entered.set()
        release.wait(30)
        return {**(conflict["server"] or {}), **(conflict["incoming"] or {})}

    with fieldsync.Hub(None, SCHEMA, postgres=pg_dsn, auth="off") as h1, \
            fieldsync.Hub(None, SCHEMA, postgres=pg_dsn, auth="off", busy_timeout_ms=300) as h2, \
            fieldsync.Store(str(tmp_path / "a.db"), SCHEMA, device_id="dev-A", auth="off") as a, \
            fieldsync.Store(str(tmp_path / "b.db"), SCHEMA, device_id="dev-B", auth="off") as b, \
            fieldsync.Store(str(tmp_path / "c.db"), SCHEMA, device_id="dev-C", auth="off") as c, \
            fieldsync.Store(str(tmp_path / "d.db"), SCHEMA, device_id="dev-D", auth="off") as d:
        h1.set_resolver("order_lines", stuck)
        a.apply(task("T-1", set={"status": "open", "lines": {"a": 1}}))
        b.apply(task("T-1", set={"status": "open", "lines": {"b": 1}}))
        fieldsync.sync_once(a, h1)
        request, _ = b.sync_prepare()
        answer = {}
        worker = threading.Thread(target=lambda: answer.update(r=h1.handle(request)))
        worker.start()
        assert entered.wait(10)
        c.apply(task("T-2", set={"status": "open"}))
        write, _ = c.sync_prepare()
        started = time.monotonic()
        with pytest.raises(fieldsync.BusyError, match="lock"):
            h2.handle(write)
        assert time.monotonic() - started < 3
        c.sync_fail("busy")
        assert h2.stats()["entries_applied"] == 1
        started = time.monotonic()
        fieldsync.sync_once(d, h2)   # a pull: no lock, what is committed
        assert time.monotonic() - started < 3
        assert d.get("task", "T-1")["lines"] == {"a": 1}
        release.set()
        worker.join(30)
        b.sync_receive(answer["r"])
        fieldsync.sync_once(c, h2)
        assert sorted(r["id"] for r in h2.query("task")) == ["T-1", "T-2"]
        assert h2.stats()["entries_applied"] == 3
        fieldsync.sync_once(d, h2)
        assert d.get("task", "T-1")["lines"] == {"a": 1, "b": 1}


def test_a_dump_restored_over_the_same_database_is_the_next_generation(tmp_path, pg_dsn):
    # pg_restore --clean makes the hub's tables again in the database that
    # served: the oid of fs_meta is part of the identity, so the first open
    # after it bumps the generation (before, only a new database was seen).
    dump = str(tmp_path / "hub.dump")

    def generation():
        with fieldsync.Hub(None, SCHEMA, postgres=pg_dsn) as hub:
            return hub.stats()["generation"]

    assert generation() == 1
    subprocess.run(["pg_dump", "-Fc", "-f", dump, pg_dsn], check=True)
    assert generation() == 1
    subprocess.run(["pg_restore", "--clean", "-d", pg_dsn, dump], check=True)
    assert generation() == 2
    with fieldsync.Hub(None, SCHEMA, postgres=pg_dsn) as hub:
        assert hub.stats()["generation"] == 2
        [row] = [r for r in hub.devices()["refusals"] if r["code"] == "restored_hub"]
        assert row["device_id"] == "" and "generation 1 -> 2" in row["message"]
