"""Schema versions and stale clients (docs/SCHEMA.md) through the binding.

A v1 device keeps working offline while the hub moves to v3 (a rename, an
added field with a default, a removed field, a merge-policy change) and then
to v4 with min_client_version 4; the device migrates its own tables when it
is reopened with v4, and nothing it queued is lost or applied twice. Also:
no downgrade, bad migration chains, and kill -9 in the middle of a local
migration (the store is wholly v1 or wholly v3, never in between).
The hub's side runs on both storages, SQLite and PostgreSQL (hubs.py),
except over HTTP, whose server is started on a file here.
"""

import contextlib
import copy
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import fieldsync
import hubs
from support import cli_env, kill_child, run_cli, serve_hub, strip_fs, verify_chain, write_schema

# -- the schemas -----------------------------------------------------------------------

FIELDS_V1 = {
    "status": {"type": "string"},
    "qty": {"type": "int", "merge": "counter"},
    "tags": {"type": "set"},
    "note": {"type": "string"},
    "legacy": {"type": "string"},
}
FIELDS_V3 = {
    "status": {"type": "string"},
    "picked": {"type": "int", "merge": "counter"},
    "tags": {"type": "set"},
    "note": {"type": "string", "merge": "server"},
    "priority": {"type": "string"},
}
CHAIN = [
    {"from": 1, "to": 2, "rename": {"task.qty": "task.picked"}, "add": {"task.priority": "normal"}},
    {"from": 2, "to": 3, "remove": ["task.legacy"], "merge": {"task.note": "server"}},
]
V1 = {"version": 1, "types": {"task": {"fields": FIELDS_V1}}}
V3 = {"version": 3, "types": {"task": {"fields": FIELDS_V3}}, "migrations": CHAIN}
V4 = {"version": 4, "min_client_version": 4, "types": {"task": {"fields": FIELDS_V3}},
      "migrations": CHAIN}

DEVICE = "dev-old"


def act(id, **ops):
    return {"action": "work", "actor": "op-7", "type": "task", "id": id, **ops}


def columns(path, table="task"):
    """The plain table's columns, read with the sqlite3 module."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return {row[1] for row in db.execute(f'PRAGMA table_info("{table}")')}


def sql_rows(path, sql):
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchall()


def by_id(records):
    return {r["id"]: strip_fs(r) for r in records}


# -- transports: the hub in-process, or `python -m fieldsync serve` over HTTP ------------

def http_post(url, request):
    body = request.raw  # the bytes the store signed, not a re-encoding
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=20) as answer:
            assert answer.status == 200
            return fieldsync.Message(answer.read())  # kept as signed, decoded too
    except urllib.error.HTTPError as e:  # pragma: no cover - shown in the failure
        raise AssertionError(f"HTTP {e.code}: {e.read()[:500]!r}") from None


@contextlib.contextmanager
def running_hub(transport, site, schema, tmp_path):
    """Yield exchange(request dict) -> response dict, with the hub opened on
    `site` with `schema` (opening it with a newer schema migrates it)."""
    if transport == "inproc":
        with site.open(schema, durability="normal") as hub:
            yield hub.handle
    else:
        schema_file = write_schema(tmp_path / f"hub-v{schema['version']}.json", schema)
        with serve_hub(site.path(), schema_file, tmp_path / "serve.log", "--durability", "normal") as (url, _):
            def exchange(request):
                return http_post(url + "/sync", request)
            exchange.url = url
            yield exchange


def hub_state(site, schema):
    """What the hub holds (opened in-process once the server, if any, stopped)."""
    with site.open(schema) as hub:
        return {"records": by_id(hub.query("task")), "stats": hub.stats(),
                "audit": hub.audit(device_id=DEVICE)}


def sync(store, exchange, responses=None, rounds=50):
    """prepare -> hub -> receive until nothing is due; the receive summaries."""
    store.set_connectivity(True)
    summaries = []
    for _ in range(rounds):
        request, _wait = store.sync_prepare()
        if request is None:
            return summaries
        response = exchange(request)
        if responses is not None:
            responses.append(response)
        summaries.append(store.sync_receive(response))
    raise AssertionError(f"still sending after {rounds} rounds")


@pytest.fixture
def site(storage, tmp_path):
    """The hub's storage, for a test parametrized by `storage`."""
    with hubs.site(storage, tmp_path) as s:
        yield s


