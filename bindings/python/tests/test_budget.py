"""Requests sized by bytes (issue 12): whatever fs_store_apply accepts, sync
can carry. Large actions, and the largest one apply accepts written the way
that grows most on output, drain to the hub, each request well under
FS_MAX_MESSAGE_BYTES, to a hub on either storage (hubs.py)."""

import json

import fieldsync
from support import SCHEMA

MAX_MESSAGE = 64 * 1024 * 1024
MAX_JSON = 1024 * 1024

DOC_SCHEMA = {"version": 1, "types": {"doc": {"fields": {"body": {"type": "json"}}}}}


def drain(store, hub, *, rounds=200):
    """prepare -> hub -> receive until nothing is due; returns request sizes."""
    sizes = []
    store.set_connectivity(True)
    for _ in range(rounds):
        request, _wait = store._prepare_raw()
        if request is None:
            return sizes
        sizes.append(len(request))
        assert len(request) < MAX_MESSAGE
        store.sync_receive(hub._handle_raw(request))
    raise AssertionError(f"not drained after {rounds} rounds; outbox {store.outbox_count()}")


def test_seventy_actions_of_a_megabyte_drain(tmp_path, hub_storage):
    with fieldsync.Store(str(tmp_path / "dev.db"), SCHEMA, durability="normal", device_id="dev-1") as s, \
            hub_storage.open(SCHEMA, durability="normal") as hub:
        hub.enroll_store(s)
        blob = "x" * 1_000_000
        for n in range(70):
            s.apply({"action": "scan", "actor": "op-1", "type": "task", "id": f"T-{n}",
                     "set": {"status": "open"}, "input": {"blob": blob}})
        sizes = drain(s, hub)
        assert s.outbox_count() == 0
        assert max(sizes) < 8 * 1024 * 1024   # the 4 MiB budget plus one action
        assert len(hub.audit()) == 70
        assert s.stats()["audit_unacked"] == 0


def largest_action(n_id):
    """An action of FS_MAX_JSON_BYTES at most whose stored forms grow most:
    9e15 is written back as 9000000000000000.0 (4.5 times), in the value and
    in the input."""
    skeleton = {"action": "a", "actor": "op-1", "type": "doc", "id": f"D-{n_id}",
                "set": {"body": []}, "input": {"v": []}}
    room = MAX_JSON - len(json.dumps(skeleton, separators=(",", ":"))) - 16
    n = room // 10   # "9e15," in each of the two arrays
    skeleton["set"]["body"] = [9e15] * n
    skeleton["input"]["v"] = [9e15] * n
    text = json.dumps(skeleton, separators=(",", ":")).replace("9000000000000000.0", "9e15")
    assert MAX_JSON - 64 < len(text) <= MAX_JSON
    return text


def test_the_largest_actions_apply_accepts_drain_one_request_each_at_least(tmp_path):
    # SQLite's hub only: about the store's budget for the shapes that grow
    # most when written back; the hub stores such bytes on both storages in
    # the test above, and this one takes most of a minute.
    with fieldsync.Store(str(tmp_path / "dev.db"), DOC_SCHEMA, durability="normal", device_id="dev-1") as s, \
            fieldsync.Hub(str(tmp_path / "hub.db"), DOC_SCHEMA, durability="normal") as hub:
        hub.enroll_store(s)
        for n in range(20):
            s.apply(largest_action(0))   # one record: pulled states stay one record's size
        sizes = drain(s, hub)
        assert s.outbox_count() == 0
        assert len(sizes) >= 5
        assert max(sizes) < 16 * 1024 * 1024
        assert len(hub.audit()) == 20


def test_batch_bytes_has_a_range(tmp_path):
    for bad in (0, -1, 16 * 1024 * 1024 + 1, 2 ** 63 - 1):
        try:
            fieldsync.Store(str(tmp_path / "x.db"), SCHEMA, batch_bytes=bad)
        except fieldsync.ArgError as e:
            assert "16777216" in str(e)
        else:
            raise AssertionError(f"batch_bytes {bad} accepted")
