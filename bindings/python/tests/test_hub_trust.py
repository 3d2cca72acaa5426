"""The hub's trust boundary through the binding: the max_clock_skew_ms
options of hubs and stores, two stores given one device_id (the second's
actions refused "key_reused", kept in its outbox, never lost), and scopes
checked at open as the hub checks them. The hub's tests run on both
storages, SQLite and PostgreSQL (hubs.py)."""

import os

import pytest

import fieldsync
from support import SCHEMA, task

T0 = 1_764_075_000_000


def test_max_clock_skew_ms_is_an_option_of_hubs_and_stores_and_range_checked(tmp_path, hub_storage):
    for bad in (-1, 10 * 366 * 24 * 3_600_000 + 1, 2**63 - 1):
        with pytest.raises(fieldsync.ArgError, match="max_clock_skew_ms"):
            hub_storage.open(SCHEMA, name="h", max_clock_skew_ms=bad)
        with pytest.raises(fieldsync.ArgError, match="max_clock_skew_ms"):
            fieldsync.Store(str(tmp_path / "s.db"), SCHEMA, max_clock_skew_ms=bad)
    assert not os.path.exists(tmp_path / "s.db")
    with hub_storage.open(SCHEMA, max_clock_skew_ms=0) as hub, \
            fieldsync.Store(str(tmp_path / "dev.db"), SCHEMA, device_id="dev-1", max_clock_skew_ms=0) as store:
        hub.enroll_store(store)
        hub.set_clock(lambda: T0)
        store.set_clock(lambda: T0 + 1_000)   # one second ahead of the hub
        store.apply(task("T-1", set={"status": "open"}))
        fieldsync.sync_once(store, hub)
        [entry] = store.outbox()
        assert entry["state"] == "rejected" and entry["reason"] == "clock_skew"
        assert hub.stats()["entries_clock_skew"] == 1


def test_a_second_store_with_the_same_device_id_is_refused_key_reused_not_lost(tmp_path, hub_storage):
    # The hub's own defence, for a hub run without authentication; with it,
    # the second store is refused before its entries are read (test_auth.py).
    with hub_storage.open(SCHEMA, auth="off") as hub, \
            fieldsync.Store(str(tmp_path / "a.db"), SCHEMA, device_id="dev-1") as a, \
            fieldsync.Store(str(tmp_path / "b.db"), SCHEMA, device_id="dev-1") as b:
        for s in (a, b):
            s.pin_hub(hub.public_key)  # its responses are signed all the same
        a.apply(task("T-1", set={"status": "open"}))
        fieldsync.sync_once(a, hub)
        b.apply(task("T-2", set={"status": "open"}))
        fieldsync.sync_once(b, hub)
        [entry] = b.outbox()
        assert entry["state"] == "rejected" and entry["reason"] == "key_reused"
        stats = hub.stats()
        assert stats["entries_key_reused"] == 1 and stats["audit_reused"] == 1
        assert [r["id"] for r in hub.query("task")] == ["T-1"]
        assert b.stats()["audit_refused"] == 1


@pytest.mark.parametrize("scope, error", [
    ({"task": {"sitee": "WH-3"}}, fieldsync.SchemaError),
    ({"nope": {"site": "WH-3"}}, fieldsync.SchemaError),
    ({"task": {"site": 3}}, fieldsync.SchemaError),
    ({"task": {"tags": ["x"]}}, fieldsync.SchemaError),
    ({"task": "WH-3"}, fieldsync.ArgError),
])
def test_a_scope_the_hub_would_refuse_is_refused_at_open(tmp_path, scope, error):
    with pytest.raises(error):
        fieldsync.Store(str(tmp_path / "s.db"), SCHEMA, scope=scope)
    assert not os.path.exists(tmp_path / "s.db")