# -- 1. the stale-client story ------------------------------------------------------------

@pytest.mark.parametrize("transport, storage", [("inproc", "sqlite"), ("http", "sqlite"),
                                                ("inproc", "postgres")])
def test_a_stale_v1_device_goes_through_v3_and_the_forced_upgrade_to_v4(tmp_path, transport, site):
    dev_db = str(tmp_path / "device.db")
    incs = {}  # id -> every increment queued for it

    def apply(store, id, **ops):
        for n in ops.get("inc", {}).values():
            incs[id] = incs.get(id, 0) + n
        return store.apply(act(id, **ops))["outbox_key"]

    # v1 everywhere, online.
    device = fieldsync.Store(dev_db, V1, durability="normal", device_id=DEVICE)
    with site.open(V1) as hub:
        hub.enroll_store(device)
    apply(device, "T-1", set={"status": "a", "note": "n1", "legacy": "l1"}, inc={"qty": 2},
          add={"tags": ["x"]})
    apply(device, "T-2", set={"status": "a"}, inc={"qty": 1})
    with running_hub(transport, site, V1, tmp_path) as exchange:
        sync(device, exchange)
    assert device.outbox_count() == 0

    # Offline at v1: lww, counter and set writes, one to the field v3 removes,
    # one to the field whose merge policy v3 changes.
    device.set_connectivity(False)
    keys = {
        "inc": apply(device, "T-1", inc={"qty": 3}),
        "lww+set": apply(device, "T-1", set={"status": "b"}, add={"tags": ["y"]}),
        "removed": apply(device, "T-1", set={"legacy": "l2"}),
        "policy": apply(device, "T-1", set={"note": "n2"}),
        "other": apply(device, "T-2", inc={"qty": 4}, add={"tags": ["z"]}),
        "new": apply(device, "T-3", set={"status": "new"}, inc={"qty": 7}),
        "other-lww": apply(device, "T-2", set={"status": "c"}),
    }
    assert device.outbox_count() == 7

    # The hub is reopened with v3 (it migrates) and the device syncs.
    responses = []
    with running_hub(transport, site, V3, tmp_path) as exchange:
        sync(device, exchange, responses)
    results = {r["key"]: r for resp in responses for r in resp.get("results", [])}
    assert {k: results[v]["status"] for k, v in keys.items()} == {
        "inc": "applied", "lww+set": "applied", "removed": "rejected", "policy": "rejected",
        "other": "applied", "new": "applied", "other-lww": "applied"}, results
    assert results[keys["removed"]]["reason"] == "field_unavailable"
    assert results[keys["policy"]]["reason"] == "upgrade_required"
    rejected = {e["key"]: e["reason"] for e in device.outbox(state="rejected")}
    assert rejected == {keys["removed"]: "field_unavailable", keys["policy"]: "upgrade_required"}
    assert device.outbox_count() == 2

    # Pulled records come back in the v1 shape: old names, no new fields.
    changes = [c for resp in responses for c in resp.get("changes", [])]
    assert {c["id"] for c in changes} >= {"T-1", "T-2", "T-3"}
    for c in changes:
        state = c["state"]
        for part in ("fields", "stamps", "versions"):
            assert set(state.get(part, {})) <= set(FIELDS_V1), (part, c)
        assert "qty" in state["fields"], c
    local = by_id(device.query("task"))
    assert {k: local["T-1"][k] for k in ("status", "qty", "tags", "note")} == {
        "status": "b", "qty": 5, "tags": ["x", "y"], "note": "n1"}
    assert (local["T-2"]["qty"], local["T-2"]["status"]) == (5, "c")
    assert (local["T-3"]["qty"], local["T-3"]["status"]) == (7, "new")
    for record in local.values():
        assert "picked" not in record and "priority" not in record, record
    assert columns(dev_db) == {"id", *FIELDS_V1}
    assert device.stats()["schema_version"] == 1

    hub = hub_state(site, V3)
    t1 = hub["records"]["T-1"]
    assert "legacy" not in t1 and "qty" not in t1
    assert {k: t1[k] for k in ("status", "picked", "tags", "note", "priority")} == {
        "status": "b", "picked": 5, "tags": ["x", "y"], "note": "n1", "priority": "normal"}
    assert (hub["records"]["T-2"]["picked"], hub["records"]["T-2"]["status"]) == (5, "c")
    assert hub["records"]["T-2"]["priority"] == "normal"
    assert hub["records"]["T-3"]["picked"] == 7
    assert site.columns("task") == {"id", *FIELDS_V3}

    # The host discards the two refused writes (the operator saw them).
    for key in rejected:
        device.discard(key)
    assert device.outbox_count() == 0

    # The hub moves to v4 with min_client_version 4 while the device keeps working.
    apply(device, "T-1", inc={"qty": 1})
    apply(device, "T-2", add={"tags": ["w"]})
    apply(device, "T-4", set={"status": "fresh"}, inc={"qty": 2})
    pending = [e["key"] for e in device.outbox()]
    assert len(pending) == 3
    view_v1 = by_id(device.query("task"))
    audit_before = device.audit()
    with running_hub(transport, site, V4, tmp_path) as exchange:
        device.set_connectivity(True)
        request, wait = device.sync_prepare()
        assert request is not None and wait == 0
        response = exchange(request)
        assert response["error"]["code"] == "upgrade_required", response
        with pytest.raises(fieldsync.UpgradeRequiredError):
            device.sync_receive(response)
        stats = device.stats()
        assert stats["sync_state"] == "upgrade_required"
        assert response["error"]["message"] in stats["upgrade_required"], stats
        assert "below the minimum 4" in stats["upgrade_required"]
        assert device.outbox_count() == 3
        assert [e["key"] for e in device.outbox()] == pending
        assert device.sync_prepare() == (None, -1)
        device.set_connectivity(True)  # "the network is back" does not lift it
        assert device.sync_prepare() == (None, -1)
        assert by_id(device.query("task")) == view_v1
        assert device.audit() == audit_before
        device.close()
        # The state is kept in the file: reopened with v1 it still refuses to send.
        with fieldsync.Store(dev_db, V1) as again:
            assert again.stats()["sync_state"] == "upgrade_required"
            assert again.sync_prepare() == (None, -1)
            assert again.outbox_count() == 3
        if transport == "http":
            # The command-line device loop says so with exit status 3.
            v1_file = write_schema(tmp_path / "device-v1.json", V1)
            done = run_cli("sync", "--db", dev_db, "--schema", v1_file, "--server",
                           exchange.url, "--timeout", "10", "--max-seconds", "20")
            assert done.returncode == 3, (done.stdout, done.stderr)
            assert "upgrade required" in done.stderr
    hub = hub_state(site, V4)
    assert len(hub["audit"]) == 9  # the refused request's audit rows were not taken

    # The app ships v4: opening the store migrates its tables.
    device = fieldsync.Store(dev_db, V4, durability="normal")
    stats = device.stats()
    assert stats["schema_version"] == 4
    assert stats["sync_state"] != "upgrade_required" and stats["upgrade_required"] == ""
    assert device.outbox_count() == 3 and [e["key"] for e in device.outbox()] == pending
    device.close()
    assert columns(dev_db) == {"id", *FIELDS_V3}
    table = {row[0]: row[1:] for row in sql_rows(dev_db, "SELECT id, picked, priority, status FROM task")}
    assert set(table) == set(view_v1)
    for id, record in view_v1.items():
        assert table[id][0] == record["qty"], (id, table[id], record)   # the renamed column
        assert table[id][2] == record["status"]
    assert table["T-1"][1] == "normal" and table["T-2"][1] == "normal"  # the added column's default

    device = fieldsync.Store(dev_db, V4, durability="normal")
    assert device.stats()["sync_state"] != "upgrade_required"
    with running_hub(transport, site, V4, tmp_path) as exchange:
        summaries = sync(device, exchange)
        assert sum(s["applied"] for s in summaries) == 3, summaries
        assert device.outbox_count() == 0
        again = sync(device, exchange)  # nothing left to send, nothing applied twice
        assert sum(s["applied"] + s["duplicate"] for s in again) == 0
    local = by_id(device.query("task"))
    device_audit = device.audit()
    device.close()

    hub = hub_state(site, V4)
    records = hub["records"]
    assert {id: r["picked"] for id, r in records.items()} == incs  # every increment exactly once
    assert records["T-2"]["tags"] == ["w", "z"] and records["T-4"]["status"] == "fresh"
    assert hub["stats"]["entries_applied"] == 2 + 5 + 3
    assert hub["stats"]["entries_rejected"] == 2
    assert len(device_audit) == 12
    verify_chain(device_audit)
    assert [(r["audit_id"], r["hash"], r["prev_hash"]) for r in hub["audit"]] == \
        [(r["audit_id"], r["hash"], r["prev_hash"]) for r in device_audit]
    assert all(r["chain_ok"] for r in hub["audit"])
    assert hub["stats"]["audit_chain_breaks"] == 0 and hub["stats"]["audit_hash_failures"] == 0
    outcomes = {r["outbox_keys"][0]: r["outcome"] for r in device_audit}
    assert outcomes[keys["removed"]] == outcomes[keys["policy"]] == "discarded"
    # Device and hub agree once synced. (T-3 was created by the v1 client after
    # the hub moved to v3: the added field's default must be the same on both.)
    assert local == records, {id: (local.get(id), records.get(id)) for id in records
                              if local.get(id) != records.get(id)}


# -- 2. no downgrade; bad chains ----------------------------------------------------------

def dump(path):
    """Every table's content, read with the sqlite3 module."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return list(db.iterdump())


def test_opening_with_an_older_schema_is_refused_and_changes_nothing(tmp_path, hub_storage):
    path = str(tmp_path / "device.db")
    with fieldsync.Store(path, V3, device_id=DEVICE) as store:
        store.apply(act("T-1", set={"status": "a", "note": "n"}, inc={"picked": 2}))
        store.apply(act("T-2", set={"status": "b"}, add={"tags": ["x"]}))
    with hub_storage.open(V3):
        pass
    before, hub_before = dump(path), hub_storage.dump()
    v2 = {"version": 2, "types": {"task": {"fields": {**FIELDS_V1, "picked": FIELDS_V1["qty"],
                                                      "priority": {"type": "string"}}}}}
    del v2["types"]["task"]["fields"]["qty"]
    v2["migrations"] = CHAIN[:1]
    for older in (V1, v2):
        with pytest.raises(fieldsync.SchemaError, match="older"):
            fieldsync.Store(path, older)
        with pytest.raises(fieldsync.SchemaError):
            hub_storage.open(older)
    # Same version, different content: refused too.
    changed = copy.deepcopy(V3)
    changed["types"]["task"]["fields"]["priority"]["type"] = "int"
    with pytest.raises(fieldsync.SchemaError):
        fieldsync.Store(path, changed)
    assert dump(path) == before and hub_storage.dump() == hub_before
    with fieldsync.Store(path, V3) as store:
        assert store.stats()["schema_version"] == 3
        assert store.get("task", "T-1")["picked"] == 2
        assert store.outbox_count() == 2


TWO_TYPES = {"task": {"fields": {"qty": {"type": "int"}, "status": {"type": "string"}}},
             "bin": {"fields": {"qty": {"type": "int"}, "code": {"type": "string"}}}}

BAD_CHAINS = {
    "overlapping steps": {"version": 3, "types": {"task": {"fields": FIELDS_V3}}, "migrations": [
        {"from": 1, "to": 3, "rename": {"task.qty": "task.picked"}},
        {"from": 2, "to": 3, "remove": ["task.legacy"]}]},
    "overlapping steps, same start": {"version": 3, "types": {"task": {"fields": FIELDS_V3}},
                                      "migrations": [CHAIN[0], {"from": 1, "to": 3}]},
    "rename across types": {"version": 2, "types": TWO_TYPES, "migrations": [
        {"from": 1, "to": 2, "rename": {"task.qty": "bin.qty"}}]},
    "step beyond the version": {"version": 3, "types": {"task": {"fields": FIELDS_V3}},
                                "migrations": CHAIN + [{"from": 3, "to": 4}]},
    "from not below to": {"version": 3, "types": {"task": {"fields": FIELDS_V3}},
                          "migrations": [{"from": 2, "to": 2}]},
    "field not type.field": {"version": 3, "types": {"task": {"fields": FIELDS_V3}},
                             "migrations": [{"from": 1, "to": 2, "rename": {"qty": "picked"}}]},
}


@pytest.mark.parametrize("name", list(BAD_CHAINS))
def test_a_bad_migration_chain_is_refused_at_open(tmp_path, name, hub_storage):
    schema = BAD_CHAINS[name]
    fresh = tmp_path / "fresh.db"
    with pytest.raises(fieldsync.SchemaError):
        fieldsync.Store(str(fresh), schema)
    with pytest.raises(fieldsync.SchemaError):
        hub_storage.open(schema)
    # An existing v1 store is left as it was.
    path = str(tmp_path / "device.db")
    with fieldsync.Store(path, V1, device_id=DEVICE) as store:
        store.apply(act("T-1", set={"status": "a"}, inc={"qty": 1}))
    before = dump(path)
    with pytest.raises(fieldsync.SchemaError):
        fieldsync.Store(path, schema)
    assert dump(path) == before
    with fieldsync.Store(path, V1) as store:
        assert store.get("task", "T-1")["qty"] == 1


# -- 3. kill -9 during the local migration ------------------------------------------------

CHILD = Path(__file__).with_name("migrate_child.py")
RECORDS = 3000
OFFLINE = 300
KILLS = 36
SEED = 20250806


def copy_store(src, dst):
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(dst + suffix):
            os.remove(dst + suffix)
        if os.path.exists(src + suffix):
            shutil.copyfile(src + suffix, dst + suffix)


def snapshot(store):
    return {"rows": [strip_fs(r) for r in store.query("task")], "outbox": store.outbox(),
            "count": store.outbox_count(), "audit": store.audit()}


def kill_during_open(path, schema_file, delay, log):
    """Start a child that opens `path` with the v3 schema; SIGKILL it `delay`
    seconds after it said it is opening. Returns what it reported."""
    _, lines = kill_child([str(CHILD), path, str(schema_file)], log, delay, ready="opening\n")
    return lines


def calibrate(path, schema_file, log):
    """Run one child to the end; seconds from "opening" to "migrated"."""
    with open(log, "ab") as err:
        proc = subprocess.Popen([sys.executable, str(CHILD), path, str(schema_file)],
                                stdout=subprocess.PIPE, stderr=err)
    try:
        assert proc.stdout.readline() == b"opening\n"
        started = time.monotonic()
        assert proc.stdout.readline() == b"migrated\n", f"see {log}"
        took = time.monotonic() - started
        assert proc.stdout.readline() == b"closed\n"
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    return took


def test_kill_9_during_the_local_migration_leaves_v1_or_v3_never_half(tmp_path):
    rng = random.Random(SEED)
    pristine, hub_db = str(tmp_path / "pristine.db"), str(tmp_path / "hub.db")
    path = str(tmp_path / "device.db")
    incs = {}

    # A v1 store with RECORDS synced records and OFFLINE pending entries.
    with fieldsync.Hub(hub_db, V1, durability="normal") as hub, \
            fieldsync.Store(pristine, V1, durability="normal", device_id=DEVICE) as store:
        hub.enroll_store(store)
        for i in range(RECORDS):
            n = rng.randint(1, 9)
            incs[f"T-{i}"] = n
            store.apply(act(f"T-{i}", set={"status": "s", "note": f"n{i}", "legacy": f"l{i}"},
                            inc={"qty": n}, add={"tags": ["a"]}))
        store.sync_with(hub)
        assert store.outbox_count() == 0
        for _ in range(OFFLINE):
            i = rng.randrange(RECORDS + 50)  # some records are new, created offline
            n = rng.randint(1, 5)
            incs[f"T-{i}"] = incs.get(f"T-{i}", 0) + n
            store.apply(act(f"T-{i}", set={"status": f"o{i}"}, inc={"qty": n},
                            add={"tags": ["b"]}))
        assert store.outbox_count() == OFFLINE
        v1_snap = snapshot(store)
    assert not os.path.exists(pristine + "-wal") or os.path.getsize(pristine + "-wal") == 0

    # The reference: the same file migrated by a child without interruption,
    # which also times the migration as the killed children will run it.
    schema_file = write_schema(tmp_path / "v3.json", V3)
    log = tmp_path / "child-stderr.log"
    copy_store(pristine, path)
    migrate_s = calibrate(path, schema_file, log)
    with fieldsync.Store(path, V3) as store:
        assert store.stats()["schema_version"] == 3
        v3_snap = snapshot(store)
    assert v3_snap["count"] == OFFLINE and len(v3_snap["rows"]) == len(v1_snap["rows"])
    assert [r["id"] for r in v3_snap["rows"]] == [r["id"] for r in v1_snap["rows"]]
    for old, new in zip(v1_snap["rows"], v3_snap["rows"]):
        assert new["picked"] == old["qty"] and "qty" not in new and "legacy" not in new
    assert v3_snap["outbox"] == v1_snap["outbox"] and v3_snap["audit"] == v1_snap["audit"]

    copy_store(pristine, path)
    outcomes = {"v1": 0, "v3": 0}
    reported_done = 0
    span = 1.3 * migrate_s  # widened if the machine turns slower than at calibration
    v1_streak = 0
    t0 = time.monotonic()
    for kill in range(KILLS):
        # A few kills land at once; the rest anywhere in (and a little past) the migration.
        delay = 0.0 if kill % 9 == 0 else rng.uniform(0, span)
        lines = kill_during_open(path, schema_file, delay, log)
        done = "migrated" in lines
        reported_done += done
        try:
            store = fieldsync.Store(path, V1)
        except fieldsync.SchemaError:
            store = None
        if store is not None:  # still wholly v1
            with store:
                assert not done, "the child said it migrated, yet the store opens as v1"
                assert store.stats()["schema_version"] == 1
                assert snapshot(store) == v1_snap, f"kill {kill}: v1 store changed"
            assert columns(path) == {"id", *FIELDS_V1}, f"kill {kill}: v1 meta, other tables"
            outcomes["v1"] += 1
            v1_streak += delay > 0
            if v1_streak >= 5:
                span, v1_streak = span * 1.5, 0
            continue  # the next child migrates this same file
        with fieldsync.Store(path, V3) as store:  # wholly v3 (no migration runs here)
            assert store.stats()["schema_version"] == 3
            assert snapshot(store) == v3_snap, f"kill {kill}: v3 store differs from a clean migration"
        assert columns(path) == {"id", *FIELDS_V3}
        outcomes["v3"] += 1
        v1_streak = 0
        copy_store(pristine, path)  # back to v1 for the next kill
    elapsed = time.monotonic() - t0
    assert elapsed < 60, f"{KILLS} kills took {elapsed:.1f}s"
    # The delays span the migration: both outcomes must have happened.
    assert outcomes["v1"] >= 1 and outcomes["v3"] >= 1, (outcomes, migrate_s)
    print(f"{KILLS} kills: {outcomes}, {reported_done} reported done; "
          f"migration {migrate_s * 1000:.0f} ms, loop {elapsed:.1f}s")

    # Finally: v3 device, v3 hub; every queued action lands exactly once.
    with fieldsync.Hub(hub_db, V3, durability="normal") as hub, \
            fieldsync.Store(path, V3, durability="normal") as store:
        store.sync_with(hub)
        assert store.outbox_count() == 0
        records = by_id(hub.query("task"))
        assert {id: r["picked"] for id, r in records.items()} == incs
        stats = hub.stats()
        assert stats["entries_applied"] == RECORDS + OFFLINE and stats["entries_rejected"] == 0
        device_audit = store.audit()
        hub_audit = hub.audit(device_id=DEVICE)
        assert len(device_audit) == len(hub_audit) == RECORDS + OFFLINE
        verify_chain(device_audit)
        assert [r["hash"] for r in hub_audit] == [r["hash"] for r in device_audit]
        assert stats["audit_chain_breaks"] == 0 and stats["audit_hash_failures"] == 0
        assert by_id(store.query("task")) == records


def test_a_hub_handle_refuses_requests_once_another_handle_migrated_the_file(tmp_path, hub_storage):
    """Two gunicorn workers: one restarted with the new schema migrates the
    hub file; the other, still on the old schema, must not merge with the
    old rules over the new records (docs/OPERATIONS.md "Upgrading")."""
    with fieldsync.Store(str(tmp_path / "d.db"), V1, device_id=DEVICE, auth="off") as store, \
         hub_storage.open(V1, auth="off") as old:
        store.apply(act("T-1", set={"status": "a"}, inc={"qty": 1}))
        store.sync_with(old)
        store.apply(act("T-1", inc={"qty": 1}))
        request, _ = store.sync_prepare()
        with hub_storage.open(V3, auth="off") as new:
            before = hub_storage.dump()
            with pytest.raises(fieldsync.SchemaError, match="another handle moved this hub to schema version 3"):
                old.handle(request)
            assert hub_storage.dump() == before  # nothing written
            # The new handle serves the old device (upcast), as before.
            store.sync_receive(new.handle(request))
            assert [r["picked"] for r in new.query("task")] == [2]


MIGRATE_IN_A_CHILD = """
import json, sys
import fieldsync
schema, path, dsn = json.loads(sys.argv[1]), sys.argv[2] or None, sys.argv[3] or None
with fieldsync.Hub(path, schema, auth="off", postgres=dsn) as hub:
    print(hub.stats()["schema_version"])
"""


def test_a_hub_process_left_on_the_old_schema_refuses_requests_once_another_process_migrated(
        tmp_path, hub_storage):
    """The same across processes (hub processes on several hosts share one
    PostgreSQL database): a process restarted with the new schema migrates;
    one still running the old schema refuses, writing nothing, and the
    request is served by a process on the new schema."""
    where = ["", hub_storage.dsn()] if hub_storage.postgres else [hub_storage.path(), ""]
    with fieldsync.Store(str(tmp_path / "d.db"), V1, device_id=DEVICE, auth="off") as store, \
         hub_storage.open(V1, auth="off") as old:
        store.apply(act("T-1", set={"status": "a"}, inc={"qty": 1}))
        store.sync_with(old)
        store.apply(act("T-1", inc={"qty": 1}))
        request, _ = store.sync_prepare()
        done = subprocess.run([sys.executable, "-c", MIGRATE_IN_A_CHILD, json.dumps(V3), *where],
                              capture_output=True, text=True, env=cli_env(), timeout=60)
        assert done.returncode == 0 and done.stdout.strip() == "3", done.stderr
        before = hub_storage.dump()
        with pytest.raises(fieldsync.SchemaError, match="another handle moved this hub to schema version 3"):
            old.handle(request)
        assert hub_storage.dump() == before  # nothing written
        with hub_storage.open(V3, auth="off") as new:
            store.sync_receive(new.handle(request))
            assert [r["picked"] for r in new.query("task")] == [2]


def test_a_hub_handle_left_on_the_old_schema_refuses_every_request_not_only_the_first(tmp_path, hub_storage):
    # Before the fix, a SQLite hub handle refused only the first request: the
    # next saw no change since and wrote with the old schema (FS_ERR_INTERNAL
    # "table task has no column named legacy").
    with fieldsync.Store(str(tmp_path / "d.db"), V1, device_id=DEVICE, auth="off") as store, \
         hub_storage.open(V1, auth="off") as old:
        store.apply(act("T-1", set={"status": "a"}, inc={"qty": 1}))
        store.sync_with(old)
        store.apply(act("T-1", inc={"qty": 1}))
        sent, _ = store.sync_prepare()
        hub_storage.open(V3, auth="off").close()
        before = hub_storage.dump()
        for _ in range(3):
            with pytest.raises(fieldsync.SchemaError, match="another handle moved this hub to schema version 3"):
                old.handle(sent)
            assert hub_storage.dump() == before
